"""`physai bench guard`: what the car's safety guard changes for policies that need one.

Two deliberately bad drivers, a full-throttle policy (accel = the spec's maximum, steer 0) and a
uniformly random policy (seeded per episode, so it draws the same action sequence with and without
the guard), play the same seeded episodes of a car env with and without `CarGuard` between them
and the env. The guard reads only the env's documented `info["sensors"]`. Per (policy, guard) it
returns collisions per episode, mean progress along the road, mean episode length and time off
the road, and the guard's interventions per episode by rule; the guard's job is to take the
full-throttle collisions to zero. Plain data; the CLI prints the rows and writes JSON.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
from rich.progress import Progress

import physai.sim
from physai.sim.car import episode_steps
from physai.embodiments.safety import CAR_RULES, CarGuard
from physai.errors import ConfigError


def _full_throttle(spec, rng) -> Callable[[], np.ndarray]:
    a = np.array([spec.high[0], 0.0], dtype=np.float32)
    return lambda: a.copy()


def _random(spec, rng) -> Callable[[], np.ndarray]:
    return lambda: rng.uniform(spec.low, spec.high).astype(np.float32)


POLICIES: dict[str, Callable] = {"full throttle": _full_throttle, "random": _random}


def _episode(env, spec, make_policy, seed: int, guard: CarGuard | None) -> dict[str, Any]:
    act = make_policy(spec, np.random.default_rng(seed))
    _, info = env.reset(seed=seed)
    if guard is not None:
        guard.reset(info["sensors"])
    collision, steps, offroad = False, 0, 0
    while True:
        a = act()
        if guard is not None:
            a = guard.filter(a, info["sensors"])
        _, _, terminated, truncated, info = env.step(a)
        steps += 1
        collision |= bool(info["collision"])
        offroad += bool(info["offroad"])
        if terminated or truncated:
            break
    out = {"seed": seed, "collision": collision, "progress_m": float(info["progress_m"]),
           "length_s": float(info["time_s"]), "offroad_s": offroad / spec.control_hz, "steps": steps}
    if guard is not None:
        out["interventions"] = guard.counts
    return out


def bench_guard(episodes: int = 5, seed: int = 2000, seconds: float = 30.0, env_id: str = "physai/car-highway",
                progress: bool = True) -> dict[str, Any]:
    """Full-throttle and random policies with and without `CarGuard` on seeds seed .. seed+episodes-1
    of a car env, each episode `seconds` long (or until it ends); returns {"rows", "episodes", ...}."""
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    physai.sim.register_envs()
    env = gym.make(env_id, episode_seconds=seconds, max_episode_steps=episode_steps(seconds))
    spec = getattr(env.unwrapped, "car_spec", None)
    if spec is None:
        env.close()
        raise ConfigError(f"bench_guard drives a car env (an env with a 2-DoF accel/steer car spec); got {env_id!r}")
    seeds = [seed + i for i in range(episodes)]
    rows, per_episode = [], []
    try:
        with Progress(disable=not progress, transient=True) as prog:
            task = prog.add_task("bench guard", total=len(POLICIES) * 2 * episodes)
            for name, make_policy in POLICIES.items():
                for guarded in (False, True):
                    eps = []
                    for s in seeds:
                        guard = CarGuard(spec) if guarded else None
                        eps.append(_episode(env, spec, make_policy, s, guard))
                        prog.advance(task)
                    row = {"policy": name, "guard": "on" if guarded else "off", "episodes": episodes,
                           "collisions_per_episode": float(np.mean([e["collision"] for e in eps])),
                           "mean_progress_m": float(np.mean([e["progress_m"] for e in eps])),
                           "mean_length_s": float(np.mean([e["length_s"] for e in eps])),
                           "mean_offroad_s": float(np.mean([e["offroad_s"] for e in eps]))}
                    for rule in CAR_RULES:  # interventions per episode by rule (None without a guard)
                        row[f"{rule}_per_episode"] = (float(np.mean([e["interventions"][rule] for e in eps]))
                                                      if guarded else None)
                    rows.append(row)
                    per_episode += [{"policy": name, "guard": row["guard"], **e} for e in eps]
    finally:
        env.close()
    return {"env": env_id, "episodes": episodes, "seeds": seeds, "seconds": seconds, "rows": rows,
            "per_episode": per_episode}
