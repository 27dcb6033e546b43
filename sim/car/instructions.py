"""Car instruction scoring: was each lane, speed and stop command of a scenario followed?

`score_instructions(commands, trace, seconds)` reads a scenario's command timeline (`(at, fields)`
pairs, fields `lane`, `speed` and/or `stop`) and the episode's per-step trace (`CarFamily.trace_step`:
`t` after the step, `lane`, `lane_error`, `speed`, `collision`; optionally `lanes`, the road's lane
count, `lead_gap` / `lead_speed`, and `progress`, m along the road, which `stop` needs) and returns one record per instruction, in time order, a command that changes
lane and speed giving two: `{"kind", "at", "success", ...}` where `success` is True/False, or None
when the instruction is not scored (see below). Kinds:

- `lane_left` / `lane_right`: the target lane (the lane at the command ∓ 1; left = lower id) is
  reached and centred (lane_error < LANE_CENTRED_M) within LANE_TIMEOUT_S, with no collision before.
  Extra fields: `time_s` (command to centred, None if never), `from_lane`, `to_lane`. A request for
  a lane that does not exist (id < 0, or >= the trace's `lanes` when it has them) is not scored.
  `keep` is not an instruction.
- `speed_up` / `speed_down` / `speed_hold`: the target against the speed driven when the command
  came (at t = 0, after the first step); within SPEED_TOL_MS of it is `speed_hold`. Reached (within SPEED_TOL_MS) no
  later than an allowance of SPEED_SETTLE_BASE_S + |change| / SPEED_SETTLE_ACCEL after the command,
  then held: the mean |speed − target| from the end of that allowance to the segment's end (the next
  speed command or the episode's end) is at most SPEED_HOLD_ERR_MS, with no collision in the
  segment. Extra fields: `target`, `settle_s` (command to first within tolerance, None if not within
  the allowance), `speed_error` (the hold error, m/s), `blocked_s`. Blocked by traffic: while a
  leader is ahead in the ego lane within the following distance (FOLLOW_TIME_S × speed +
  FOLLOW_DIST_M) and not faster than the target (trace keys `lead_gap`, `lead_speed`, see
  `physai.sim.car.score.lead_from_sensors`), any speed from FOLLOW_SLACK_MS below the slower of
  leader and target up to the target is on target: following is holding the speed traffic allows
  (`blocked_s` counts that time) and overtaking is not asked for ("keep" means keep the lane), but
  crawling behind the leader or speeding past the target is an error. Slowing down to find a gap
  for a lane change also counts as speed error.
  Traces without those keys score against the commanded speed. The expert is scored the same way
  on the same scenarios, so the comparison is fair either way. A speed command given while a stop
  is requested is not scored (the stop wins), and a stop command ends the speed segment before it.
- `stop` ("stop within D m", `stop` = D < STOP_NONE_M; `stop` = STOP_NONE_M is "go", not an
  instruction): a standstill (speed < STOP_SPEED_MS) within D + STOP_TOL_M of road from the command,
  reached comfortably (peak deceleration, from the executed speeds, <= STOP_DECEL_MAX and mean
  |jerk| from the command to the standstill <= STOP_JERK_MEAN), then held (speed < STOP_HOLD_MS) to
  the segment's end (the next stop command or the episode's end), with no collision. Extra fields:
  `target_m` (D), `stop_m` (road travelled to the standstill, None if never), `time_s`,
  `max_decel`, `mean_jerk`. Not scored when D is shorter than a stop at STOP_DECEL_MAX from the
  speed at the command, or the segment is shorter than STOP_SETTLE_BASE_S + speed / STOP_DECEL_MIN
  + STOP_MIN_HOLD_S.

An instruction is not scored when the scenario leaves it less time than it needs (a lane command
followed by another lane command, or by the episode's end, within LANE_TIMEOUT_S; a speed segment
shorter than its allowance + SPEED_MIN_HOLD_S), whatever happened in it, so that no outcome is
dropped selectively; suites should leave enough time. An episode that a crash ended fails every
instruction still open, including the ones it never got to (`ended` is True there); one that ended
without a crash (the end of the merge road, a destination) was as long as it lasted.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from physai.sim.car import STOP_NONE_M

# the expert changes lanes in ~3 s once MOBIL's safety check finds a gap; 10 s leaves time to wait
# for a gap in density-2 traffic
LANE_TIMEOUT_S = 10.0
# the env's own "done" test: CarEnv clears a lane command once |lateral offset| < 0.5 m in the target
LANE_CENTRED_M = 0.5
# "at the target speed": within the dead band a driver holds on a highway (~5 km/h)
SPEED_TOL_MS = 1.5
# time allowed to reach a new speed: a reaction second or two plus the change at a gentle 1 m/s²
# (the expert's IDM accelerates at up to 3 m/s² but eases off near the target)
SPEED_SETTLE_BASE_S = 2.0
SPEED_SETTLE_ACCEL = 1.0
# "held": mean |speed error| after the allowance, the same band as reaching it
SPEED_HOLD_ERR_MS = 1.5
# a hold shorter than this says little: shorter segments are not scored
SPEED_MIN_HOLD_S = 2.0
# "following": a leader in the ego lane closer than this (twice the expert IDM's 1.5-s time gap,
# plus its 10-m jam distance) and not faster than the target limits the speed the car can hold
FOLLOW_TIME_S, FOLLOW_DIST_M = 3.0, 10.0
# car-following settles below the leader's speed (IDM: ~2 m/s below a leader driving near the
# target); while following, speeds down to this much below the leader's count as on target
FOLLOW_SLACK_MS = 2.5
# standstill, and standing still (creeping below walking pace)
STOP_SPEED_MS, STOP_HOLD_MS = 0.5, 1.0
# road beyond D still counted as "within D" (half a car length)
STOP_TOL_M = 2.5
# comfortable braking: a peak deceleration a passenger accepts (~0.4 g) and a mean |jerk| that
# stays under the 2 m/s^3 comfort bound of ride-comfort studies
STOP_DECEL_MAX, STOP_JERK_MEAN = 4.0, 2.0
# time a stop needs: a reaction allowance plus braking at a gentle 1.5 m/s^2, then a hold to judge
STOP_SETTLE_BASE_S, STOP_DECEL_MIN, STOP_MIN_HOLD_S = 2.0, 1.5, 2.0
_EPS = 1e-6


def _num(x: Any) -> float | None:
    """A finite float, or None (strict JSON)."""
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _secs(x: float) -> float:
    """A duration without the float noise of summed time steps (1.5999999 -> 1.6)."""
    return round(float(x), 6)


def _before(trace: Sequence[Mapping], at: float) -> Mapping | None:
    """The trace entry describing the state at time `at` (the last one with t <= at), else the first."""
    prev = None
    for e in trace:
        if e["t"] > at + _EPS:
            break
        prev = e
    return prev if prev is not None else (trace[0] if trace else None)


def _window(trace: Sequence[Mapping], start: float, end: float) -> list[Mapping]:
    """Entries of the steps taken in [start, end): their after-step time t is in (start, end]."""
    return [e for e in trace if start + _EPS < e["t"] <= end + _EPS]


def _step_s(trace: Sequence[Mapping]) -> float:
    """The control period, from the trace's after-step times (0.2 s if it cannot tell)."""
    if len(trace) >= 2 and trace[1]["t"] > trace[0]["t"]:
        return float(trace[1]["t"] - trace[0]["t"])
    return float(trace[0]["t"]) if trace and trace[0]["t"] > 0 else 0.2


