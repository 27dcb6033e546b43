"""`physai train`, `physai eval` and `physai demo`: argument parsing and printing only; the work is
in `physai.pipeline`, `physai.sim.evaluate` and `physai.recipes.demo`."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from physai.report import METRIC_COLUMNS, console, plot_curves, print_table, write_json


def cmd_train(args) -> int:
    from physai.overrides import apply_overrides
    from physai.pipeline import train_recipe
    from physai.recipes import get_recipe

    recipe = apply_overrides(get_recipe(args.recipe)(), args.set or [])
    out = Path(args.out or f"runs/{recipe.name}")
    res = train_recipe(recipe, out, resume=not args.no_resume)
    if res["history"]:
        plot_curves(res["history"], out / "training_curve.png", title=f"physai train --recipe {recipe.name}")
    last = res["history"][-1] if res["history"] else {}
    rows = [{"item": "recipe", "value": recipe.name}, {"item": "steps", "value": res["steps"]},
            {"item": "parameters", "value": f"{res['params'] / 1e6:.2f} M"},
            {"item": "wall time (s)", "value": f"{res['seconds']:.0f}"},
            {"item": "samples/s", "value": f"{res['samples_per_s']:.0f}"},
            {"item": "final loss", "value": f"{last.get('loss', float('nan')):.4f}"},
            {"item": "best val loss", "value": f"{res['best_metric']:.4f}"},
            {"item": "resumed", "value": str(res["resumed"])},
            {"item": "final checkpoint", "value": res["final"]}]
    print_table(rows, "physai train", ["item", "value"])
    write_json(out / "train_summary.json", {k: v for k, v in res.items() if k != "history"})
    return 0


def run_eval(checkpoint, scenarios, json_out=None, video=None, safety=True, with_expert=True, title="physai eval"):
    from physai.policy import Policy
    from physai.sim.evaluate import ExpertAgent, PolicyAgent, evaluate, summarize
    from physai.sim.suite import embodiment_of

    policy = Policy.from_pretrained(checkpoint)
    for sc in scenarios:
        if sc.embodiment not in policy.specs:
            from physai.errors import ConfigError

            raise ConfigError(f"checkpoint '{checkpoint}' has no '{sc.embodiment}' head (has {sorted(policy.specs)})")
    agents = {"physai": lambda env_id: PolicyAgent(policy, embodiment_of(env_id))}
    if with_expert:
        agents["expert"] = ExpertAgent
    res = evaluate(agents, scenarios, safety=safety, video_dir=video)
    rows = summarize(res)
    for fam, envs in (("car", [r for r in rows if "car" in r["env"]]), ("humanoid", [r for r in rows if "car" not in r["env"]])):
        if envs:
            print_table(envs, f"{title} ({fam}, safety {'on' if safety else 'off'})", ["agent", "env", "episodes", *METRIC_COLUMNS[fam]])
    if json_out:
        write_json(json_out, {"checkpoint": str(checkpoint), "safety": safety, "summary": rows, "episodes": res})
    return rows, res


def cmd_eval(args) -> int:
    from physai.errors import ConfigError
    from physai.sim.suite import load_scenarios
    from physai.sim.evaluate import seeded_scenarios

    if args.scenarios:
        if args.env:
            raise ConfigError("give either --scenarios FILE or --env NAME, not both")
        scenarios = load_scenarios(args.scenarios)
    elif args.env:
        scenarios = seeded_scenarios(args.env, args.episodes, args.seed, args.seconds)
    else:
        raise ConfigError("physai eval needs --env NAME (with --episodes/--seed) or --scenarios FILE")
    run_eval(args.checkpoint, scenarios, args.json, args.video, safety=not args.no_safety)
    return 0


def cmd_demo(args) -> int:
    from physai.recipes.demo import run_demo

    run_demo(out=Path(args.out), quick=args.quick)
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a recipe (records its datasets with the experts on first use)")
    p.add_argument("--recipe", required=True, help="recipe name (cotrain, car_only, g1_only, finetune_t1)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe field, e.g. train.steps=100 or policy.trunk.width=64 (repeatable)")
    p.add_argument("--out", help="run directory (default runs/<recipe>)")
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints already in --out")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("eval", help="closed-loop evaluation of a checkpoint beside the expert (same seeds)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--env", help="gymnasium id, e.g. physai/car-highway or physai/g1-walk")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=None, help="episode length (default: env's)")
    p.add_argument("--scenarios", help="JSON scenario file (see README)")
    p.add_argument("--json", help="write results JSON here")
    p.add_argument("--video", help="write MP4 roll-outs into this directory")
    p.add_argument("--no-safety", action="store_true", help="run without the safety layer")
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("demo", help="record, co-train car+G1, evaluate closed loop, write plots and videos")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="a much smaller run (smoke test)")
    p.set_defaults(fn=cmd_demo)
