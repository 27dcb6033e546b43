"""Registered embodiments: `car` (2-DoF highway driving), `g1` (Unitree G1, 29 joints) and `t1`
(Booster T1, 23 joints; the "new robot" for fine-tuning tests).

Builders are registered in `EMBODIMENTS`; `get_spec(name)` builds (and caches) a spec. Humanoid
joint limits are read from the MuJoCo Menagerie MJCF, not typed in by hand.
"""

from __future__ import annotations

import functools
import math

from physai.embodiments.assets import actuated_joints
from physai.embodiments.spec import CameraSpec, CommandField, EmbodimentSpec
from physai.registry import Registry

EMBODIMENTS: Registry = Registry("embodiment")

IMAGE_SIZE = 64  # default camera resolution: small enough for CPU training


@EMBODIMENTS.register("car")
def car() -> EmbodimentSpec:
    """highway-env's continuous action: acceleration ±5 m/s², steering ±π/4 rad."""
    return EmbodimentSpec(
        name="car",
        action_names=("accel", "steer"),
        action_units=("m/s^2", "rad"),
        action_low=(-5.0, -math.pi / 4),
        action_high=(5.0, math.pi / 4),
        control_hz=5.0,  # highway-env policy_frequency
        cameras=(CameraSpec("topdown", IMAGE_SIZE, IMAGE_SIZE),),
        proprio_names=("speed", "heading", "lateral_offset", "lane_index", "prev_accel", "prev_steer"),
        command=(
            CommandField("lane", "discrete", choices=("keep", "left", "right"), default="keep"),
            CommandField("speed", "continuous", low=0.0, high=40.0, unit="m/s", default=25.0),
            # metres left to a requested stop point ("stop within D m", counting down as the car
            # drives); the high bound means no stop requested, as a navigation display saturates
            CommandField("stop", "continuous", low=0.0, high=300.0, unit="m", default=300.0),
        ),
        default_head="l1",
        description="2-DoF car: longitudinal acceleration and front-wheel steering",
    )


def _humanoid(name: str, robot: str, description: str) -> EmbodimentSpec:
    joints, lo, hi = actuated_joints(robot)
    proprio = (
        [f"q_{j}" for j in joints]
        + [f"dq_{j}" for j in joints]
        + ["base_ang_vel_x", "base_ang_vel_y", "base_ang_vel_z", "gravity_x", "gravity_y", "gravity_z"]
        + ["sin_phase_l", "sin_phase_r", "cos_phase_l", "cos_phase_r"]
        + [f"last_action_{j}" for j in joints]
    )
    return EmbodimentSpec(
        name=name,
        action_names=joints,
        action_units=("rad",) * len(joints),
        action_low=lo,
        action_high=hi,
        control_hz=50.0,
        cameras=(CameraSpec("follow", IMAGE_SIZE, IMAGE_SIZE),),
        proprio_names=tuple(proprio),
        command=(
            CommandField("vx", "continuous", low=-1.0, high=1.0, unit="m/s", default=0.0),
            CommandField("vy", "continuous", low=-1.0, high=1.0, unit="m/s", default=0.0),
            CommandField("yaw_rate", "continuous", low=-1.0, high=1.0, unit="rad/s", default=0.0),
        ),
        default_head="l1",
        description=description,
    )


@EMBODIMENTS.register("g1")
def g1() -> EmbodimentSpec:
    return _humanoid("g1", "g1", "Unitree G1 humanoid: 29 joint position targets, 50 Hz")


@EMBODIMENTS.register("t1")
def t1() -> EmbodimentSpec:
    return _humanoid("t1", "t1", "Booster T1 humanoid: 23 joint position targets (Menagerie model), 50 Hz")


@functools.lru_cache(maxsize=None)
def get_spec(name: str) -> EmbodimentSpec:
    return EMBODIMENTS.get(name)()
