"""Per-robot constants for the humanoid envs and experts, read from the installed packages.

Everything here comes from a source, never typed in: the MJCF scene (MuJoCo Menagerie, via
`physai.embodiments.assets`), the walking policy's ONNX metadata (`dof_names`, `kp`, `kd`) and
holosoma's own inference config (default joint pose, observation terms and scales, action scale,
gait period, control rate). `build_model(robot)` returns a fresh `MjModel` whose position
actuators are turned into the policy's PD loop (`kp·(target − q) − kd·q̇`, evaluated by MuJoCo at
every 0.002 s physics step, the damping term integrated implicitly by the model's `implicitfast`
integrator, torques clipped by the joints' force ranges), and `RobotSetup.stand_qpos` is the
default pose with the feet resting on the floor. Policy joints the Menagerie model lacks (T1's
wrists/hands) are mapped by name and kept at their default pose in the expert's observation.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from physai.embodiments.assets import holosoma_onnx, menagerie_scene
from physai.errors import ConfigError

TIMESTEP = 0.002  # s; physics at 500 Hz, as the policies were trained
CONTROL_HZ = 50.0  # policy / env step rate
SUBSTEPS = int(round(1.0 / (CONTROL_HZ * TIMESTEP)))  # 10 physics steps per env step
_HOLOSOMA = {"g1": ("g1_29dof", "loco_g1_29dof"), "t1": ("t1_29dof", "loco_t1_29dof")}


@dataclass(frozen=True)
class RobotSetup:
    robot: str  # "g1" | "t1"
    joint_names: tuple[str, ...]  # actuated joints, MJCF actuator order (= spec action order)
    policy_names: tuple[str, ...]  # the ONNX policy's dof order (29)
    policy_index: np.ndarray  # [A] int: position of each actuator's joint in the policy vector
    default_pose: np.ndarray  # [A] rad: holosoma's default joint angles, actuator order
    policy_default: np.ndarray  # [29] rad: the same in policy order (incl. joints we lack)
    kp: np.ndarray  # [A] N·m/rad, from the ONNX metadata
    kd: np.ndarray  # [A] N·m·s/rad
    obs_terms: tuple[str, ...]  # observation terms, alphabetical (holosoma sorts them)
    obs_scales: dict[str, float]  # per-term scale
    action_scale: float  # target = default + action_scale · raw action
    gait_period: float  # s per gait cycle
    onnx_path: str  # walking policy
    qpos_adr: np.ndarray  # [A] int: qpos address of each actuated joint
    qvel_adr: np.ndarray  # [A] int: qvel (dof) address
    root_body: int  # body with the free joint (pelvis / trunk)
    stand_qpos: np.ndarray  # [nq] default pose, feet on the floor, facing +x
    stand_height: float  # m: root height of stand_qpos

    @property
    def action_dim(self) -> int:
        return len(self.joint_names)


@functools.lru_cache(maxsize=None)
def _onnx_meta(robot: str) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(holosoma_onnx(robot)), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    missing = {"dof_names", "kp", "kd"} - set(meta)
    if missing:
        raise ConfigError(f"walking policy for '{robot}' lacks ONNX metadata {sorted(missing)}")
    return {k: json.loads(v) for k, v in meta.items() if k in ("dof_names", "kp", "kd", "command_ranges")}


def _holosoma_config(robot: str) -> tuple[Any, Any, Any]:
    from holosoma_inference.config.config_values import observation, robot as robots, task

    if robot not in _HOLOSOMA:
        raise ConfigError(f"unknown humanoid '{robot}'; expected one of {sorted(_HOLOSOMA)}")
    rname, oname = _HOLOSOMA[robot]
    return getattr(robots, rname), getattr(observation, oname), task.locomotion


def _stand_height(model: Any, qpos: np.ndarray) -> float:
    """Lowest root height at which no geom of the robot penetrates the floor (bisection)."""
    import mujoco

    data = mujoco.MjData(model)
    lo, hi = 0.0, 2.0
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        data.qpos[:] = qpos
        data.qpos[2] = mid
        mujoco.mj_forward(model, data)
        lo, hi = (mid, hi) if data.ncon > 0 else (lo, mid)
    return hi


@functools.lru_cache(maxsize=None)
def _template(robot: str) -> tuple[Any, RobotSetup]:
    import mujoco

    meta = _onnx_meta(robot)
    rcfg, ocfg, tcfg = _holosoma_config(robot)
    names = tuple(meta["dof_names"])
    if float(tcfg.rl_rate) != CONTROL_HZ:
        raise ConfigError(f"'{robot}': holosoma runs its policy at {tcfg.rl_rate} Hz; physai assumes {CONTROL_HZ:g} Hz")
    if tuple(rcfg.dof_names) != names:
        raise ConfigError(f"'{robot}': holosoma config dof_names differ from the ONNX metadata")
    model = mujoco.MjModel.from_xml_path(str(menagerie_scene(robot)))
    model.opt.timestep = TIMESTEP
    joints = []
    for i in range(model.nu):
        joints.append(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, int(model.actuator_trnid[i, 0])))
    missing = [j for j in joints if j not in names]
    if missing:
        raise ConfigError(f"'{robot}': actuated joints {missing} are unknown to the walking policy")
    pidx = np.array([names.index(j) for j in joints], dtype=np.int64)  # [A]
    kp = np.asarray(meta["kp"], dtype=np.float64)[pidx]
    kd = np.asarray(meta["kd"], dtype=np.float64)[pidx]
    # position actuator: force = gain·ctrl + b0 + b1·q + b2·q̇  ->  kp·(ctrl − q) − kd·q̇
    model.actuator_gainprm[:, :] = 0.0
    model.actuator_biasprm[:, :] = 0.0
    model.actuator_gainprm[:, 0] = kp
    model.actuator_biasprm[:, 1] = -kp
    model.actuator_biasprm[:, 2] = -kd
    jid = model.actuator_trnid[:, 0]
    model.actuator_ctrllimited[:] = 1
    model.actuator_ctrlrange[:, :] = model.jnt_range[jid]
    policy_default = np.asarray(rcfg.default_dof_angles, dtype=np.float64)  # [29]
    default_pose = policy_default[pidx]  # [A]
    qadr = np.asarray(model.jnt_qposadr[jid], dtype=np.int64)
    vadr = np.asarray(model.jnt_dofadr[jid], dtype=np.int64)
    free = [j for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
    if len(free) != 1 or model.jnt_qposadr[free[0]] != 0:
        raise ConfigError(f"'{robot}': expected one free joint at qpos[0:7]")
    qpos = np.array(model.qpos0, dtype=np.float64)
    qpos[3:7] = (1.0, 0.0, 0.0, 0.0)
    qpos[qadr] = default_pose
    qpos[2] = _stand_height(model, qpos) + 0.002  # 2 mm above the floor: settles in a few steps
    setup = RobotSetup(
        robot=robot,
        joint_names=tuple(joints),
        policy_names=names,
        policy_index=pidx,
        default_pose=default_pose,
        policy_default=policy_default,
        kp=kp,
        kd=kd,
        obs_terms=tuple(sorted(ocfg.obs_dict["actor_obs"])),
        obs_scales={k: float(v) for k, v in ocfg.obs_scales.items()},
        action_scale=float(tcfg.policy_action_scale),
        gait_period=float(tcfg.gait_period),
        onnx_path=str(holosoma_onnx(robot)),
        qpos_adr=qadr,
        qvel_adr=vadr,
        root_body=int(model.jnt_bodyid[free[0]]),
        stand_qpos=qpos,
        stand_height=float(qpos[2]),
    )
    return model, setup


def robot_setup(robot: str) -> RobotSetup:
    """Constants for 'g1' or 't1' (cached)."""
    return _template(robot)[1]


def build_model(robot: str) -> Any:
    """A fresh `MjModel` (own copy: renderers may change its visual options)."""
    return copy.deepcopy(_template(robot)[0])
