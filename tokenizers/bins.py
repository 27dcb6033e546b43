"""Uniform per-dimension binning: the simplest action tokenizer (RT-1/RT-2 style).

Each action value of a chunk [N, H, A] becomes the index of its bin among `n_bins` equal-width bins
spanning [low_d, high_d] of its dimension d; values outside the range clip to the edge bins, and
decoding returns the bin centre. Tokens are ordered step-major ([t0d0, t0d1, ..., t1d0, ...]),
so `fixed_length = H * A` and `vocab_size = n_bins`. The range comes from the constructor or, when
left as None, from the per-dimension min/max of the data given to `fit`. Round-trip bound (proved
and tested): for a value inside [low_d, high_d] the error is at most half a bin width,
(high_d - low_d) / (2 * n_bins), + 1e-6 for float32 output; outside, add the distance to the range.
This module also holds the input checks the other tokenizers share.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from physai.errors import ConfigError
from physai.tokenizers.base import TOKENIZERS, ActionTokenizer


def check_chunks(actions, name: str, horizon: int | None, action_dim: int | None) -> np.ndarray:
    """Validate action chunks -> float64 [N, H, A]; ConfigError naming the expected shape."""
    want = f"[N, {horizon if horizon else 'H'}, {action_dim if action_dim else 'A'}]"
    try:
        x = np.asarray(actions, dtype=np.float64)
    except (TypeError, ValueError) as e:
        got = type(actions).__name__
        raise ConfigError(f"{name}: `actions` must be a float array {want}, got {got} ({e})") from None
    if x.ndim != 3 or x.shape[0] == 0:
        raise ConfigError(f"{name}: `actions` must have shape {want} with N >= 1, got {tuple(x.shape)}")
    if (horizon is not None and x.shape[1] != horizon) or (action_dim is not None and x.shape[2] != action_dim):
        raise ConfigError(f"{name}: `actions` must have shape {want}, got {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise ConfigError(f"{name}: `actions` must be finite, got {int((~np.isfinite(x)).sum())} NaN/inf values")
    return x


def check_token_matrix(tokens, name: str, length: int, vocab: int) -> np.ndarray:
    """Validate fixed-length tokens -> int64 [N, length] with ids in [0, vocab)."""
    try:
        t = np.asarray(tokens)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name}: `tokens` must be an int array [N, {length}] ({e})") from None
    if t.ndim != 2 or t.shape[1] != length or t.shape[0] == 0:
        raise ConfigError(f"{name}: `tokens` must have shape [N, {length}] with N >= 1, got {tuple(t.shape)}")
    integral = np.issubdtype(t.dtype, np.floating) and np.isfinite(t).all() and (t == np.round(t)).all()
    if not (np.issubdtype(t.dtype, np.integer) or integral):
        raise ConfigError(f"{name}: `tokens` must be integer ids, got dtype {t.dtype}")
    t = t.astype(np.int64)
    if t.min() < 0 or t.max() >= vocab:
        raise ConfigError(f"{name}: `tokens` ids must be in [0, {vocab}), got range [{t.min()}, {t.max()}]")
    return t


def _positive_int(value, arg: str, name: str, minimum: int = 1, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}: `{arg}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _per_dim(value, arg: str, action_dim: int | None) -> np.ndarray | None:
    """Scalar or per-dim sequence -> float64 [A] (or [1] for a scalar when A is unknown)."""
    if value is None:
        return None
    try:
        v = np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise ConfigError(f"bins: `{arg}` must be a number or a sequence of numbers, got {value!r}") from None
    if v.ndim != 1 or not np.isfinite(v).all():
        raise ConfigError(f"bins: `{arg}` must be a finite scalar or 1-D sequence [A], got {value!r}")
    if action_dim is not None and v.size not in (1, action_dim):
        raise ConfigError(f"bins: `{arg}` must be a scalar or have action_dim={action_dim} entries, got {v.size}")
    return v


@TOKENIZERS.register("bins")
class BinsTokenizer(ActionTokenizer):
    name = "bins"

    def __init__(
        self,
        n_bins: int = 256,
        low: float | Sequence[float] | None = None,
        high: float | Sequence[float] | None = None,
        horizon: int | None = None,
        action_dim: int | None = None,
    ):
        self.n_bins = _positive_int(n_bins, "n_bins", "bins", minimum=2)
        self.horizon = _positive_int(horizon, "horizon", "bins", allow_none=True)
        self.action_dim = _positive_int(action_dim, "action_dim", "bins", allow_none=True)
        if (low is None) != (high is None):
            raise ConfigError("bins: give both `low` and `high`, or neither (then `fit` sets them)")
        self._range_from_data = low is None  # refit recomputes the range only if the user gave none
        self.low = _per_dim(low, "low", self.action_dim)  # [A] or [1] (scalar, broadcast)
        self.high = _per_dim(high, "high", self.action_dim)
        if self.low is not None:
            sizes = {self.low.size, self.high.size} - {1}
            if len(sizes) > 1:
                raise ConfigError(f"bins: `low` and `high` lengths differ ({self.low.size} vs {self.high.size})")
            if sizes and self.action_dim is None:
                self.action_dim = sizes.pop()
            lo, hi = np.broadcast_arrays(self.low, self.high)
            if not (lo < hi).all():
                raise ConfigError(f"bins: need low < high in every dimension, got low={low!r}, high={high!r}")
        self._shape_from_data = (self.horizon is None, self.action_dim is None)  # likewise H, A

    @property
    def vocab_size(self) -> int:
        return self.n_bins

    @property
    def fixed_length(self) -> int | None:
        if self.horizon is None or self.action_dim is None:
            return None
        return self.horizon * self.action_dim

    def _ready(self, what: str) -> tuple[np.ndarray, np.ndarray]:
        if self.low is None or self.horizon is None or self.action_dim is None:
            raise ConfigError(
                f"bins: {what} needs low/high, horizon and action_dim; call fit(data [N, H, A]) first "
                "or pass all four to the constructor"
            )
        low = np.broadcast_to(self.low, (self.action_dim,))  # [A]
        high = np.broadcast_to(self.high, (self.action_dim,))
        return low, high

    def fit(self, data) -> "BinsTokenizer":
        x = check_chunks(data, "bins.fit", None, None)  # [N, H, A]
        _, h, a = x.shape
        if not self._shape_from_data[0] and self.horizon != h:
            raise ConfigError(f"bins.fit: data must be [N, {self.horizon}, A] (horizon given), got H={h}")
        if not self._shape_from_data[1] and self.action_dim != a:
            raise ConfigError(f"bins.fit: data must be [N, H, {self.action_dim}] (action_dim given), got A={a}")
        self.horizon, self.action_dim = h, a
        if self._range_from_data:
            low, high = x.min(axis=(0, 1)), x.max(axis=(0, 1))  # [A]
            pad = np.where(high > low, 0.0, 1e-6 * np.maximum(1.0, np.abs(low)))  # constant dim
            self.low, self.high = low - pad, high + pad
        return self

    def bin_width(self) -> np.ndarray:
        """Per-dimension bin width [A]."""
        low, high = self._ready("bin_width")
        return (high - low) / self.n_bins

    def encode(self, actions) -> np.ndarray:
        low, high = self._ready("encode")
        x = check_chunks(actions, "bins.encode", self.horizon, self.action_dim)  # [N, H, A]
        idx = np.floor((x - low) / (high - low) * self.n_bins)  # [N, H, A]
        idx = np.clip(idx, 0, self.n_bins - 1).astype(np.int64)
        return idx.reshape(x.shape[0], -1)  # [N, H*A] step-major

    def decode(self, tokens) -> np.ndarray:
        low, high = self._ready("decode")
        t = check_token_matrix(tokens, "bins.decode", self.fixed_length, self.n_bins)  # [N, H*A]
        t = t.reshape(t.shape[0], self.horizon, self.action_dim)  # [N, H, A]
        return (low + (t + 0.5) * (high - low) / self.n_bins).astype(np.float32)

    def state(self) -> dict[str, Any]:
        low, high = self._ready("state")
        return {
            "n_bins": self.n_bins,
            "low": low.tolist(),
            "high": high.tolist(),
            "horizon": self.horizon,
            "action_dim": self.action_dim,
            "range_from_data": self._range_from_data,
            "shape_from_data": list(self._shape_from_data),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "BinsTokenizer":
        s = dict(state)
        range_from_data = s.pop("range_from_data", False)
        shape_from_data = s.pop("shape_from_data", (False, False))
        tok = cls(**s)
        tok._range_from_data, tok._shape_from_data = bool(range_from_data), tuple(bool(v) for v in shape_from_data)
        return tok
