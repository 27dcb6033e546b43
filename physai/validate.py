"""Input validation: every observation and batch passes through here before a model sees it.

`prepare_observation` accepts numpy arrays or tensors (batched or not), checks keys, ranks,
shapes, dtypes and finiteness against the embodiment spec and returns float/uint8 tensors in the
canonical layout: image [B, T, C, 3, H, W], proprio [B, T, Dp], command [B, Dc]. Anything wrong
raises `ObservationError` naming the field and the expected shape - never a bare torch error.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from physai.embodiments.spec import EmbodimentSpec
from physai.errors import ObservationError

OBS_KEYS = ("image", "proprio", "command")


def _shape(x) -> str:
    return f"shape {tuple(x.shape)} dtype {x.dtype}" if hasattr(x, "shape") else type(x).__name__


def _to_tensor(name: str, x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype == object or x.dtype.kind not in "biuf":
            raise ObservationError(name, "a numeric array", f"dtype {x.dtype}")
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, (list, tuple, float, int)) and not isinstance(x, bool):
        try:
            return torch.as_tensor(np.asarray(x, dtype=np.float32))
        except (ValueError, TypeError):
            pass
    raise ObservationError(name, "a numpy array or torch tensor", type(x).__name__)


def _check_float(name: str, t: torch.Tensor, expected: str) -> torch.Tensor:
    if t.dtype == torch.bool or t.is_complex():
        raise ObservationError(name, f"{expected} float", f"dtype {t.dtype}")
    t = t.float()
    if not torch.isfinite(t).all():
        raise ObservationError(name, f"{expected} with finite values", "NaN or inf entries")
    return t


def prepare_observation(obs: Mapping[str, Any], spec: EmbodimentSpec, device: torch.device | str = "cpu",
                        n_obs_steps: int = 1) -> tuple[dict[str, torch.Tensor], bool]:
    """Validate + canonicalise. Returns (obs dict, was_batched)."""
    if not isinstance(obs, Mapping):
        raise ObservationError("observation", f"a dict with keys {list(OBS_KEYS)}", type(obs).__name__)
    missing = [k for k in OBS_KEYS if k not in obs]
    if missing:
        raise ObservationError(missing[0], "present", f"missing (got keys {sorted(map(str, obs))})")
    Dp, Dc = spec.proprio_dim, spec.command_dim
    # proprio decides batching: [Dp] unbatched, [B, Dp] or [B, T, Dp] batched
    p = _to_tensor("proprio", obs["proprio"])
    exp_p = f"[{Dp}], [B, {Dp}] or [B, T={n_obs_steps}, {Dp}]"
    if p.dim() == 1:
        batched, p = False, p[None, None]
    elif p.dim() == 2:
        batched, p = True, p[:, None]
    elif p.dim() == 3:
        batched = True
    else:
        raise ObservationError("proprio", exp_p, _shape(p))
    if p.shape[-1] != Dp or p.shape[0] == 0 or p.shape[1] != n_obs_steps:
        raise ObservationError("proprio", exp_p, _shape(p))
    p = _check_float("proprio", p, exp_p)
    B = p.shape[0]

    c = obs["command"]
    if isinstance(c, Mapping):
        if batched and B != 1:
            raise ObservationError("command", f"[B, {Dc}] floats for a batch (dicts only unbatched)", "a dict")
        c = spec.encode_command(c)
    c = _to_tensor("command", c)
    exp_c = f"[{Dc}] or [B={B}, {Dc}] (see spec.encode_command)"
    if c.dim() == 1:
        c = c[None]
    if c.dim() != 2 or c.shape != (B, Dc):
        raise ObservationError("command", exp_c, _shape(c))
    c = _check_float("command", c, exp_c)

    cams = spec.cameras
    img = _to_tensor("image", obs["image"])
    if cams:
        C, H, W = len(cams), cams[0].height, cams[0].width
        exp_i = f"uint8 or float in [0,1], channels-first [{'B, ' if batched else ''}{'T, ' if batched else ''}{C}, 3, {H}, {W}]"
        if not batched:
            img = img[None] if img.dim() == 3 else img  # [C, 3, H, W]
            img = img[None, None] if img.dim() == 4 else img
        else:
            if img.dim() == 4 and C == 1:  # [B, 3, H, W]
                img = img[:, None, None]
            elif img.dim() == 5:  # [B, C, 3, H, W]
                img = img[:, None]
        if img.dim() != 6 or tuple(img.shape) != (B, n_obs_steps, C, 3, H, W):
            raise ObservationError("image", exp_i, _shape(img))
        if img.dtype != torch.uint8:
            if not img.is_floating_point():
                raise ObservationError("image", exp_i, f"dtype {img.dtype}")
            if not torch.isfinite(img).all():
                raise ObservationError("image", exp_i, "NaN or inf entries")
            if img.numel() and (img.min() < 0 or img.max() > 1):
                raise ObservationError("image", exp_i, f"float values in [{float(img.min()):.3g}, {float(img.max()):.3g}]")
            img = img.float()
    unknown = set(obs) - set(OBS_KEYS)
    if unknown:
        raise ObservationError(sorted(map(str, unknown))[0], f"only keys {list(OBS_KEYS)}", "an unknown key")
    dev = torch.device(device)
    return {"image": img.to(dev), "proprio": p.to(dev), "command": c.to(dev)}, batched


def bound_actions(actions: torch.Tensor, spec: EmbodimentSpec, substitute: bool = True) -> torch.Tensor:
    """Actions [..., A] -> within the spec's bounds; NaN/inf entries become the range midpoint
    (the torch twin of `EmbodimentSpec.clip_action`, used by every policy before it emits).
    `substitute=False` keeps NaN/inf entries for a caller that queues actions and substitutes
    (and counts, with `Substitutions`) when it executes them."""
    lo = torch.as_tensor(spec.low, device=actions.device)
    hi = torch.as_tensor(spec.high, device=actions.device)
    if substitute:
        actions = torch.where(torch.isfinite(actions), actions, (lo + hi) / 2)
    return torch.minimum(torch.maximum(actions, lo), hi)  # (NaN stays NaN)


class NonFiniteActionWarning(UserWarning):
    """A policy produced NaN/inf actions that were replaced by the range midpoint."""


class Substitutions:
    """Bounds actions like `bound_actions` and counts the ones whose NaN/inf entries it replaced.

    A NaN anywhere upstream (weights, normalization stats, an overflowing input such as proprio=1e30)
    would otherwise reach the actuators as a silent midpoint action: `total` counts every substituted
    action since construction, `episode` since `reset()`, and the first substitution after each reset
    raises one `NonFiniteActionWarning` naming `where`."""

    def __init__(self, where: str):
        self.where, self.total, self.episode = where, 0, 0

    def reset(self) -> None:
        self.episode = 0

    def __call__(self, actions: torch.Tensor, spec: EmbodimentSpec) -> torch.Tensor:
        """actions [..., A] -> bounded actions; each row with a NaN/inf entry counts once."""
        bad = ~torch.isfinite(actions).all(-1)
        n = int(bad.sum())
        if n:
            if self.episode == 0:
                import warnings

                warnings.warn(NonFiniteActionWarning(
                    f"{self.where}: {n} of {bad.numel()} predicted actions were NaN/inf and were replaced by the "
                    "middle of the action range (counted in `nonfinite_actions`; warned once per episode). Check "
                    "the checkpoint's weights and normalization stats and the observation's magnitudes."), stacklevel=3)
            self.total += n
            self.episode += n
        return bound_actions(actions, spec)


def check_actions(name: str, a: Any, B: int, H: int, A: int) -> torch.Tensor:
    t = _to_tensor(name, a)
    exp = f"[B={B}, H={H}, A={A}] float"
    if t.dim() != 3 or tuple(t.shape) != (B, H, A):
        raise ObservationError(name, exp, _shape(t))
    return _check_float(name, t, exp)


def obs_from_env(obs: Mapping[str, Any], spec: EmbodimentSpec) -> dict[str, Any]:
    """Gym env observation (image HWC uint8, command dict) -> unbatched policy observation."""
    img = np.asarray(obs["image"])
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ObservationError("image", "[H, W, 3] uint8 from the env", _shape(img))
    return {
        "image": np.ascontiguousarray(img.transpose(2, 0, 1))[None],  # [1, 3, H, W]
        "proprio": np.asarray(obs["proprio"], dtype=np.float32),
        "command": spec.encode_command(obs["command"]),
    }
