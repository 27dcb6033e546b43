"""Measure the humanoid walking experts and env speed: `python -m physai.sim.humanoid.measure`.

For each robot, runs the holosoma expert for `--episodes` random command schedules of `--seconds`
each (seeds 0..N-1, no images) and reports fall rate, velocity-tracking error (overall, linear,
yaw), survival time, mean mechanical power and action smoothness; then times env steps per second
with and without 64x64 images (env time only, the expert excluded) and expert+env without images.
Prints a rich table and, with `--json`, writes every number plus per-episode results.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def measure_expert(robot: str, episodes: int, seconds: float, seed: int = 0) -> dict[str, Any]:
    from physai.sim.humanoid.env import HumanoidWalkEnv
    from physai.sim.humanoid.expert import HumanoidExpert
    from physai.sim.humanoid.metrics import run_episode

    env = HumanoidWalkEnv(robot, render_images=False, episode_seconds=seconds)
    expert = HumanoidExpert(robot)
    per: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for i in range(episodes):
        expert.reset(env)
        m = run_episode(env, lambda obs, e: expert.act(e), seed=seed + i)
        per.append({"seed": seed + i, **m})
    wall = time.perf_counter() - t0
    env.close()
    keys = ("tracking_error", "lin_vel_error", "yaw_rate_error", "survival_s", "power_W", "action_smoothness")
    out: dict[str, Any] = {k: float(np.mean([p[k] for p in per])) for k in keys}
    out["fall_rate"] = float(np.mean([p["fell"] for p in per]))
    out["falls"] = int(sum(p["fell"] for p in per))
    out["episodes"] = episodes
    out["sim_seconds"] = float(sum(p["length_s"] for p in per))
    out["real_time_factor"] = out["sim_seconds"] / wall
    out["per_episode"] = per
    return out


def measure_speed(robot: str, images: bool, steps: int, seed: int = 0) -> float:
    """Env steps per second (env.step only) while the expert walks with vx=0.5."""
    from physai.sim.humanoid.env import HumanoidWalkEnv
    from physai.sim.humanoid.expert import HumanoidExpert

    env = HumanoidWalkEnv(robot, render_images=images, episode_seconds=steps / 50 + 10)
    expert = HumanoidExpert(robot)
    env.reset(seed=seed, options={"command": {"vx": 0.5}})
    env.step(expert.act(env))  # first frame: renderer/context creation
    spent = 0.0
    for _ in range(steps):
        a = expert.act(env)
        t = time.perf_counter()
        _, _, term, trunc, _ = env.step(a)
        spent += time.perf_counter() - t
        if term or trunc:
            env.reset(seed=seed)
    env.close()
    return steps / spent


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m physai.sim.humanoid.measure", description=__doc__.split("\n")[0])
    ap.add_argument("--robots", nargs="+", default=["g1", "t1"], choices=["g1", "t1"])
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed-steps", type=int, default=300, help="env steps timed per speed measurement (0: skip)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from physai.sim.render import select_backend

    console = Console()
    results: dict[str, Any] = {"episodes": args.episodes, "seconds": args.seconds, "robots": {}}
    for robot in args.robots:
        with console.status(f"{robot}: {args.episodes} expert episodes of {args.seconds:g} s"):
            r = measure_expert(robot, args.episodes, args.seconds, args.seed)
        if args.speed_steps > 0:
            with console.status(f"{robot}: timing env steps"):
                r["steps_per_s_no_images"] = measure_speed(robot, False, args.speed_steps, args.seed)
                r["steps_per_s_64px_images"] = measure_speed(robot, True, args.speed_steps, args.seed)
        results["robots"][robot] = r
    if args.speed_steps > 0:
        results["gl_backend"] = select_backend()

    table = Table(title=f"humanoid experts: {args.episodes} random command schedules x {args.seconds:g} s")
    rows = [
        ("falls", "falls", "{}"), ("fall rate", "fall_rate", "{:.0%}"),
        ("tracking error (m/s + rad/s)", "tracking_error", "{:.3f}"), ("  linear xy (m/s)", "lin_vel_error", "{:.3f}"),
        ("  yaw rate (rad/s)", "yaw_rate_error", "{:.3f}"), ("survival (s)", "survival_s", "{:.1f}"),
        ("mechanical power (W)", "power_W", "{:.0f}"), ("action smoothness |Δa| (rad)", "action_smoothness", "{:.4f}"),
        ("expert+env x real time", "real_time_factor", "{:.1f}"),
        ("env steps/s, no images", "steps_per_s_no_images", "{:.0f}"),
        ("env steps/s, 64x64 images", "steps_per_s_64px_images", "{:.0f}"),
    ]
    table.add_column("metric")
    for robot in results["robots"]:
        table.add_column(robot, justify="right")
    for label, key, fmt in rows:
        table.add_row(label, *(fmt.format(r[key]) if key in r else "-" for r in results["robots"].values()))
    console.print(table)
    if "gl_backend" in results:
        console.print(f"GL backend: {results['gl_backend']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        console.print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
