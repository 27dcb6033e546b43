"""Measure the car expert and env: `python -m physai.sim.car.measure [--episodes 10] [--json out.json]`.

For every registered car env it runs `--episodes` seeded expert episodes (seeds 0..N-1) and reports
collisions, mean progress, lane error, jerk, speed-limit compliance, off-road and stall time; then
env throughput (steps/s with 64×64 images, constant action, single process) and the expert's cost
per query. Prints a rich table and, with `--json`, writes every number (per episode too).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _expert_episodes(env_id: str, episodes: int, max_steps: int) -> dict[str, Any]:
    import gymnasium as gym

    from physai.sim.car.expert import CarExpert
    from physai.sim.car.metrics import run_episode

    env = gym.make(env_id)
    expert = CarExpert()
    runs, t0, steps = [], time.perf_counter(), 0
    for seed in range(episodes):
        m = run_episode(env, lambda obs, e: expert.act(e), seed=seed, max_steps=max_steps)
        m["seed"] = seed
        runs.append(m)
        steps += int(m["steps"])
    wall = time.perf_counter() - t0
    env.close()
    keys = [k for k in runs[0] if k != "seed"]
    mean = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    return {"episodes": runs, "mean": mean, "collisions": int(sum(r["collision"] for r in runs)),
            "expert_loop_steps_per_s": steps / wall}


def _throughput(env_id: str, steps: int) -> dict[str, float]:
    import gymnasium as gym

    from physai.sim.car.expert import CarExpert

    env = gym.make(env_id, image_size=64)
    env.reset(seed=0)
    action = np.array([0.5, 0.0], dtype=np.float32)
    t0, n = time.perf_counter(), 0
    while n < steps:
        _, _, terminated, truncated, _ = env.step(action)
        n += 1
        if terminated or truncated:
            env.reset()
    env_rate = n / (time.perf_counter() - t0)
    expert, car = CarExpert(), env.unwrapped
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(50):
        expert.act(car)
    expert_ms = (time.perf_counter() - t0) / 50 * 1e3
    env.close()
    return {"env_steps_per_s": env_rate, "expert_ms_per_query": expert_ms}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=10, help="seeded expert episodes per env (seeds 0..N-1)")
    p.add_argument("--max-steps", type=int, default=300, help="step cap per episode (5 steps = 1 s)")
    p.add_argument("--throughput-steps", type=int, default=300, help="steps timed per env for steps/s")
    p.add_argument("--envs", nargs="*", default=None, help="subset of physai.sim.car.ENV_IDS")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from physai.sim.car import ENV_IDS, register_envs

    register_envs()
    env_ids = args.envs or list(ENV_IDS)
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # redirected output: do not squeeze the table into 80 columns
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count()},
        "episodes": args.episodes, "max_steps": args.max_steps, "envs": {},
    }
    table = Table(title=f"car expert, {args.episodes} seeded episodes per env (seeds 0..{args.episodes - 1})")
    for col in ("env", "collisions", "progress m", "length s", "lane err m", "|jerk| m/s³", "speed-limit ok",
                "offroad s", "stall s", "env steps/s (64²)", "expert ms"):
        table.add_column(col, justify="right" if col != "env" else "left", no_wrap=col == "env")
    for env_id in env_ids:
        with console.status(f"{env_id}: expert episodes"):
            r = _expert_episodes(env_id, args.episodes, args.max_steps)
        with console.status(f"{env_id}: throughput"):
            r.update(_throughput(env_id, args.throughput_steps))
        results["envs"][env_id] = r
        m = r["mean"]
        table.add_row(env_id, f"{r['collisions']}/{args.episodes}", f"{m['progress_m']:.0f}", f"{m['length_s']:.1f}",
                      f"{m['lane_error_m']:.2f}", f"{m['mean_abs_jerk']:.2f}", f"{m['speed_limit_compliance']:.2f}",
                      f"{m['offroad_s']:.1f}", f"{m['stall_s']:.1f}", f"{r['env_steps_per_s']:.0f}",
                      f"{r['expert_ms_per_query']:.1f}")
    console.print(table)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        console.print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
