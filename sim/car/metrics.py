"""Per-episode driving metrics for `CarEnv` roll-outs, and a generic episode runner.

`EpisodeMetrics` is fed `(obs, action, info)` after every step and `result()` returns floats:
`progress_m` (distance along the road, the env's `info["progress_m"]` at the end), `collision`
(1 if any step collided), `offroad_s` (time off the drivable lane), `lane_error_m` (mean |lateral
offset| from the nearest lane centre; lane changes count), `mean_abs_jerk` (mean |d²speed/dt²|,
m/s³, from the executed speeds, so it also sees clipped commands), `speed_limit_compliance`
(fraction of steps at or below the lane's speed limit + `speed_tol`), `stall_s` (time below
`stall_speed` while nothing blocks the way, see `CarEnv`'s `info["blocked"]`), `length_s`, plus
`return` (sum of rewards, when given) and `steps`. `run_episode(env, act_fn, seed, max_steps)`
plays one seeded episode with `act_fn(obs, env) -> action` and returns that dict.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

from physai.errors import ConfigError, ObservationError

_REQUIRED = ("collision", "offroad", "speed", "progress_m", "lane_error")


class EpisodeMetrics:
    def __init__(self, dt: float = 0.2, stall_speed: float = 1.0, speed_tol: float = 0.5):
        if dt <= 0 or stall_speed < 0 or speed_tol < 0:
            raise ConfigError(
                f"EpisodeMetrics: need dt > 0, stall_speed >= 0, speed_tol >= 0 (got {dt}, {stall_speed}, {speed_tol})"
            )
        self.dt, self.stall_speed, self.speed_tol = float(dt), float(stall_speed), float(speed_tol)
        self.reset()

    def reset(self, info: Mapping[str, Any] | None = None) -> None:
        """Start a new episode; pass the reset `info` so the first step's jerk has a reference speed."""
        self._speeds: list[float] = [float(info["speed"])] if info and "speed" in info else []
        self._steps = 0
        self._collision = False
        self._offroad = self._stall = self._compliant = 0
        self._lane_error = 0.0
        self._progress = 0.0
        self._return = 0.0

    def update(self, obs: Any, action: Any, info: Mapping[str, Any], reward: float | None = None) -> None:
        missing = [k for k in _REQUIRED if k not in info]
        if missing:
            raise ObservationError("info", f"keys {list(_REQUIRED)}", f"missing {missing}")
        speed = float(info["speed"])
        self._steps += 1
        self._collision |= bool(info["collision"])
        self._offroad += bool(info["offroad"])
        self._lane_error += float(info["lane_error"])
        self._progress = float(info["progress_m"])
        self._speeds.append(speed)
        limit = float(info.get("speed_limit", math.inf))
        self._compliant += speed <= limit + self.speed_tol
        self._stall += abs(speed) < self.stall_speed and not bool(info.get("blocked", False))
        if reward is not None:
            self._return += float(reward)

    def result(self) -> dict[str, float]:
        n = max(self._steps, 1)
        v = np.asarray(self._speeds, dtype=np.float64)
        jerk = np.diff(v, n=2) / self.dt**2 if v.size >= 3 else np.zeros(0)  # [n-1] m/s^3
        return {
            "progress_m": self._progress,
            "collision": float(self._collision),
            "offroad_s": self._offroad * self.dt,
            "lane_error_m": self._lane_error / n,
            "mean_abs_jerk": float(np.abs(jerk).mean()) if jerk.size else 0.0,
            "speed_limit_compliance": self._compliant / n,
            "stall_s": self._stall * self.dt,
            "length_s": self._steps * self.dt,
            "return": self._return,
            "steps": float(self._steps),
        }


def run_episode(
    env,
    act_fn: Callable[[Any, Any], np.ndarray],
    seed: int | None = None,
    max_steps: int = 1000,
    options: dict | None = None,
) -> dict[str, float]:
    """Play one episode (reset with `seed`/`options`) with `act_fn(obs, env)`; return its metrics."""
    car = getattr(env, "unwrapped", env)
    metrics = EpisodeMetrics(dt=getattr(car, "dt", 0.2))
    obs, info = env.reset(seed=seed, options=options)
    metrics.reset(info)
    for _ in range(int(max_steps)):
        action = act_fn(obs, env)
        obs, reward, terminated, truncated, info = env.step(action)
        metrics.update(obs, action, info, reward)
        if terminated or truncated:
            break
    return metrics.result()
