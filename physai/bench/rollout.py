"""`physai bench rollout`: env steps per second of the roll-out runner, serial against parallel.

For each env (car and G1, camera images on), the same seeded episodes are played one by one in
this process, then N at a time in this process (batched inference, envs stepped in turn), then
in N worker processes, by the expert (which acts inside each env slot) and by a policy (a
checkpoint, or a freshly built nano policy; one batched forward per control step for every env
waiting). Wall times include starting the worker processes, as a user's call does. Returns plain
rows; the CLI prints them and writes JSON.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from physai.sim.family import embodiment_of
from physai.sim.rollout import Episode, ExpertDriver, PolicyDriver, run_episodes
from physai.sim.suite import Scenario


def _rate(driver, eps: list[Episode], slots: int, workers: bool) -> tuple[float, float, int]:
    t = time.perf_counter()
    res = run_episodes(driver, eps, slots=slots, workers=workers)
    wall = time.perf_counter() - t
    steps = sum(r["steps"] for r in res)
    return steps / wall, wall, steps


def bench_rollout(envs: Sequence[str] = ("physai/car-highway", "physai/g1-walk"), episodes: int = 8,
                  seconds: dict[str, float] | None = None, parallel: Sequence[int] = (2, 4),
                  threads: int = 2, drivers: Sequence[str] = ("expert", "policy"),
                  checkpoint: str | None = None) -> dict[str, Any]:
    """Rows of (env, driver, mode, slots, steps/s, speed-up over serial) on the same seeds."""
    from physai.config import policy_config
    from physai.policy import Policy

    torch.set_num_threads(threads)
    seconds = {"physai/car-highway": 30.0, "physai/g1-walk": 10.0, **(seconds or {})}
    rows = []
    for env_id in envs:
        emb = embodiment_of(env_id)
        eps = [Episode(Scenario(env=env_id, seed=3000 + i, seconds=seconds.get(env_id, 5.0)), safety=True)
               for i in range(episodes)]
        for kind in drivers:
            if kind == "policy":
                torch.manual_seed(0)
                pol = (Policy.from_pretrained(checkpoint) if checkpoint
                       else Policy.build(policy_config("nano", embodiments=(emb,))))
                make = lambda: PolicyDriver(pol, emb)  # noqa: E731
            else:
                make = ExpertDriver
            run_episodes(make(), eps[:1], slots=1)  # warm-up: env assets, traced graphs
            base, wall, steps = _rate(make(), eps, 1, False)
            rows.append({"env": env_id, "driver": kind, "mode": "serial", "slots": 1, "steps": steps,
                         "wall_s": wall, "steps_per_s": base, "speedup": 1.0})
            for mode, workers in (("in-process slots", False), ("worker processes", True)):
                for n in parallel:
                    r, wall, steps = _rate(make(), eps, n, workers)
                    rows.append({"env": env_id, "driver": kind, "mode": mode, "slots": n, "steps": steps,
                                 "wall_s": wall, "steps_per_s": r, "speedup": r / base})
    return {"episodes": episodes, "seconds": seconds, "threads": threads, "checkpoint": checkpoint, "rows": rows}
