"""Closed-loop walking metrics: an accumulator fed once per env step, and `run_episode`.

`WalkMetrics.update(action, info, dt)` takes the env's `info` (`tracking_error`, `energy`, `fell`)
and the action applied; `summary()` returns `tracking_error` (mean over steps of |v_xy,cmd − v_xy|
in m/s plus |yaw_rate,cmd − yaw_rate| in rad/s), `lin_vel_error` and `yaw_rate_error` (the two
parts), `fell` (0/1), `survival_s`, `length_s`, `energy_J`, `power_W` (energy per second),
`action_smoothness` (mean |a_t − a_{t−1}| over joints and steps, rad) and `steps`. Works with any
env whose info carries those keys, so learned policies and experts are scored the same way.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from physai.errors import ConfigError


class WalkMetrics:
    def __init__(self, dt: float):
        if not dt > 0:
            raise ConfigError(f"dt must be > 0, got {dt}")
        self.dt = float(dt)  # s per env step
        self.steps = 0
        self.fell = False
        self._err = self._lin = self._yaw = self._energy = self._dsum = 0.0
        self._dcount = 0
        self._prev: np.ndarray | None = None

    def update(self, action: np.ndarray, info: dict[str, Any]) -> None:
        a = np.asarray(action, dtype=np.float64).reshape(-1)  # [A]
        if self._prev is not None:
            self._dsum += float(np.abs(a - self._prev).mean())
            self._dcount += 1
        self._prev = a
        self.steps += 1
        self._err += float(info["tracking_error"])
        cmd, v = info.get("command"), info.get("base_lin_vel")
        if cmd is not None and v is not None:
            self._lin += math.hypot(cmd["vx"] - float(v[0]), cmd["vy"] - float(v[1]))
            self._yaw += abs(cmd["yaw_rate"] - float(info.get("yaw_rate", 0.0)))
        self._energy += float(info.get("energy", 0.0))
        self.fell = self.fell or bool(info.get("fell", False))

    def summary(self) -> dict[str, float]:
        n = max(self.steps, 1)
        length = self.steps * self.dt
        return {
            "tracking_error": self._err / n,
            "lin_vel_error": self._lin / n,
            "yaw_rate_error": self._yaw / n,
            "fell": float(self.fell),
            "survival_s": length,
            "length_s": length,
            "energy_J": self._energy,
            "power_W": self._energy / length if length > 0 else 0.0,
            "action_smoothness": self._dsum / self._dcount if self._dcount else 0.0,
            "steps": float(self.steps),
        }


def run_episode(
    env: Any,
    act_fn: Callable[[dict, Any], np.ndarray],
    seed: int | None = None,
    max_steps: int | None = None,
    options: dict | None = None,
    on_step: Callable[[dict, np.ndarray, dict], None] | None = None,
) -> dict[str, float]:
    """Roll out `act_fn(obs, env) -> action` until termination/truncation (or `max_steps`).

    `survival_s` is the time until a fall (the full length when none); `on_step(obs, action, info)`
    is called after each step (recording, video frames).
    """
    obs, _ = env.reset(seed=seed, options=options)
    dt = getattr(env.unwrapped, "control_dt", None) or 1.0 / float(env.unwrapped.metadata.get("render_fps", 50))
    m = WalkMetrics(dt)
    steps = 0
    while max_steps is None or steps < max_steps:
        action = np.asarray(act_fn(obs, env), dtype=np.float32)
        obs, _, terminated, truncated, info = env.step(action)
        m.update(action, info)
        steps += 1
        if on_step is not None:
            on_step(obs, action, info)
        if terminated or truncated:
            break
    return m.summary()