def _speed_error(e: Mapping, target: float) -> tuple[float, bool]:
    """(|speed error| m/s, following) of one step. Following = a leader in the ego lane within the
    following distance that is not faster than the target (trace keys `lead_gap`, `lead_speed`);
    then any speed from FOLLOW_SLACK_MS below the slower of leader and target up to the target is
    on target. Otherwise (or without those keys) the error is |speed − target|."""
    v, gap, lead = float(e["speed"]), e.get("lead_gap"), e.get("lead_speed")
    if (gap is not None and lead is not None and math.isfinite(gap) and math.isfinite(lead)
            and lead < target + SPEED_TOL_MS and gap < FOLLOW_TIME_S * max(v, 0.0) + FOLLOW_DIST_M):
        low = max(min(lead, target) - FOLLOW_SLACK_MS, 0.0)
        return max(0.0, low - v, v - target), True
    return abs(v - target), False


def _next_at(commands: Sequence, i: int, key: str, default: float) -> float:
    return next((at for at, c in commands[i + 1:] if key in c), default)


def _lane_record(commands, i: int, trace, seconds: float, trace_end: float) -> dict[str, Any] | None:
    at, cmd = commands[i]
    direction = cmd["lane"]
    if direction == "keep":
        return None
    state = _before(trace, at)
    origin = int(state["lane"]) if state is not None else None
    target = None if origin is None else origin + (-1 if direction == "left" else 1)
    rec: dict[str, Any] = {"kind": f"lane_{direction}", "at": float(at), "success": None, "time_s": None,
                           "from_lane": origin, "to_lane": target, "ended": trace_end < at}
    lanes = state.get("lanes") if state is not None else None
    if target is None or target < 0 or (lanes is not None and target >= int(lanes)):
        return rec  # no such lane: not scored
    end = min(at + LANE_TIMEOUT_S, _next_at(commands, i, "lane", seconds), seconds)
    full = end - at >= LANE_TIMEOUT_S - _EPS  # else the scenario gave it less time: not scored
    for e in _window(trace, at, end):
        if e["collision"]:
            break
        if int(e["lane"]) == target and e["lane_error"] < LANE_CENTRED_M:
            rec["time_s"] = _secs(e["t"] - at)
            break
    if full:  # reached in time and before any collision; a crash or the timeout otherwise
        rec["success"] = rec["time_s"] is not None
    return rec


