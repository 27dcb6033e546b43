"""`physai demo`: the whole factory in one command on a CPU.

Records small car (highway) and G1 (walking) datasets with the experts (cached under `data/`
for the next run), co-trains one small model on both with one DAgger round (the policy drives,
the experts label), evaluates it closed loop in both
simulators beside the expert on unseen seeds, prints the tables, and writes a training-curve PNG,
MP4 roll-outs and a JSON summary under the output directory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from physai.report import plot_curves, write_json

DEMO_OVERRIDES = [
    "train.steps=3000", "train.batch_size=128", "train.ckpt_every=750", "train.warmup_steps=100",
    'data.datasets=[["physai/car-highway",8,0.15],["physai/g1-walk",24,0.85]]',
    "data.dagger_rounds=4", "data.dagger_episodes=10",
]
QUICK_OVERRIDES = [
    "train.steps=20", "train.batch_size=16", "train.ckpt_every=10", "data.dagger_rounds=1", "data.dagger_episodes=1",
    'data.datasets=[["physai/car-highway",2,0.5],["physai/g1-walk",1,0.5]]',
    "data.record.car.seconds=8", "data.record.humanoid.seconds=3",
]


def run_demo(out: Path = Path("runs/demo"), quick: bool = False, episodes: int | None = None,
             log: Callable[[str], None] = lambda m: None) -> dict:
    """Run the demo; returns its summary (the CLI prints it). `log` gets one line per stage."""
    from physai.overrides import apply_overrides
    from physai.pipeline import dagger_boundaries, evaluate_checkpoint, train_recipe
    from physai.recipes import get_recipe
    from physai.sim.evaluate import seeded_scenarios

    t0 = time.perf_counter()
    overrides = DEMO_OVERRIDES + (QUICK_OVERRIDES if quick else [])
    if quick:
        overrides.append(f"data.root={out / 'data'}")
    recipe = apply_overrides(get_recipe("cotrain")(), overrides)
    log("1-2/4 record expert data (cached), co-train car + G1 with DAgger rounds")
    res = train_recipe(recipe, out / "train", resume=True, log=log)
    curve = plot_curves(res["history"], out / "training_curve.png", title="physai demo: co-training car + G1",
                        marks=dagger_boundaries(recipe))
    log("3/4 closed-loop evaluation on unseen seeds (physai vs expert)")
    n = {"physai/car-highway": 4, "physai/g1-walk": 8} if not quick else {"physai/car-highway": 1, "physai/g1-walk": 1}
    if episodes:
        n = {k: episodes for k in n}
    secs = {"physai/car-highway": 8.0 if quick else 30.0, "physai/g1-walk": 3.0 if quick else 20.0}
    scenarios = [s for env_id in recipe.eval_env for s in seeded_scenarios(env_id, n[env_id], recipe.eval_seed, secs[env_id])]
    ev = evaluate_checkpoint(res["final"], scenarios, video=out / "videos", videos_per_env=2)
    write_json(out / "eval.json", ev)
    log("4/4 summary")
    wall = time.perf_counter() - t0
    videos = sorted(str(p) for p in (out / "videos").glob("*.mp4"))
    summary = {"wall_s": wall, "train": {k: v for k, v in res.items() if k != "history"}, "eval": ev,
               "training_curve": str(curve), "videos": videos}
    write_json(out / "demo_summary.json", summary)
    return summary
