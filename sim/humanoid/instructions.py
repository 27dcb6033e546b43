"""Humanoid instruction scoring: was each walking command tracked, and survived?

`score_instructions(commands, trace, seconds)` splits the episode's per-step trace
(`HumanoidFamily.trace_step`: `t` after the step, measured `vx`, `vy` in the heading frame, `yaw_rate`,
the `cmd` the step was taken under, `fell`) into command segments wherever `cmd` changes, so scripted
timelines and the env's random schedule are scored alike, and returns one record per segment:
`{"kind", "at", "success", "survived", "lin_vel_error", "yaw_rate_error", "cmd"}`.

- `kind` from the command, components with |x| < CMD_ZERO counting as 0: `stand` (all 0), `turn`
  (only yaw_rate), `forward` / `backward` (only vx, by its sign), `strafe` (only vy), `mixed` (vx and
  vy, no yaw), `walk_turn` (walking and turning). Stop-and-go is covered by suites that put `stand`
  segments between walks.
- `lin_vel_error` = mean |(vx, vy) − command| (m/s) and `yaw_rate_error` = mean |yaw_rate −
  command| (rad/s) over the segment's steps after SETTLE_S (the expert needs about a second to reach
  a new velocity); `survived` = no fall in the segment; `success` = survived and both errors within
  `limits(cmd)`: LIN_ERR_FLOOR + LIN_ERR_REL·|(vx, vy)| m/s and YAW_ERR_FLOOR + YAW_ERR_REL·|yaw_rate|
  rad/s. A segment a fall ends early is a failure; one shorter than SETTLE_S + MIN_MEASURE_S that
  survived is not scored (`success` None).
- Scripted commands the episode never reached because the robot had fallen are failures too
  (`survived` False, `ended` True), so a fall counts against every instruction it cut off.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

FIELDS = ("vx", "vy", "yaw_rate")
# command components this small are "zero" for the kind (the random schedule rounds to 1e-3)
CMD_ZERO = 0.05
# errors are measured after this: the expert reaches a new velocity in ~0.5-1 s
SETTLE_S = 1.0
# at least this much measured time after SETTLE_S for a surviving segment to be scored
MIN_MEASURE_S = 0.5
# success thresholds, a floor plus a share of the commanded speed. Measured on the G1 expert
# (holosoma) over 47 random-command segments (10 episodes) and the g1-instructions suite: its gait
# sways sideways at ~0.2 m/s (std) whenever it steps, so turning in place already has a
# lin_vel_error of ~0.18 m/s, and it undershoots fast commands (0.9 m/s -> ~0.5 m/s walked, error
# ~0.5 |v|); its worst segments were lin 0.49 at |v| 0.96 (limit 0.54) and yaw 0.11 rad/s. A policy
# that stands when told to walk at >= 0.36 m/s, or does not turn when told to turn at >= 0.2 rad/s,
# fails.
LIN_ERR_FLOOR, LIN_ERR_REL = 0.25, 0.3  # m/s, fraction of |(vx, vy)| commanded
YAW_ERR_FLOOR, YAW_ERR_REL = 0.15, 0.25  # rad/s, fraction of |yaw_rate| commanded


def limits(cmd: Mapping[str, float]) -> tuple[float, float]:
    """(lin_vel_error, yaw_rate_error) limits for a command to count as followed."""
    return (LIN_ERR_FLOOR + LIN_ERR_REL * math.hypot(cmd["vx"], cmd["vy"]),
            YAW_ERR_FLOOR + YAW_ERR_REL * abs(cmd["yaw_rate"]))


def command_kind(cmd: Mapping[str, float]) -> str:
    """The instruction kind of a velocity command (see the module docstring)."""
    vx, vy, wz = (abs(float(cmd.get(k, 0.0))) >= CMD_ZERO for k in FIELDS)
    if not (vx or vy):
        return "turn" if wz else "stand"
    if wz:
        return "walk_turn"
    if vx and vy:
        return "mixed"
    if vy:
        return "strafe"
    return "forward" if float(cmd["vx"]) > 0 else "backward"


def _num(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _segments(trace: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    segs: list[list[Mapping[str, Any]]] = []
    for e in trace:
        if segs and segs[-1][-1]["cmd"] == e["cmd"]:
            segs[-1].append(e)
        else:
            segs.append([e])
    return segs


def _record(seg: Sequence[Mapping[str, Any]], start: float, dt: float) -> dict[str, Any]:
    cmd = {k: float(seg[0]["cmd"].get(k, 0.0)) for k in FIELDS}
    survived = not any(e["fell"] for e in seg)
    after = [e for e in seg if e["t"] - dt >= start + SETTLE_S - 1e-6]  # steps begun after settling
    lin = [math.hypot(e["vx"] - cmd["vx"], e["vy"] - cmd["vy"]) for e in after]
    yaw = [abs(e["yaw_rate"] - cmd["yaw_rate"]) for e in after]
    lin_err = _num(sum(lin) / len(lin)) if lin else None
    yaw_err = _num(sum(yaw) / len(yaw)) if yaw else None
    if not survived:
        success = False
    elif len(after) * dt < MIN_MEASURE_S - 1e-6 or lin_err is None or yaw_err is None:
        success = None  # too short to judge
    else:
        lin_max, yaw_max = limits(cmd)
        success = lin_err <= lin_max and yaw_err <= yaw_max
    return {"kind": command_kind(cmd), "at": round(start, 6), "success": success, "survived": survived,
            "lin_vel_error": lin_err, "yaw_rate_error": yaw_err, "cmd": cmd}


def score_instructions(commands: Sequence[tuple[float, Mapping[str, Any]]], trace: Sequence[Mapping[str, Any]],
                       seconds: float) -> list[dict[str, Any]]:
    """One record per command segment of `trace`, plus failures for scripted `commands` a fall cut off."""
    if not trace:
        return []
    dt = float(trace[1]["t"] - trace[0]["t"]) if len(trace) >= 2 else float(trace[0]["t"])
    out = []
    for seg in _segments(trace):
        out.append(_record(seg, float(seg[0]["t"]) - dt, dt))
    if trace[-1]["fell"]:
        end = float(trace[-1]["t"])
        for at, cmd in commands:
            if at >= end - 1e-6 and at < float(seconds):
                full = {k: float(cmd.get(k, 0.0)) for k in FIELDS}  # a humanoid command sets every field
                out.append({"kind": command_kind(full), "at": float(at), "success": False, "survived": False,
                            "lin_vel_error": None, "yaw_rate_error": None, "cmd": full, "ended": True})
    return out
