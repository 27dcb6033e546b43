"""`physai train`, `physai eval` and `physai demo`: argument parsing and printing only; the work is
in `physai.pipeline`, `physai.sim.evaluate` and `physai.recipes.demo`."""

from __future__ import annotations

from pathlib import Path

from physai.device import add_device_argument
from physai.report import check_writable, closed_loop_tables, console, instruction_table, logger, plot_curves, print_table, write_json


def cmd_train(args) -> int:
    from physai.overrides import apply_overrides
    from physai.pipeline import dagger_boundaries, train_recipe
    from physai.recipes import get_recipe

    recipe = apply_overrides(get_recipe(args.recipe)(), args.set or [])
    out = Path(args.out or f"runs/{recipe.name}")
    res = train_recipe(recipe, out, resume=not args.no_resume, log=logger(), device=args.device)
    if res["history"]:
        plot_curves(res["history"], out / "training_curve.png", title=f"physai train --recipe {recipe.name}",
                    marks=dagger_boundaries(recipe))
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


def print_eval(res: dict, title: str) -> None:
    """The closed-loop tables of an `evaluate_checkpoint` result: metrics per family, instructions."""
    safety = "on" if res["safety"] else "off"
    for t in closed_loop_tables(res["summary"], f"{title}, safety {safety}"):
        console.print(t)
    t = instruction_table(res["instructions"], f"{title}: instructions followed (success rate, same scenarios)")
    if t is not None:
        console.print(t)


def inference_settings(items: list[str]) -> dict:
    """`--inference KEY=VALUE` items -> `Policy.set_inference` keyword arguments, each value parsed
    by PolicyConfig's field type (`n_action_steps=4`, `temporal_ensemble=0.1`, `...=none`)."""
    from physai.config import PolicyConfig
    from physai.errors import ConfigError
    from physai.overrides import apply_overrides
    from physai.policy import Policy

    keys = [it.split("=", 1)[0].strip() for it in items]
    bad = [k for k in keys if k not in Policy.INFERENCE_KEYS]
    if bad:
        raise ConfigError(f"--inference: {bad} are not inference settings; valid: {list(Policy.INFERENCE_KEYS)}")
    parsed = apply_overrides(PolicyConfig(), items)
    return {k: getattr(parsed, k) for k in keys}


def cmd_eval(args) -> int:
    from physai.errors import ConfigError
    from physai.pipeline import evaluate_checkpoint
    from physai.sim.evaluate import seeded_scenarios
    from physai.sim.suite import load_scenarios, load_suite

    if args.json:
        check_writable(args.json)  # before the first episode, not after the last
    given = [x for x in (args.scenarios, args.env, args.suite) if x]
    if len(given) != 1:
        raise ConfigError("physai eval needs exactly one of --env NAME (with --episodes/--seed), --scenarios FILE, "
                          "--suite NAME")
    if args.scenarios:
        scenarios, what = load_scenarios(args.scenarios), f"scenarios {Path(args.scenarios).name}"
    elif args.suite:
        scenarios, what = load_suite(args.suite), f"suite {args.suite}"
    else:
        scenarios = seeded_scenarios(args.env, args.episodes, args.seed, args.seconds)
        what = f"{args.env}, {args.episodes} episodes, seeds {args.seed}+"
    inference = inference_settings(args.inference or [])
    what += "".join(f", variant {v}" for v in args.variant or ()) + (", with planner" if args.planner else "")
    what += "".join(f", {k}={v}" for k, v in inference.items())
    res = evaluate_checkpoint(args.checkpoint, scenarios, safety=not args.no_safety, video=args.video,
                              slots=args.parallel, planner=args.planner, plan_set=args.plan_set or [],
                              variants=tuple(args.variant or ()), device=args.device,
                              card_title=None if args.no_card else what, inference=inference)
    print_eval(res, "physai eval")
    if args.json:
        write_json(args.json, res)
        console.print(f"wrote {args.json}")
    return 0


def cmd_demo(args) -> int:
    from physai.recipes.demo import run_demo

    summary = run_demo(out=Path(args.out), quick=args.quick, log=logger("bold"))
    print_eval(summary["eval"], "physai demo")
    out = Path(args.out)
    print_table([{"item": "wall time (s)", "value": f"{summary['wall_s']:.0f}"},
                 {"item": "training samples/s", "value": f"{summary['train']['samples_per_s']:.0f}"},
                 {"item": "checkpoint", "value": summary["train"]["final"]},
                 {"item": "training curve", "value": summary["training_curve"]},
                 {"item": "videos", "value": f"{len(summary['videos'])} in {out / 'videos'}"},
                 {"item": "summary", "value": str(out / "demo_summary.json")}], "physai demo", ["item", "value"])
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a recipe (records its datasets with the experts on first use)")
    p.add_argument("--recipe", required=True, help="recipe name (cotrain, car_only, g1_only, finetune_t1)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe field, e.g. train.steps=100 or policy.trunk.width=64 (repeatable)")
    p.add_argument("--out", help="run directory (default runs/<recipe>)")
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints already in --out")
    add_device_argument(p)
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("eval", help="closed-loop evaluation of a checkpoint beside the expert (same seeds)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--env", help="gymnasium id, e.g. physai/car-highway or physai/g1-walk")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=None, help="episode length (default: env's)")
    p.add_argument("--scenarios", help="JSON scenario file (see README)")
    p.add_argument("--suite", help="a shipped scenario suite by name (see `physai info`)")
    p.add_argument("--parallel", type=int, default=2, metavar="N", help="envs run at once (worker processes)")
    p.add_argument("--json", help="write results JSON here")
    p.add_argument("--video", metavar="DIR", help="write one real-time MP4 per agent and scenario into DIR, "
                   "captioned with the agent, the simulated time and the command")
    p.add_argument("--no-safety", action="store_true", help="run without the safety layer")
    p.add_argument("--inference", action="append", metavar="KEY=VALUE",
                   help="how the checkpoint executes its chunks, without retraining: n_action_steps=N (actions "
                        "per predicted chunk) or temporal_ensemble=M (repeatable)")
    p.add_argument("--planner", help="a `physai plan` directory: adds a `physai+plan` row (world-model planning)")
    p.add_argument("--plan-set", action="append", metavar="KEY=VALUE", help="planner override, e.g. candidates=32")
    p.add_argument("--variant", action="append", choices=("int8", "onnx", "onnx-int8"),
                   help="also drive a deployment variant of the checkpoint on the same seeds (repeatable)")
    add_device_argument(p)
    p.add_argument("--no-card", action="store_true", help="do not add the results to the checkpoint's model card")
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("demo", help="record, co-train car+G1, evaluate closed loop, write plots and videos")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="a much smaller run (smoke test)")
    p.set_defaults(fn=cmd_demo)
