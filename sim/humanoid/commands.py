"""Walking-command schedules: when the humanoid is told which (vx, vy, yaw_rate).

A schedule is a sorted list of `(time_s, command)` pairs; the command at time t is the last entry
with time ≤ t. `normalize_schedule` validates a user schedule (a list of pairs or a `{time:
command}` mapping; values checked against the spec's command ranges), and `random_schedule`
draws one from a seeded generator: a new command every 3-6 s, sampled from ranges the experts
track well (forward-biased vx, moderate vy and yaw rate, sometimes a component left at 0, 10%
standing still), all inside the spec's [-1, 1] ranges.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from physai.errors import ConfigError

FIELDS = ("vx", "vy", "yaw_rate")
RANDOM_RANGES = {"vx": (-0.5, 1.0), "vy": (-0.4, 0.4), "yaw_rate": (-0.8, 0.8)}  # m/s, m/s, rad/s
HOLD_S = (3.0, 6.0)  # seconds each random command is held
P_STAND = 0.1  # probability that a random command is all zeros
P_ZERO_COMPONENT = 0.3  # probability that vy / yaw_rate are left at 0 (straight walking is common)

Command = dict[str, float]
Schedule = list[tuple[float, Command]]


def make_command(spec: Any, command: Mapping[str, Any] | None) -> Command:
    """Complete and validate a command dict (missing fields take the spec default, 0)."""
    command = dict(command or {})
    spec.encode_command(command)  # raises ObservationError on unknown keys / out-of-range values
    out = spec.default_command()
    for k, v in command.items():
        out[k] = float(np.asarray(v, dtype=np.float64).reshape(-1)[0])
    return {k: float(out[k]) for k in FIELDS}


def normalize_schedule(spec: Any, schedule: Sequence[tuple[float, Mapping]] | Mapping[float, Mapping]) -> Schedule:
    """User schedule -> sorted [(t, command)], starting at t=0 (zero command before the first entry)."""
    items = list(schedule.items()) if isinstance(schedule, Mapping) else list(schedule)
    out: Schedule = []
    for entry in items:
        try:
            t, cmd = entry
            t = float(t)
        except (TypeError, ValueError):
            raise ConfigError(f"command_schedule entries must be (time_s, command dict); got {entry!r}") from None
        if not np.isfinite(t) or t < 0:
            raise ConfigError(f"command_schedule time must be a finite number >= 0; got {t!r}")
        out.append((t, make_command(spec, cmd)))
    out.sort(key=lambda e: e[0])
    if not out or out[0][0] > 0:
        out.insert(0, (0.0, make_command(spec, None)))
    return out


def random_command(rng: np.random.Generator, stand_prob: float = P_STAND) -> Command:
    if rng.random() < stand_prob:
        return {k: 0.0 for k in FIELDS}
    cmd = {k: float(rng.uniform(*RANDOM_RANGES[k])) for k in FIELDS}
    for k in ("vy", "yaw_rate"):
        if rng.random() < P_ZERO_COMPONENT:
            cmd[k] = 0.0
    return {k: round(v, 3) for k, v in cmd.items()}


def random_schedule(rng: np.random.Generator, seconds: float, stand_prob: float = P_STAND) -> Schedule:
    """A new random command every HOLD_S seconds, covering [0, seconds). `stand_prob` is the chance
    that a command is "stand still" (the default's draws are those evaluation seeds always had)."""
    out: Schedule = []
    t = 0.0
    while t < seconds:
        out.append((round(t, 3), random_command(rng, stand_prob)))
        t += float(rng.uniform(*HOLD_S))
    return out


def command_at(schedule: Schedule, t: float) -> Command:
    """The command in force at time t (last entry with time ≤ t)."""
    cur = schedule[0][1]
    for ts, cmd in schedule:
        if ts <= t + 1e-9:
            cur = cmd
        else:
            break
    return dict(cur)
