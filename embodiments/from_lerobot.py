"""An `EmbodimentSpec` read off a LeRobot dataset's own metadata (`meta/info.json` + `meta/stats.json`).

This is how a robot physai has never seen gets a spec: action names from the `action` feature,
bounds from its recorded min/max widened by `margin` of the range (recordings rarely touch the true
limits, and every emitted action is clamped into these bounds), proprio from `observation.state`,
cameras from the image/video features (`observation.images.*`, or LeRobot's single
`observation.image`), control rate from `fps`. A dataset without `observation.command` gets an empty
command; one with it (physai's layout: names such as `lane=keep`, `lane=left`, `speed`) gets its
command fields back, discrete ones grouped by the name before `=`, continuous ones in [-1, 1] (the
encoded range). No unit is known from metadata, so units are empty.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from physai.embodiments.spec import CameraSpec, CommandField, EmbodimentSpec
from physai.errors import ConfigError

STATE, COMMAND, ACTION = "observation.state", "observation.command", "action"
IMAGE_PREFIX, SINGLE_IMAGE = "observation.images.", "observation.image"


def camera_keys(features: Mapping[str, Any]) -> list[str]:
    """Image/video feature keys, in the dataset's order."""
    return [k for k, f in features.items()
            if f.get("dtype") in ("image", "video") and (k.startswith(IMAGE_PREFIX) or k == SINGLE_IMAGE)]


def camera_name(key: str) -> str:
    return key[len(IMAGE_PREFIX):] if key.startswith(IMAGE_PREFIX) else "image"


def _names(feature: Mapping[str, Any], key: str, prefix: str) -> tuple[str, ...]:
    """A vector feature's element names (LeRobot stores a list, a {"group": [...]} dict, or nothing)."""
    dim = int(np.prod(feature.get("shape") or (0,)))
    names = feature.get("names")
    if isinstance(names, Mapping):
        names = [n for group in names.values() for n in (group if isinstance(group, (list, tuple)) else [group])]
    if not names or len(names) != dim:
        names = [f"{prefix}_{i}" for i in range(dim)]
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ConfigError(f"feature '{key}': element names must be unique, got {names}")
    return tuple(names)


def image_hw(key: str, feature: Mapping[str, Any]) -> tuple[int, int]:
    """(H, W) of an image/video feature stored channels-last (LeRobot's usual) or channels-first."""
    shape, names = list(feature.get("shape") or ()), feature.get("names") or []
    if len(shape) != 3:
        raise ConfigError(f"feature '{key}': expected an image shape of 3 dims (H, W, 3 or 3, H, W), got {shape}")
    if list(names)[:1] == ["channels"] or (shape[0] == 3 and shape[2] != 3):
        return int(shape[1]), int(shape[2])
    return int(shape[0]), int(shape[1])


def _command(feature: Mapping[str, Any] | None) -> tuple[CommandField, ...]:
    if feature is None:
        return ()
    fields: list[CommandField] = []
    groups: dict[str, list[str]] = {}
    for n in _names(feature, COMMAND, "command"):
        if "=" in n:
            field, choice = n.split("=", 1)
            if field not in groups:
                groups[field] = []
                fields.append(CommandField(field, "discrete", choices=("?",)))  # placeholder, keeps order
            groups[field].append(choice)
        else:
            fields.append(CommandField(n, "continuous", low=-1.0, high=1.0, default=0.0))
    return tuple(CommandField(f.name, "discrete", choices=tuple(groups[f.name]), default=groups[f.name][0])
                 if f.kind == "discrete" else f for f in fields)


def sanitize_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", str(text).lower()).strip("_")
    return name or "robot"


def spec_from_lerobot(info: Mapping[str, Any], stats: Mapping[str, Any] | None, name: str,
                      margin: float = 0.05, default_head: str = "l1") -> EmbodimentSpec:
    """The spec of a LeRobot dataset from its `info.json` and `stats.json` dicts (see the module docstring)."""
    feats = info.get("features") or {}
    if ACTION not in feats:
        raise ConfigError(f"dataset '{name}': no 'action' feature (has {sorted(feats)})")
    action_names = _names(feats[ACTION], ACTION, "action")
    a_stats = (stats or {}).get(ACTION) or {}
    if "min" not in a_stats or "max" not in a_stats:
        raise ConfigError(f"dataset '{name}': meta/stats.json has no action min/max, needed for the action bounds")
    lo = np.asarray(a_stats["min"], dtype=np.float64).reshape(-1)
    hi = np.asarray(a_stats["max"], dtype=np.float64).reshape(-1)
    if lo.shape != (len(action_names),) or hi.shape != lo.shape or not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ConfigError(f"dataset '{name}': action min/max must be {len(action_names)} finite numbers each")
    pad = np.maximum(margin * (hi - lo), 1e-3)  # a constant action still gets a (tiny) range
    cams = camera_keys(feats)
    if not cams:
        raise ConfigError(f"dataset '{name}': physai needs at least one camera (an 'observation.images.*' "
                          f"image or video feature); features are {sorted(feats)}")
    fps = info.get("fps")
    if not isinstance(fps, (int, float)) or fps <= 0:
        raise ConfigError(f"dataset '{name}': info.json fps must be a positive number, got {fps!r}")
    proprio = _names(feats[STATE], STATE, "state") if STATE in feats else ()
    return EmbodimentSpec(
        name=name,
        action_names=action_names,
        action_units=("",) * len(action_names),
        action_low=tuple(float(x) for x in lo - pad),
        action_high=tuple(float(x) for x in hi + pad),
        control_hz=float(fps),
        cameras=tuple(CameraSpec(camera_name(k), *image_hw(k, feats[k])) for k in cams),
        proprio_names=proprio,
        command=_command(feats.get(COMMAND)),
        default_head=default_head,
        description=f"inferred from LeRobot metadata (robot_type {info.get('robot_type')!r})",
    )


def read_stats(root: str | Path) -> dict:
    """A LeRobot dataset's `meta/stats.json` ({} when the file is absent)."""
    path = Path(root) / "meta" / "stats.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def read_lerobot_meta(root: str | Path) -> tuple[dict, dict]:
    """(info, stats) of a LeRobot v3 dataset folder (stats {} when the file is absent)."""
    root = Path(root)
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise ConfigError(f"'{root}' is not a LeRobot dataset (no meta/info.json)")
    return json.loads(info_path.read_text()), read_stats(root)


def spec_from_dataset(root: str | Path, name: str | None = None, margin: float = 0.05) -> EmbodimentSpec:
    """The spec of the LeRobot dataset at `root`, named `name` or after its robot_type (else its folder)."""
    info, stats = read_lerobot_meta(root)
    return spec_from_lerobot(info, stats, sanitize_name(name or info.get("robot_type") or Path(root).name), margin)
