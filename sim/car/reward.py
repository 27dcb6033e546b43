"""The car's rule-based reward terms and its two registered models, `car` (additive) and
`car-carl` (multiplicative, CaRL-style).

Every term reads the car env's documented `info` (see `physai.sim.car.env`): `collision`,
`offroad`, `speed`, `progress_m`, `lane_error`, `lane_id`, `speed_limit`, `blocked`, `command`
and `sensors` (the radar-like track list the guard reads), plus the executed action and the
guard's interventions. Groups: safety (collision, time to collision, leaving the road, guard
interventions), efficiency (progress, stalling), compliance (lane keeping, speed limit, unsafe
lane change, instruction followed: commanded speed and a pending lane request), comfort (jerk).
"""

from __future__ import annotations

import math

import numpy as np

from physai.rl.reward import REWARDS, RewardModel, RewardTerm, Step
from physai.sim.car import STOP_NONE_M
from physai.sim.car.score import JERK_MAX, ttc_from_sensors

TTC_MIN_S = 1.5  # a time to collision below this is penalised (NAVSIM fails at 0.9 s; keep a margin)
V_REF = 30.0  # m/s: progress is counted in units of this speed x dt (about 1 per step at the speed limit)
STALL_SPEED = 1.0  # m/s: slower than this while the road ahead is free (not `blocked`) is stalling
UNSAFE_GAP_M = 5.0  # a lane change ending this close (bumper to bumper) to a car in the new lane is unsafe
SPEED_TOL = 2.0  # m/s of commanded-speed error that costs nothing


def progress(s: Step) -> float:
    prev = s.prev["progress_m"] if s.prev is not None else 0.0
    return (float(s.info["progress_m"]) - float(prev)) / (V_REF * s.dt)


def collision(s: Step) -> float:
    return float(bool(s.info["collision"]))


def offroad(s: Step) -> float:
    return float(bool(s.info["offroad"]))


def low_ttc(s: Step) -> float:
    """0 when nothing ahead closes within TTC_MIN_S, rising linearly to 1 at TTC 0."""
    ttc = ttc_from_sensors(s.info.get("sensors"))
    if math.isnan(ttc):
        return 1.0  # missing sensors: assume the worst, as the guard does
    return float(max(0.0, 1.0 - ttc / TTC_MIN_S))


def stall(s: Step) -> float:
    return float(float(s.info["speed"]) < STALL_SPEED and not s.info.get("blocked", False))


def lane_keeping(s: Step) -> float:
    sensors = s.info.get("sensors") or {}
    half = float(sensors.get("lane_width", 4.0)) / 2
    return float(min(float(s.info["lane_error"]) / half, 1.0))


def speed_limit(s: Step) -> float:
    """Overspeed as a fraction of the limit (0 within it)."""
    limit = float(s.info.get("speed_limit", math.inf))
    return 0.0 if not math.isfinite(limit) else max(0.0, float(s.info["speed"]) - limit) / max(limit, 1.0)


def unsafe_lane_change(s: Step) -> float:
    if s.prev is None or int(s.info["lane_id"]) == int(s.prev["lane_id"]):
        return 0.0
    sensors = s.info.get("sensors") or {}
    try:
        obj = np.asarray(sensors["objects"], np.float64).reshape(-1, 5)
        half, ego_len = float(sensors["lane_width"]) / 2, float(sensors["ego_length"])
    except (KeyError, TypeError, ValueError):
        return 1.0
    same = obj[np.abs(obj[:, 1]) < half]
    gaps = np.abs(same[:, 0]) - (same[:, 4] + ego_len) / 2
    return float(bool(len(gaps)) and float(gaps.min()) < UNSAFE_GAP_M)


def speed_command(s: Step) -> float:
    """Commanded-speed error beyond SPEED_TOL, in units of 10 m/s, capped at 1."""
    command = s.info.get("command") or {}
    cmd = command.get("speed")
    if cmd is None or float(command.get("stop", STOP_NONE_M)) < STOP_NONE_M:
        return 0.0  # no speed asked for, or a stop is (scored as an instruction of its own)
    return float(min(max(0.0, abs(float(s.info["speed"]) - float(cmd)) - SPEED_TOL) / 10.0, 1.0))


def lane_request_pending(s: Step) -> float:
    """1 while a lane request is pending (the env clears it once the ego is centred in the new lane)."""
    return float((s.info.get("command") or {}).get("lane", "keep") != "keep")


def jerk(s: Step) -> float:
    """|Δ commanded acceleration| / dt as a fraction of NAVSIM's jerk bound, capped at 2."""
    if s.prev_action is None:
        return 0.0
    j = abs(float(s.action[0]) - float(s.prev_action[0])) / s.dt
    return float(min(j / JERK_MAX, 2.0))


def guard_intervention(s: Step) -> float:
    """1 when the safety guard had to brake (AEB) or fail closed this step."""
    return float(bool(s.interventions.get("aeb", 0) or s.interventions.get("sensor_fail", 0)))


def _terms(w: dict[str, float]) -> list[RewardTerm]:
    spec = [  # name, fn, kind, group
        ("progress", progress, "bonus", "efficiency"),
        ("collision", collision, "penalty", "safety"),
        ("offroad", offroad, "penalty", "safety"),
        ("low_ttc", low_ttc, "penalty", "safety"),
        ("guard", guard_intervention, "penalty", "safety"),
        ("stall", stall, "penalty", "efficiency"),
        ("lane_keeping", lane_keeping, "penalty", "compliance"),
        ("speed_limit", speed_limit, "penalty", "compliance"),
        ("unsafe_lane_change", unsafe_lane_change, "penalty", "compliance"),
        ("speed_command", speed_command, "penalty", "compliance"),
        ("lane_request", lane_request_pending, "penalty", "compliance"),
        ("jerk", jerk, "penalty", "comfort"),
    ]
    return [RewardTerm(n, f, w[n], k, g) for n, f, k, g in spec]


@REWARDS.register("car")
def car_reward() -> RewardModel:
    """Additive: about +1 per step at 30 m/s; a collision costs 50 steps of progress."""
    return RewardModel(_terms({"progress": 1.0, "collision": 50.0, "offroad": 5.0, "low_ttc": 1.0, "guard": 1.0,
                               "stall": 0.5, "lane_keeping": 0.2, "speed_limit": 1.0, "unsafe_lane_change": 5.0,
                               "speed_command": 0.5, "lane_request": 0.1, "jerk": 0.2}), "additive", "car")


@REWARDS.register("car-carl")
def car_carl_reward() -> RewardModel:
    """Multiplicative (CaRL): progress scaled by a factor per infraction; a collision zeroes the step."""
    return RewardModel(_terms({"progress": 1.0, "collision": 1.0, "offroad": 1.0, "low_ttc": 0.5, "guard": 0.5,
                               "stall": 1.0, "lane_keeping": 0.3, "speed_limit": 1.0, "unsafe_lane_change": 0.5,
                               "speed_command": 0.5, "lane_request": 0.1, "jerk": 0.25}), "multiplicative", "car-carl")
