"""How a physai data set sits inside a LeRobotDataset v3: feature names, the spec file, task strings.

Every recorded frame has `observation.images.<camera>` (uint8 [H, W, 3], stored as PNG inside the
parquet files: LeRobot's `image` dtype, not video - see `physai.data.writer` for why),
`observation.state` (the spec's proprio vector), `observation.command` (the spec-encoded command,
`spec.encode_command`), `action` (physical units, what the expert did or would have done) and
`next.reward`, plus a task string per frame ("drive: lane keep, 25 m/s", "walk: vx 0.5 vy 0 yaw 0").
`meta/physai.json` names the embodiment, stores `spec.to_dict()` and the collection sessions (env,
base seed, episode range, DAgger checkpoint); `read_physai_meta` checks it against the registered
spec and the LeRobot features, raising `SpecMismatchError` on any difference.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from physai.embodiments import EMBODIMENTS, EmbodimentSpec, get_spec
from physai.errors import ConfigError, SpecMismatchError
from physai.sim.family import BodyFamily, family_for_embodiment, family_for_env

FORMAT = "physai-dataset-1"
META_FILE = "meta/physai.json"
NORM_FILE = "meta/physai_norm.safetensors"
STATE, COMMAND, ACTION, REWARD = "observation.state", "observation.command", "action", "next.reward"
IMAGE_PREFIX = "observation.images."


def image_key(camera: str) -> str:
    return IMAGE_PREFIX + camera


def camera_feature(features: Mapping[str, Any], camera: str) -> str:
    """The feature key of `camera`: `observation.images.<camera>`, or LeRobot's lone `observation.image`."""
    key = image_key(camera)
    return key if key in features or camera != "image" or "observation.image" not in features else "observation.image"


def command_names(spec: EmbodimentSpec) -> list[str]:
    """One name per encoded command dim: `lane=keep`, `lane=left`, ..., `speed`."""
    out: list[str] = []
    for f in spec.command:
        out += [f"{f.name}={c}" for c in f.choices] if f.kind == "discrete" else [f.name]
    return out


def features_for(spec: EmbodimentSpec) -> dict[str, dict]:
    """LeRobot `features` for one embodiment (images as PNG `image` features, channels last)."""
    feats: dict[str, dict] = {}
    for cam in spec.cameras:
        feats[image_key(cam.name)] = {"dtype": "image", "shape": (cam.height, cam.width, 3),
                                      "names": ["height", "width", "channels"]}
    feats[STATE] = {"dtype": "float32", "shape": (spec.proprio_dim,), "names": list(spec.proprio_names)}
    feats[COMMAND] = {"dtype": "float32", "shape": (spec.command_dim,), "names": command_names(spec)}
    feats[ACTION] = {"dtype": "float32", "shape": (spec.action_dim,), "names": list(spec.action_names)}
    feats[REWARD] = {"dtype": "float32", "shape": (1,), "names": None}
    return feats


def embodiment_for_env(env_id: str, env: Any = None) -> str:
    """`env.unwrapped.embodiment` when the env has it, else what the env's body family says."""
    name = getattr(getattr(env, "unwrapped", env), "embodiment", None) if env is not None else None
    if isinstance(name, str):
        return name
    return family_for_env(env_id).embodiment_of(env_id)


def fps_for(spec: EmbodimentSpec) -> int:
    fps = int(round(spec.control_hz))
    if abs(fps - spec.control_hz) > 1e-9:
        raise ConfigError(f"LeRobot datasets need an integer fps; spec '{spec.name}' runs at {spec.control_hz} Hz")
    return fps


def task_string(spec: EmbodimentSpec, command: Mapping[str, Any]) -> str:
    """Human-readable task for a command (rounded, so the task vocabulary stays small), as the
    embodiment's body family words it (a spec no family drives gets the generic wording)."""
    try:
        fam = family_for_embodiment(spec.name)
    except ConfigError:
        fam = BodyFamily()
    return fam.task_string(spec, command)


# ---- meta/physai.json --------------------------------------------------------------------------
def atomic_write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def new_physai_meta(spec: EmbodimentSpec) -> dict[str, Any]:
    return {"format": FORMAT, "embodiment": spec.name, "spec": spec.to_dict(), "sessions": [],
            "total_episodes": 0, "total_frames": 0}


