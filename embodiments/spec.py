"""EmbodimentSpec: the contract between data, model, heads and simulators for one body.

A spec names every action dimension with its unit and bounds, the control rate, the cameras, the
proprioception vector and the command schema. Models and datasets store the spec they were built
with (`to_dict`) and `check_compatible` compares it on load: any difference in names, dims, units
or bounds is a `SpecMismatchError`, never a silent zero-pad.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from physai.errors import ConfigError, ObservationError, SpecMismatchError


@dataclass(frozen=True)
class CameraSpec:
    name: str  # key of the camera in observations/datasets
    height: int  # pixels; images are [3, H, W]
    width: int

    def __post_init__(self):
        if self.height <= 0 or self.width <= 0:
            raise ConfigError(f"camera '{self.name}': height/width must be > 0")


@dataclass(frozen=True)
class CommandField:
    name: str  # e.g. "lane", "speed", "vx"
    kind: str  # "discrete" (one of `choices`) or "continuous" (in [low, high])
    choices: tuple[str, ...] = ()  # discrete only
    low: float = 0.0  # continuous only
    high: float = 0.0
    unit: str = ""
    default: Any = None  # value used when a command omits this field

    def __post_init__(self):
        if self.kind not in ("discrete", "continuous"):
            raise ConfigError(f"command field '{self.name}': kind must be discrete|continuous")
        if self.kind == "discrete" and not self.choices:
            raise ConfigError(f"command field '{self.name}': discrete needs choices")
        if self.kind == "continuous" and not self.high > self.low:
            raise ConfigError(f"command field '{self.name}': need high > low")

    @property
    def width(self) -> int:
        return len(self.choices) if self.kind == "discrete" else 1


@dataclass(frozen=True)
class EmbodimentSpec:
    name: str  # registry key and the embodiment token's name
    action_names: tuple[str, ...]  # one per action dim, in order
    action_units: tuple[str, ...]  # physical unit per dim (m/s^2, rad, ...)
    action_low: tuple[float, ...]  # hard bounds; every emitted action is clamped into them
    action_high: tuple[float, ...]
    control_hz: float  # how often select_action is called
    cameras: tuple[CameraSpec, ...]  # image inputs, in stacking order
    proprio_names: tuple[str, ...]  # proprioception vector layout
    command: tuple[CommandField, ...]  # command schema (encoded to a float vector)
    default_head: str = "l1"  # head used when a recipe does not say
    description: str = ""

    def __post_init__(self):
        n = len(self.action_names)
        for f in ("action_units", "action_low", "action_high"):
            if len(getattr(self, f)) != n:
                raise ConfigError(f"spec '{self.name}': {f} has {len(getattr(self, f))} entries, expected {n}")
        if any(not (lo < hi) for lo, hi in zip(self.action_low, self.action_high)):
            raise ConfigError(f"spec '{self.name}': every action_low must be < action_high")
        if len(set(self.action_names)) != n:
            raise ConfigError(f"spec '{self.name}': action names must be unique")
        if self.control_hz <= 0:
            raise ConfigError(f"spec '{self.name}': control_hz must be > 0")

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def proprio_dim(self) -> int:
        return len(self.proprio_names)

    @property
    def command_dim(self) -> int:
        return sum(f.width for f in self.command)

    @property
    def low(self) -> np.ndarray:
        return np.asarray(self.action_low, dtype=np.float32)

    @property
    def high(self) -> np.ndarray:
        return np.asarray(self.action_high, dtype=np.float32)

    # ---- commands ----------------------------------------------------------------------------
    def encode_command(self, command: Mapping[str, Any]) -> np.ndarray:
        """Dict command (e.g. {"lane": "left", "speed": 25}) -> float vector [command_dim].

        Discrete fields become one-hot, continuous ones are scaled to [-1, 1] by their range
        (values outside the range are an error, not clipped silently).
        """
        if not isinstance(command, Mapping):
            raise ObservationError("command", f"a mapping with keys {[f.name for f in self.command]}", type(command).__name__)
        unknown = set(command) - {f.name for f in self.command}
        if unknown:
            raise ObservationError("command", f"keys among {[f.name for f in self.command]}", f"unknown keys {sorted(unknown)}")
        out: list[float] = []
        for f in self.command:
            v = command.get(f.name, f.default)
            if isinstance(v, np.ndarray) and v.size == 1:  # gymnasium Box/Discrete samples
                v = v.reshape(-1)[0]
            if isinstance(v, np.generic):
                v = v.item()
            if v is None:
                raise ObservationError(f"command.{f.name}", "a value (no default)", "missing")
            if f.kind == "discrete":
                if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= int(v) < len(f.choices):
                    v = f.choices[int(v)]
                if v not in f.choices:
                    raise ObservationError(f"command.{f.name}", f"one of {list(f.choices)}", repr(v))
                out.extend(1.0 if c == v else 0.0 for c in f.choices)
            else:
                try:
                    x = float(v)
                except (TypeError, ValueError):
                    raise ObservationError(f"command.{f.name}", f"a number in [{f.low}, {f.high}] {f.unit}", repr(v)) from None
                if not math.isfinite(x) or not (f.low <= x <= f.high):
                    raise ObservationError(f"command.{f.name}", f"a finite number in [{f.low}, {f.high}] {f.unit}", repr(v))
                out.append(2.0 * (x - f.low) / (f.high - f.low) - 1.0)
        return np.asarray(out, dtype=np.float32)

    def decode_command(self, vec: np.ndarray) -> dict[str, Any]:
        """Inverse of `encode_command` (argmax for discrete fields)."""
        vec = np.asarray(vec, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.command_dim:
            raise ObservationError("command", f"[{self.command_dim}] floats", f"shape {tuple(vec.shape)}")
        out: dict[str, Any] = {}
        i = 0
        for f in self.command:
            if f.kind == "discrete":
                out[f.name] = f.choices[int(np.argmax(vec[i : i + f.width]))]
            else:
                out[f.name] = float(f.low + (vec[i] + 1.0) * 0.5 * (f.high - f.low))
            i += f.width
        return out

    def default_command(self) -> dict[str, Any]:
        return {f.name: f.default for f in self.command}

    # ---- actions -----------------------------------------------------------------------------
    def clip_action(self, action: np.ndarray) -> np.ndarray:
        """Clamp to bounds; NaN/inf entries become the midpoint of the range (never emitted)."""
        a = np.asarray(action, dtype=np.float32)
        mid = (self.low + self.high) / 2
        a = np.where(np.isfinite(a), a, mid)
        return np.clip(a, self.low, self.high)

    # ---- (de)serialisation and compatibility --------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """6 hex digits that change with any field of the spec (recording caches key on it)."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:6]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EmbodimentSpec":
        d = dict(d)
        d["cameras"] = tuple(CameraSpec(**c) for c in d["cameras"])
        d["command"] = tuple(
            CommandField(**{**c, "choices": tuple(c.get("choices", ()))}) for c in d["command"]
        )
        for k in ("action_names", "action_units", "action_low", "action_high", "proprio_names"):
            d[k] = tuple(d[k])
        return cls(**d)

    def check_compatible(self, other: "EmbodimentSpec | Mapping[str, Any]", *, atol: float = 1e-6) -> None:
        """Raise SpecMismatchError naming the first differing field (bounds compared with atol)."""
        o = other if isinstance(other, EmbodimentSpec) else EmbodimentSpec.from_dict(other)
        for f in ("name", "action_names", "action_units", "proprio_names"):
            if getattr(self, f) != getattr(o, f):
                raise SpecMismatchError(self.name, f, getattr(self, f), getattr(o, f))
        for f in ("action_low", "action_high"):
            a, b = np.asarray(getattr(self, f)), np.asarray(getattr(o, f))
            if a.shape != b.shape or not np.allclose(a, b, atol=atol):
                raise SpecMismatchError(self.name, f, getattr(self, f), getattr(o, f))
        if [(c.name, c.height, c.width) for c in self.cameras] != [(c.name, c.height, c.width) for c in o.cameras]:
            raise SpecMismatchError(self.name, "cameras", self.cameras, o.cameras)
        if self.command != o.command:
            raise SpecMismatchError(self.name, "command", self.command, o.command)
        if abs(self.control_hz - o.control_hz) > 1e-9:
            raise SpecMismatchError(self.name, "control_hz", self.control_hz, o.control_hz)