def _stopping(commands, i: int) -> bool:
    """A stop is requested at command i (its own or the latest earlier `stop` field)."""
    last = next((c["stop"] for _, c in reversed(commands[:i + 1]) if "stop" in c), STOP_NONE_M)
    return float(last) < STOP_NONE_M - _EPS


def _speed_record(commands, i: int, trace, seconds: float, trace_end: float) -> dict[str, Any]:
    at, cmd = commands[i]
    target = float(cmd["speed"])
    state = _before(trace, at)
    change = target - (float(state["speed"]) if state is not None else target)
    kind = "speed_hold" if abs(change) < SPEED_TOL_MS else ("speed_up" if change > 0 else "speed_down")
    allowance = SPEED_SETTLE_BASE_S + abs(change) / SPEED_SETTLE_ACCEL
    end = min(_next_at(commands, i, "speed", seconds), _next_at(commands, i, "stop", seconds), seconds)
    rec: dict[str, Any] = {"kind": kind, "at": float(at), "success": None, "target": target,
                           "settle_s": None, "speed_error": None, "blocked_s": None, "ended": trace_end < at}
    if end - at < allowance + SPEED_MIN_HOLD_S - _EPS or _stopping(commands, i):
        return rec  # too short a segment to judge, or a stop is requested: not scored
    seg = _window(trace, at, end)
    crashed = any(e["collision"] for e in seg) or trace_end < end
    err, blocked = zip(*[_speed_error(e, target) for e in seg]) if seg else ((), ())  # [n], [n]
    reached = [e["t"] - at for e, x in zip(seg, err) if e["t"] - at <= allowance + _EPS and x <= SPEED_TOL_MS]
    hold = [x for e, x in zip(seg, err) if e["t"] > at + allowance + _EPS]
    rec["settle_s"] = _secs(reached[0]) if reached else None
    rec["blocked_s"] = _secs(sum(blocked) * _step_s(trace))
    rec["speed_error"] = _num(sum(hold) / len(hold)) if hold else None
    rec["success"] = bool(not crashed and reached and hold and rec["speed_error"] is not None
                          and rec["speed_error"] <= SPEED_HOLD_ERR_MS)
    return rec