def is_dataset(root: str | Path) -> bool:
    return (Path(root) / "meta" / "info.json").is_file()


def read_info(root: str | Path) -> dict[str, Any]:
    path = Path(root) / "meta" / "info.json"
    if not path.is_file():
        raise ConfigError(f"'{root}' is not a LeRobot dataset (no meta/info.json)")
    info = json.loads(path.read_text())
    if info.get("codebase_version") != "v3.0":
        raise ConfigError(f"'{root}': LeRobot dataset version {info.get('codebase_version')!r}, physai reads v3.0")
    return info


def read_physai_meta(root: str | Path, expect: EmbodimentSpec | str | None = None) -> tuple[dict, EmbodimentSpec]:
    """Load meta/physai.json and check the stored spec against the registered one (or `expect`).

    Returns (meta dict, registered spec). Raises SpecMismatchError if the data was recorded for a
    different spec, or if the LeRobot features disagree with it."""
    path = Path(root) / META_FILE
    if not path.is_file():
        raise ConfigError(f"'{root}' has no {META_FILE}: not recorded by physai (or not a dataset)")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ConfigError(f"'{path}': unknown format {meta.get('format')!r} (expected {FORMAT})")
    name = meta["embodiment"]
    if isinstance(expect, str):
        expect = get_spec(expect)
    if expect is not None and expect.name != name:
        raise SpecMismatchError(expect.name, "name", expect.name, name)
    spec = expect or get_spec(name)
    spec.check_compatible(meta["spec"])
    check_features(read_info(root)["features"], spec)
    return meta, spec


def check_features(feats: Mapping[str, Any], spec: EmbodimentSpec, full: bool = True) -> None:
    """SpecMismatchError unless a dataset's LeRobot `features` hold what `spec` reads. `full`: every
    feature physai writes (its own recordings); else only cameras, state, action, and the command
    when the spec has one (a dataset LeRobot recorded)."""
    want_all = features_for(spec)
    keys = list(want_all) if full else [k for k in want_all if k != REWARD and (k != COMMAND or spec.command_dim)
                                        and (k != STATE or spec.proprio_dim)]
    from physai.embodiments.from_lerobot import image_hw

    for key in keys:
        want, camera = want_all[key], key.startswith(IMAGE_PREFIX)
        got = feats.get(camera_feature(feats, key[len(IMAGE_PREFIX):]) if camera else key)
        shape = None if got is None else tuple(got["shape"])
        if camera and shape is not None and len(shape) == 3:
            shape = (*image_hw(key, got), 3)
        if got is None or shape != tuple(want["shape"]) or got["dtype"] not in (want["dtype"], "video"):
            raise SpecMismatchError(spec.name, f"feature {key}", want["shape"], None if got is None else got["shape"])


def dataset_spec(root: str | Path, expect: EmbodimentSpec | str | None = None) -> tuple[EmbodimentSpec, bool]:
    """(spec, recorded by physai) of the LeRobot dataset at `root`.

    With `meta/physai.json`: the stored spec, checked (`read_physai_meta`). Without it (a dataset
    LeRobot recorded, or a physai one that LeRobot's tools rewrote): `expect` when given; else the
    registered spec its `robot_type` names, if the features match it; else the spec inferred from
    LeRobot's metadata (`physai.embodiments.from_lerobot`), named `expect` (a str) or the robot_type."""
    from physai.embodiments.from_lerobot import read_stats, sanitize_name, spec_from_lerobot

    root = Path(root)
    if (root / META_FILE).is_file():
        return read_physai_meta(root, expect)[1], True
    info = read_info(root)  # (checks the version)
    if isinstance(expect, EmbodimentSpec):
        check_features(info["features"], expect, full=False)
        return expect, False
    name = sanitize_name(expect or info.get("robot_type") or root.name)
    if name in EMBODIMENTS:
        registered = get_spec(name)
        try:
            check_features(info["features"], registered, full=False)
            return registered, False
        except SpecMismatchError:
            if expect:  # asked for this body by name: its features must fit
                raise
    return spec_from_lerobot(info, read_stats(root), name), False

