"""Normalization statistics, outside every nn.Module.

Stats (mean, std, min, max, 1st/99th quantiles) are computed from data per embodiment and per
key (`proprio`, `action`), stored in `normalization.safetensors` next to the weights with the
mode per key in its metadata, and checked against the spec on load. Modes: `mean_std`,
`min_max` (data range -> [-1, 1]) and `quantile` (q01..q99 -> [-1, 1]). `identity` skips a key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from physai.errors import CheckpointError, ConfigError, SpecMismatchError

MODES = ("mean_std", "min_max", "quantile", "identity")
STAT_NAMES = ("mean", "std", "min", "max", "q01", "q99")
EPS = 1e-6


def compute_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """x: [N, D] -> per-dim stats [D] each (float32)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, np.asarray(x).shape[-1])
    if x.shape[0] == 0:
        raise ConfigError("cannot compute normalization stats from zero samples")
    if not np.isfinite(x).all():
        raise ConfigError("normalization data contains NaN/inf")
    q01, q99 = np.quantile(x, [0.01, 0.99], axis=0)
    return {
        "mean": x.mean(0), "std": x.std(0), "min": x.min(0), "max": x.max(0), "q01": q01, "q99": q99,
    } | {}


@dataclass
class Normalizer:
    """stats[embodiment][key][stat] -> np.ndarray [D]; modes[key] -> mode name."""

    stats: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=lambda: {"proprio": "mean_std", "action": "min_max"})

    def __post_init__(self):
        for k, m in self.modes.items():
            if m not in MODES:
                raise ConfigError(f"normalization mode for '{k}' must be one of {MODES}, got '{m}'")

    def fit(self, embodiment: str, key: str, data: np.ndarray) -> None:
        self.stats.setdefault(embodiment, {})[key] = {k: v.astype(np.float32) for k, v in compute_stats(data).items()}

    def has(self, embodiment: str, key: str) -> bool:
        return key in self.stats.get(embodiment, {})

    def _affine(self, embodiment: str, key: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(center, scale) so that normalized = (x - center) / scale."""
        mode = self.modes.get(key, "identity")
        if mode == "identity" or not self.has(embodiment, key):
            return like.new_zeros(()), like.new_ones(())
        s = self.stats[embodiment][key]
        if mode == "mean_std":
            c, sc = s["mean"], np.maximum(s["std"], EPS)
        else:
            lo, hi = (s["min"], s["max"]) if mode == "min_max" else (s["q01"], s["q99"])
            c, sc = (hi + lo) / 2, np.maximum((hi - lo) / 2, EPS)
        if c.shape[-1] != like.shape[-1]:
            raise SpecMismatchError(embodiment, f"normalization.{key}", c.shape[-1], like.shape[-1])
        t = lambda a: torch.as_tensor(a, dtype=like.dtype, device=like.device)
        return t(c), t(sc)

    def normalize(self, embodiment: str, key: str, x: torch.Tensor) -> torch.Tensor:
        c, s = self._affine(embodiment, key, x)
        return (x - c) / s

    def unnormalize(self, embodiment: str, key: str, x: torch.Tensor) -> torch.Tensor:
        c, s = self._affine(embodiment, key, x)
        return x * s + c

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        tensors = {f"{e}/{k}/{s}": np.ascontiguousarray(v) for e, ks in self.stats.items() for k, ss in ks.items() for s, v in ss.items()}
        if not tensors:
            tensors = {"__empty__": np.zeros(1, np.float32)}
        save_file(tensors, str(path), metadata={"modes": json.dumps(self.modes), "format": "physai-norm-1"})

    @classmethod
    def load(cls, path: str | Path) -> "Normalizer":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
            arrays = load_file(str(path))
        except Exception as e:
            raise CheckpointError(f"cannot read normalization stats '{path}': {e}") from e
        if meta.get("format") != "physai-norm-1":
            raise CheckpointError(f"'{path}' is not a physai normalization file")
        try:
            modes = json.loads(meta["modes"])
            if not isinstance(modes, dict):
                raise TypeError(f"expected an object of key -> mode, got {type(modes).__name__}")
            norm = cls(modes=modes)
        except (KeyError, json.JSONDecodeError, TypeError, ConfigError) as e:
            raise CheckpointError(f"'{path}': normalization metadata 'modes' is malformed ({type(e).__name__}: {e})") from None
        for name, arr in arrays.items():
            if name == "__empty__":
                continue
            parts = name.split("/")
            if len(parts) != 3:
                raise CheckpointError(f"'{path}': tensor '{name}' is not named <embodiment>/<key>/<stat>")
            e, k, s = parts
            norm.stats.setdefault(e, {}).setdefault(k, {})[s] = arr
        return norm

    def missing(self, specs, residual: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
        """(embodiment, key, mode) of every key a mode other than identity normalizes but has no
        stats for: such a policy would silently run on unnormalized values."""
        out = []
        for e, s in specs.items():
            keys = {"proprio": s.proprio_dim, "action": s.action_dim, "action_delta": s.action_dim if e in residual else 0}
            for key, dim in keys.items():
                mode = self.modes.get(key, "identity")
                if dim and mode != "identity" and not self.has(e, key):
                    out.append((e, key, mode))
        return out

    def check_dims(self, embodiment: str, dims: dict[str, int]) -> None:
        """Raise SpecMismatchError if stored stats have other widths than the spec says."""
        for key, d in dims.items():
            if self.has(embodiment, key):
                got = self.stats[embodiment][key]["mean"].shape[-1]
                if got != d:
                    raise SpecMismatchError(embodiment, f"normalization.{key} dim", d, got)