def _stop_record(commands, i: int, trace, seconds: float, trace_end: float) -> dict[str, Any]:
    at, cmd = commands[i]
    target = float(cmd["stop"])
    state = _before(trace, at)
    v0 = float(state["speed"]) if state is not None else 0.0
    rec: dict[str, Any] = {"kind": "stop", "at": float(at), "success": None, "target_m": target, "stop_m": None,
                           "time_s": None, "max_decel": None, "mean_jerk": None, "ended": trace_end < at}
    end = min(_next_at(commands, i, "stop", seconds), seconds)
    need = STOP_SETTLE_BASE_S + max(v0, 0.0) / STOP_DECEL_MIN + STOP_MIN_HOLD_S
    if end - at < need - _EPS or target + STOP_TOL_M < v0 * v0 / (2 * STOP_DECEL_MAX) or state is None:
        return rec  # too little time or road to stop comfortably: not scored
    dt = _step_s(trace)
    seg = _window(trace, at, end)
    crashed = any(e["collision"] for e in seg) or trace_end < end
    p0 = float(state.get("progress", 0.0))
    k = next((j for j, e in enumerate(seg) if float(e["speed"]) < STOP_SPEED_MS), None)
    if k is not None:
        rec["stop_m"] = _num(float(seg[k].get("progress", 0.0)) - p0)
        rec["time_s"] = _secs(seg[k]["t"] - at)
        v = [v0] + [float(e["speed"]) for e in seg[:k + 1]]  # [k + 2] m/s, from the command on
        acc = [(b - a) / dt for a, b in zip(v, v[1:])]  # [k + 1]
        jerk = [abs(b - a) / dt for a, b in zip(acc, acc[1:])]  # [k]
        rec["max_decel"] = _num(max(0.0, -min(acc)))
        rec["mean_jerk"] = _num(sum(jerk) / len(jerk)) if jerk else 0.0
        held = all(float(e["speed"]) < STOP_HOLD_MS for e in seg[k:])
        rec["success"] = bool(not crashed and held and rec["stop_m"] is not None
                              and rec["stop_m"] <= target + STOP_TOL_M and rec["max_decel"] <= STOP_DECEL_MAX
                              and rec["mean_jerk"] <= STOP_JERK_MEAN)
    else:
        rec["success"] = False
    return rec


def score_instructions(commands: Sequence[tuple[float, Mapping[str, Any]]], trace: Sequence[Mapping[str, Any]],
                       seconds: float) -> list[dict[str, Any]]:
    """One record per lane/speed/stop instruction of `commands` (sorted `(at, fields)`), scored on `trace`."""
    commands = sorted(commands, key=lambda c: c[0])
    # the time the episode was played to, plus half a step
    trace_end = (float(trace[-1]["t"]) if trace else 0.0) + _step_s(trace) / 2
    if not any(e["collision"] for e in trace):
        # it ended without a crash (time up, end of the road): the scenario was that long; only a
        # crash leaves instructions open (trace_end < a window's end) and so failed
        seconds = min(float(seconds), trace_end)
    out: list[dict[str, Any]] = []
    for i, (at, cmd) in enumerate(commands):
        if "lane" in cmd:
            rec = _lane_record(commands, i, trace, float(seconds), trace_end)
            if rec is not None:
                out.append(rec)
        if "speed" in cmd:
            out.append(_speed_record(commands, i, trace, float(seconds), trace_end))
        if "stop" in cmd and float(cmd["stop"]) < STOP_NONE_M - _EPS:
            out.append(_stop_record(commands, i, trace, float(seconds), trace_end))
    return out
