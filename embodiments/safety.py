"""Safety guards: classic rules outside the learned model that veto its actions, and `SafePolicy`.

The model drives, the guard vetoes. A guard reads only a documented per-step sensor dict that the
env provides in `info["sensors"]` (or a real robot measures), never simulator internals, so the
same guard runs in simulation and on the machine. `CarGuard` is an automatic emergency brake fed by
a radar-like object list (ego speed, lane width, ego length, objects as (dx, dy, dvx, dvy,
length) in the ego lane's frame): it brakes fully when the next control step at the proposed
acceleration would leave too little room to stop behind an object in the ego's path, and fails
closed (brakes) when the sensors are missing or garbage; it also enforces the spec's bounds and
per-step acceleration/steering rate limits. `HumanoidGuard` enforces joint limits and a per-step
target change limit (the first action after `reset` included, relative to the measured joint
positions), and on a fall (tilt from the projected gravity, or a low base) latches a damped stance
that walks the targets back to the default pose. Both replace a non-finite action by a safe one
and warn once per episode, raise `ObservationError` on a mis-shaped action (never broadcast), and
count every intervention per rule (`counts`, `interventions`). `SafePolicy(policy, guard,
embodiment)` is what a deployment uses. Neither guard is differentiable or trained; which guard a
body gets is its body family's choice (`physai.sim.*.family`), nothing here branches on a name.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import numpy as np

from physai.embodiments.spec import EmbodimentSpec
from physai.errors import ConfigError, ObservationError

CAR_RULES = ("aeb", "sensor_fail", "nonfinite", "bounds", "accel_rate", "steer_rate")
HUMANOID_RULES = ("fall", "nonfinite", "bounds", "rate")


def _action(action: Any, spec: EmbodimentSpec) -> np.ndarray:
    """`action` as float64 [A]; anything of another shape is an error, never broadcast."""
    A = spec.action_dim
    expected = f"shape ({A},) = {list(spec.action_names)}"
    if hasattr(action, "detach"):  # a torch tensor
        action = action.detach().cpu().numpy()
    try:
        a = np.array(action, dtype=np.float64)  # a copy: the caller's array is never modified
    except (TypeError, ValueError):
        raise ObservationError("action", expected, f"{type(action).__name__} {action!r:.80}") from None
    if a.shape != (A,):
        raise ObservationError("action", expected, f"shape {a.shape}")
    return a


def _positive(name: str, value: float, allow_zero: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return v


class _Counts:
    """Per-rule intervention counts and the once-per-episode non-finite warning."""

    RULES: tuple[str, ...] = ()

    def _reset_counts(self) -> None:
        self._counts = {k: 0 for k in self.RULES}
        self._warned = False

    @property
    def counts(self) -> dict[str, int]:
        """Interventions per rule since `reset`: steps in which that rule changed the action."""
        return dict(self._counts)

    @property
    def interventions(self) -> int:
        return sum(self._counts.values())

    def _nonfinite(self, a: np.ndarray, substitute: str) -> None:
        self._counts["nonfinite"] += 1
        if not self._warned:
            self._warned = True
            bad = np.flatnonzero(~np.isfinite(a)).tolist()
            warnings.warn(f"{type(self).__name__}: non-finite action entries at {bad} replaced by {substitute} "
                          "(warned once per episode; see guard.counts['nonfinite'])", RuntimeWarning, stacklevel=3)


class CarGuard(_Counts):
    """AEB + bounds + rate limits for a 2-DoF (accel m/s², steer rad) car spec.

    filter order: a non-finite action → full brake and the last steering; bounds; rate limits
    (|Δaccel| ≤ `max_accel_step`, |Δsteer| ≤ `max_steer_step` per control step, relative to the last
    output, which is (0, 0) at `reset`, the state the env starts its actuators in); emergency brake.
    The AEB predicts, on a 0.05 s grid, the gap to every object ahead (dx > 0) under the plan "apply
    the proposed acceleration for one control step (the reaction/latency term), then brake at the
    spec's full deceleration until stopped"; an object moving forward along the road is assumed to
    brake at up to `lead_decel`, any other keeps its velocity. A conflict is that gap dropping below
    `min_gap_m` while the object is in the ego's path: its centre within lane_width/2 +
    `lane_margin_m` of the ego's centre line, widened for an object crossing at an angle (its
    footprint is its length along its velocity by `object_width_m` across). Objects along the road
    that move into the path (cut-ins, or the ego drifting out of its lane) are predicted at their
    relative lateral speed up to `lateral_horizon_s` ahead and then stay; crossing traffic is
    extrapolated in a straight line up to `crossing_horizon_s` ahead and passes through. On a
    conflict with an object along the road the guard brakes fully at once: with a constant-speed
    lead this is gap < closing²/(2·a_brake) + one step of latency + min gap, so a brake one step
    later would still have sufficed. For crossing traffic it brakes only while a full brake now
    still stops short of its path (stopping inside the path makes that crash likelier, not less).
    Braking to the spec's low acceleration (AEB, sensor failure, non-finite action) bypasses the
    acceleration rate limit: a brake must act at once. Missing sensors, a missing key among
    ego_speed/lane_width/ego_length/objects, or non-finite or malformed values → brake
    ("sensor_fail": fail closed).
    """

    RULES = CAR_RULES

    def __init__(
        self,
        spec: EmbodimentSpec,
        # 4 m/s² per 0.2 s step (20 m/s³): far above comfort (~2 m/s³), so normal driving and the
        # expert (99th percentile 3.3 m/s² per step on the highway) pass; a full -5 ↔ +5 swing
        # takes 3 steps instead of one, which stops a glitching policy's bang-bang pumping.
        max_accel_step: float = 4.0,
        # 0.3 rad of front-wheel angle per step (1.5 rad/s): about a fast power-steering rack; the
        # expert's low-speed roundabout steering exceeds it in ~4% of steps, at highway speed it
        # steers far less; a full lock-to-lock swing takes 6 steps (1.2 s).
        max_steer_step: float = 0.3,
        min_gap_m: float = 2.0,  # bumper-to-bumper room the AEB keeps after stopping
        lane_margin_m: float = 0.5,  # path half-width = lane_width/2 + this (2 m wide cars in 4 m lanes)
        lead_decel: float = 6.0,  # m/s²: how hard an object ahead may brake (highway-env IDM's cap)
        lateral_horizon_s: float = 1.0,  # predict objects along the road moving into the path this far
        crossing_horizon_s: float = 2.0,  # s: crossing traffic is predicted (straight on) this far
        object_width_m: float = 2.0,  # footprint width assumed for objects (the list gives lengths)
    ):
        if spec.action_dim != 2:
            raise ConfigError(f"CarGuard needs a 2-DoF (accel, steer) spec, got '{spec.name}' with "
                              f"{spec.action_dim} actions {list(spec.action_names)}")
        self.spec = spec
        self.max_accel_step = _positive("max_accel_step", max_accel_step)
        self.max_steer_step = _positive("max_steer_step", max_steer_step)
        self.min_gap_m = _positive("min_gap_m", min_gap_m, allow_zero=True)
        self.lane_margin_m = _positive("lane_margin_m", lane_margin_m, allow_zero=True)
        self.lead_decel = _positive("lead_decel", lead_decel, allow_zero=True)
        self.lateral_horizon_s = _positive("lateral_horizon_s", lateral_horizon_s, allow_zero=True)
        self.crossing_horizon_s = _positive("crossing_horizon_s", crossing_horizon_s, allow_zero=True)
        self.object_width_m = _positive("object_width_m", object_width_m, allow_zero=True)
        self._t_step = 0.05  # s: time resolution of the AEB's prediction
        self._low, self._high = spec.low.astype(np.float64), spec.high.astype(np.float64)
        self.brake = float(self._low[0])  # m/s², the full-brake command
        if not self.brake < 0:
            raise ConfigError(f"CarGuard: the spec's lowest acceleration must be a deceleration (< 0), got {self.brake}")
        self.dt = 1.0 / spec.control_hz  # s: one control step (the AEB's latency term)
        self.reset()

    def __repr__(self) -> str:
        return (f"CarGuard(spec={self.spec.name!r}, max_accel_step={self.max_accel_step}, max_steer_step="
                f"{self.max_steer_step}, min_gap_m={self.min_gap_m}, lead_decel={self.lead_decel})")

    def reset(self, sensors: Mapping | None = None) -> None:
        """Start an episode: zero the counts, rate limits relative to (0, 0)."""
        self._reset_counts()
        self._last = np.clip(np.zeros(2), self._low, self._high)  # [2] last output

    def filter(self, action: Any, sensors: Mapping | None = None) -> np.ndarray:
        """The action to apply: float32 [2], finite, within bounds and rate limits (see class doc)."""
        a = _action(action, self.spec)  # [2] float64
        last = self._last
        braking = False  # an emergency brake that bypasses the accel rate limit
        if not np.all(np.isfinite(a)):
            self._nonfinite(a, "full brake and the last steering")
            a = np.array([self.brake, last[1]])
            braking = True
        b = np.clip(a, self._low, self._high)
        if not np.array_equal(a, b):
            self._counts["bounds"] += 1
        a = b
        if not braking:
            acc = min(max(a[0], last[0] - self.max_accel_step), last[0] + self.max_accel_step)
            if acc != a[0]:
                self._counts["accel_rate"] += 1
            a[0] = acc
        steer = min(max(a[1], last[1] - self.max_steer_step), last[1] + self.max_steer_step)
        if steer != a[1]:
            self._counts["steer_rate"] += 1
        a[1] = steer
        verdict = self._assess(sensors, float(a[0])) if a[0] > self.brake else "ok"  # braking already
        if verdict != "ok":
            self._counts["aeb" if verdict == "brake" else "sensor_fail"] += 1
            a[0] = self.brake
        a = np.clip(a, self._low, self._high)
        self._last = a
        return a.astype(np.float32)

    # ---- emergency brake ---------------------------------------------------------------------
    def _assess(self, sensors: Mapping | None, accel: float) -> str:
        """'ok', 'brake' (braking now prevents or mitigates a conflict) or 'fail' (unusable sensors)."""
        if not isinstance(sensors, Mapping):
            return "fail"
        try:
            v = float(sensors["ego_speed"])
            width = float(sensors["lane_width"])
            length = float(sensors["ego_length"])
            obj = np.asarray(sensors["objects"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            return "fail"
        if obj.size == 0:
            obj = obj.reshape(0, 5)
        if not (math.isfinite(v) and math.isfinite(width) and width > 0 and math.isfinite(length) and length >= 0):
            return "fail"
        if obj.ndim != 2 or obj.shape[1] != 5 or not np.all(np.isfinite(obj)) or np.any(obj[:, 4] < 0):
            return "fail"
        obj = obj[obj[:, 0] > 0]  # [M, 5] centres ahead; what is behind is not the ego's to brake for
        if obj.shape[0] == 0:
            return "ok"
        v = max(v, 0.0)
        aligned = self._aligned(obj, v)  # [M]
        conflict = self._conflict(obj, aligned, v, length, width, accel)  # [M]
        if np.any(conflict & aligned):
            return "brake"  # braking never makes a conflict with an object along the road worse
        crossing = conflict & ~aligned
        if np.any(crossing):  # brake for crossing traffic only while a stop short of its path is possible
            too_late = self._conflict(obj, aligned, v, length, width, self.brake)
            if np.any(crossing & ~too_late):
                return "brake"
        return "ok"

    def _aligned(self, obj: np.ndarray, v: float) -> np.ndarray:
        """[M] bool: the object is still or moves mostly along the lane (either way), not across it."""
        vx, vy = v + obj[:, 2], obj[:, 3]  # object velocity in the lane frame (ego assumed along its lane)
        return (np.hypot(vx, vy) < 1.0) | (np.abs(vy) <= np.abs(vx))

    def _conflict(self, obj: np.ndarray, aligned: np.ndarray, v: float, length: float, width: float,
                  accel: float) -> np.ndarray:
        """[M] bool: applying `accel` for one control step and then braking fully, the ego would come
        within `min_gap_m` of the object (longitudinally, while it is in the ego's path)."""
        dx, dy, dvx, dvy, obj_len = obj.T  # [M] each
        b = -self.brake  # > 0
        v1 = max(v + accel * self.dt, 0.0)
        horizon = max(self.dt + v1 / b, self.crossing_horizon_s)
        t = np.arange(0.0, horizon + self._t_step, self._t_step)  # [K] s
        ego = np.where(t <= self.dt, _travel(v, -accel, t),
                       _travel(v, -accel, self.dt) + _travel(v1, b, np.maximum(t - self.dt, 0.0)))  # [K] m
        vx, vy = v + dvx, dvy  # [M] object velocity in the lane frame
        speed = np.hypot(vx, vy)
        moving = speed >= 1.0
        c = np.where(moving, np.abs(vx) / np.maximum(speed, 1e-9), 1.0)  # |cos| of its heading
        s = np.where(moving, np.abs(vy) / np.maximum(speed, 1e-9), 0.0)
        w = self.object_width_m
        long_half = 0.5 * (obj_len * c + w * s)  # [M] its half extent along the lane ...
        lat_half = 0.5 * (obj_len * s + w * c)  # ... and across it
        half = width / 2 + self.lane_margin_m + (lat_half - w / 2)  # [M] path half-width for its centre
        dy_t = dy[:, None] + dvy[:, None] * t[None, :]  # [M, K]
        inside = np.abs(dy_t) < half[:, None]
        # along the road, an object that moves into the path stays there (a lane change ends in the
        # lane); an entry is only predicted `lateral_horizon_s` ahead. Crossing traffic passes through.
        entered = np.logical_or.accumulate(inside & (t[None, :] <= self.lateral_horizon_s), axis=1)
        in_path = np.where(aligned[:, None], entered, inside & (t[None, :] <= self.crossing_horizon_s))
        forward = aligned & (vx > 0)
        obj_x = np.where(forward[:, None], _travel(np.maximum(vx, 0.0)[:, None], self.lead_decel, t[None, :]),
                         vx[:, None] * t[None, :])  # [M, K] forward traffic may brake; the rest keeps going
        dx_t = dx[:, None] + obj_x - ego[None, :]
        reach = length / 2 + long_half[:, None]
        return np.any(in_path & (dx_t - reach < self.min_gap_m) & (dx_t > -reach), axis=1)


def _travel(v0, decel, t):
    """Distance covered from speed v0 ≥ 0 decelerating at `decel` (negative: accelerating) for t,
    stopping at zero speed (no reversing)."""
    v0, t = np.asarray(v0, dtype=np.float64), np.asarray(t, dtype=np.float64)
    if decel <= 0:
        return v0 * t - 0.5 * decel * t * t
    tt = np.minimum(t, v0 / decel)
    return v0 * tt - 0.5 * decel * tt * tt


class HumanoidGuard(_Counts):
    """Joint limits + per-step target change limit + fall → damped stance, for joint-target specs.

    filter order: fall (latched until `reset`: targets move from the last targets towards
    `default_pose` by at most `fall_step_rad` per joint per step, the policy's action ignored);
    non-finite → hold the last targets; bounds; rate limit (|Δtarget| ≤ `max_step_rad` per joint
    per step). The rate-limit reference at episode start is `sensors["joint_pos"]` given to `reset`,
    else that of the first `filter` call, else `default_pose`. A fall is a tilt above
    `max_tilt_deg` (the angle between the base's z axis and up, from the projected gravity) or a
    base below `min_height_frac` × stand height. Without usable sensors (None, a missing key or
    non-finite values) the bounds and rate limits still apply but there is no fall detection.
    """

    RULES = HUMANOID_RULES

    def __init__(
        self,
        spec: EmbodimentSpec,
        default_pose: np.ndarray,  # [A] rad: the stance a fall returns to
        max_step_rad: float = 0.35,  # largest change of a joint target per 50 Hz step
        fall_step_rad: float = 0.05,  # per step towards the stance after a fall (2.5 rad/s at 50 Hz)
        max_tilt_deg: float = 50.0,  # the humanoid envs' own fall definition
        min_height_frac: float = 0.6,  # base height / stand height below this is a fall
    ):
        self.spec = spec
        A = spec.action_dim
        self._low, self._high = spec.low.astype(np.float64), spec.high.astype(np.float64)
        pose = np.asarray(default_pose, dtype=np.float64)
        if pose.shape != (A,) or not np.all(np.isfinite(pose)):
            raise ConfigError(f"HumanoidGuard: default_pose must be {A} finite joint angles, got shape {pose.shape}")
        if np.any(pose < self._low) or np.any(pose > self._high):
            raise ConfigError("HumanoidGuard: default_pose must lie within the spec's joint bounds")
        self.default_pose = pose
        self.max_step_rad = _positive("max_step_rad", max_step_rad)
        self.fall_step_rad = _positive("fall_step_rad", fall_step_rad)
        if self.fall_step_rad > self.max_step_rad:
            raise ConfigError(f"fall_step_rad ({fall_step_rad}) must not exceed max_step_rad ({max_step_rad})")
        if not 0 < float(max_tilt_deg) < 180:
            raise ConfigError(f"max_tilt_deg must be in (0, 180), got {max_tilt_deg!r}")
        self.max_tilt_deg = float(max_tilt_deg)
        self._min_up = math.cos(math.radians(self.max_tilt_deg))
        self.min_height_frac = _positive("min_height_frac", min_height_frac, allow_zero=True)
        self.reset()

    def __repr__(self) -> str:
        return (f"HumanoidGuard(spec={self.spec.name!r}, max_step_rad={self.max_step_rad}, fall_step_rad="
                f"{self.fall_step_rad}, max_tilt_deg={self.max_tilt_deg}, min_height_frac={self.min_height_frac})")

    @property
    def fallen(self) -> bool:
        """A fall was detected this episode (the stance is latched until `reset`)."""
        return self._fallen

    def reset(self, sensors: Mapping | None = None) -> None:
        """Start an episode: zero the counts, unlatch the stance, measured joints as the reference."""
        self._reset_counts()
        self._fallen = False
        self._last = self._joint_pos(sensors)  # [A] or None until the first filter call

    def filter(self, action: Any, sensors: Mapping | None = None) -> np.ndarray:
        """The joint targets to apply: float32 [A], finite, in bounds and rate limits (see class doc)."""
        a = _action(action, self.spec)  # [A] float64
        if self._last is None:
            q = self._joint_pos(sensors)
            self._last = q if q is not None else self.default_pose.copy()
        last = self._last
        if not self._fallen and self._fell(sensors):
            self._fallen = True
        if self._fallen:
            self._counts["fall"] += 1
            a = last + np.clip(self.default_pose - last, -self.fall_step_rad, self.fall_step_rad)
        else:
            if not np.all(np.isfinite(a)):
                self._nonfinite(a, "the last joint targets")
                a = last.copy()
            b = np.clip(a, self._low, self._high)
            if not np.array_equal(a, b):
                self._counts["bounds"] += 1
            a = b
            b = np.clip(a, last - self.max_step_rad, last + self.max_step_rad)
            if not np.array_equal(a, b):
                self._counts["rate"] += 1
            a = b
        a = np.clip(a, self._low, self._high)
        self._last = a
        return a.astype(np.float32)

    # ---- sensors -----------------------------------------------------------------------------
    def _joint_pos(self, sensors: Mapping | None) -> np.ndarray | None:
        """Measured joint positions [A] clipped to the bounds, or None when unusable."""
        if not isinstance(sensors, Mapping) or "joint_pos" not in sensors:
            return None
        try:
            q = np.asarray(sensors["joint_pos"], dtype=np.float64)
        except (TypeError, ValueError):
            return None
        if q.shape != (self.spec.action_dim,) or not np.all(np.isfinite(q)):
            return None
        return np.clip(q, self._low, self._high)

    def _fell(self, sensors: Mapping | None) -> bool:
        if not isinstance(sensors, Mapping):
            return False
        fell = False
        try:
            g = np.asarray(sensors["gravity"], dtype=np.float64)
            n = float(np.linalg.norm(g)) if g.shape == (3,) else math.nan
            if math.isfinite(n) and n > 1e-6:
                fell |= bool(-g[2] / n < self._min_up)  # cos(tilt) = up · base z = -g_z / |g|
        except (KeyError, TypeError, ValueError):
            pass
        try:
            h, h0 = float(sensors["base_height"]), float(sensors["stand_height"])
            if math.isfinite(h) and math.isfinite(h0) and h0 > 0:
                fell |= h < self.min_height_frac * h0
        except (KeyError, TypeError, ValueError):
            pass
        return fell


class SafePolicy:
    """A policy with a guard between it and the actuators: what a deployment runs, one robot.

    `select_action(obs, sensors)` calls `policy.select_action(obs, embodiment)` (one unbatched
    observation), converts the action to numpy and returns `guard.filter(action, sensors)`;
    `reset(sensors)` resets both. `sensors` is the guard's documented input (the env's
    `info["sensors"]`, or the robot's own measurements). `counts` holds the guard's interventions
    per rule plus `policy_nonfinite`: actions the policy itself produced as NaN/inf this episode
    (replaced by the range midpoint before the guard saw them; see `Policy.nonfinite_actions`).
    """

    def __init__(self, policy: Any, guard: Any, embodiment: str):
        specs = getattr(policy, "specs", None)
        if isinstance(specs, Mapping):
            if embodiment not in specs:
                raise ConfigError(f"SafePolicy: the policy has no embodiment '{embodiment}'; it has {sorted(specs)}")
            specs[embodiment].check_compatible(guard.spec)
        self.policy, self.guard, self.embodiment = policy, guard, embodiment
        self._nonfinite_at_reset = self._policy_nonfinite()

    def _policy_nonfinite(self) -> int:
        return int(dict(getattr(self.policy, "nonfinite_actions", {})).get(self.embodiment, 0))

    def reset(self, sensors: Mapping | None = None) -> None:
        self.policy.reset()
        self.guard.reset(sensors)
        self._nonfinite_at_reset = self._policy_nonfinite()

    def select_action(self, obs: Mapping[str, Any], sensors: Mapping | None) -> np.ndarray:
        a = self.policy.select_action(obs, self.embodiment)
        if hasattr(a, "detach"):  # torch tensor
            a = a.detach().cpu().numpy()
        return self.guard.filter(a, sensors)

    @property
    def counts(self) -> dict[str, int]:
        return {**self.guard.counts, "policy_nonfinite": self._policy_nonfinite() - self._nonfinite_at_reset}

    @property
    def interventions(self) -> int:
        return self.guard.interventions + self.counts["policy_nonfinite"]
