"""The humanoid's rule-based reward terms and its registered model `humanoid` (additive).

Terms read the walk env's documented `info` (see `physai.sim.humanoid.env`): `base_lin_vel` and
`yaw_rate` against the `command`, `energy`, `fell`, and `sensors["gravity"]` (the IMU's
projected gravity), plus the executed joint targets. Groups: tracking (linear velocity, yaw rate),
safety (upright, fall), efficiency (energy), comfort (smoothness of the targets).
"""

from __future__ import annotations

import math

import numpy as np

from physai.rl.reward import REWARDS, RewardModel, RewardTerm, Step

TRACK_SIGMA = 0.25  # (m/s)² and (rad/s)²: exp(−err²/σ) kernels, as legged-gym's tracking rewards
POWER_REF_W = 500.0  # W: energy is penalised in units of this mean power


def lin_vel_tracking(s: Step) -> float:
    cmd, v = s.info["command"], np.asarray(s.info["base_lin_vel"], np.float64)
    err2 = (float(cmd["vx"]) - v[0]) ** 2 + (float(cmd["vy"]) - v[1]) ** 2
    return math.exp(-err2 / TRACK_SIGMA)


def yaw_tracking(s: Step) -> float:
    return math.exp(-(float(s.info["command"]["yaw_rate"]) - float(s.info["yaw_rate"])) ** 2 / TRACK_SIGMA)


def tilt(s: Step) -> float:
    """1 − cos(tilt) from the IMU's projected gravity (0 upright)."""
    g = np.asarray((s.info.get("sensors") or {}).get("gravity", (0.0, 0.0, -1.0)), np.float64)
    return float(min(max(0.0, 1.0 + g[2] / max(np.linalg.norm(g), 1e-9)), 1.0))


def fall(s: Step) -> float:
    return float(bool(s.info["fell"]))


def energy(s: Step) -> float:
    return float(s.info.get("energy", 0.0)) / (POWER_REF_W * s.dt)


def smoothness(s: Step) -> float:
    if s.prev_action is None:
        return 0.0
    return float(np.mean(np.abs(np.asarray(s.action, np.float64) - np.asarray(s.prev_action, np.float64))))


@REWARDS.register("humanoid")
def humanoid_reward() -> RewardModel:
    return RewardModel([
        RewardTerm("lin_vel_tracking", lin_vel_tracking, 1.0, "bonus", "tracking"),
        RewardTerm("yaw_tracking", yaw_tracking, 0.5, "bonus", "tracking"),
        RewardTerm("upright", tilt, 1.0, "penalty", "safety"),
        RewardTerm("fall", fall, 20.0, "penalty", "safety"),
        RewardTerm("energy", energy, 0.05, "penalty", "efficiency"),
        RewardTerm("smoothness", smoothness, 1.0, "penalty", "comfort"),
    ], "additive", "humanoid")
