"""`physai plan` and `physai flywheel`: argument parsing and printing only; the work is in
`physai.plan_fit.fit_value` and `physai.flywheel.run_flywheel`."""

from __future__ import annotations

from pathlib import Path

from physai.report import console, logger, print_table


def cmd_plan(args) -> int:
    from physai.errors import ConfigError
    from physai.overrides import apply_overrides
    from physai.plan import PlannerConfig
    from physai.plan_fit import fit_value
    from physai.policy import Policy
    from physai.recipes import get_recipe
    from physai.sim.family import family_for_env

    recipe = get_recipe(args.recipe)()
    if not hasattr(recipe, "env"):
        raise ConfigError(f"recipe '{args.recipe}' names no env (use an RL recipe: rl_car, rl_g1)")
    env_id = args.env or recipe.env
    policy = Policy.from_pretrained(args.checkpoint)
    cfg = apply_overrides(PlannerConfig(embodiment=family_for_env(env_id).embodiment_of(env_id)), args.set or [])
    if args.episodes < 2:
        raise ConfigError("--episodes must be >= 2 (a quarter is held out)")
    planner, report = fit_value(policy, env_id, dict(recipe.options), cfg, episodes=args.episodes, seed=args.seed,
                                seconds=args.seconds, safety=args.safety, steps=args.steps,
                                log=logger("dim"))
    out = planner.save(Path(args.out), extra={"checkpoint": str(args.checkpoint), "fit": report})
    print_table([{"item": k, "value": v} for k, v in report.items()] + [{"item": "planner", "value": str(out)}],
                f"physai plan: value head on physical tokens ({env_id})", ["item", "value"])
    return 0


def cmd_flywheel(args) -> int:
    from physai.errors import ConfigError
    from physai.flywheel import FlywheelRecipe, run_flywheel
    from physai.overrides import apply_overrides
    from physai.recipes import get_recipe

    fw = get_recipe(args.recipe)()
    if not isinstance(fw, FlywheelRecipe):
        raise ConfigError(f"recipe '{args.recipe}' is not a flywheel recipe (flywheel_car)")
    fw = apply_overrides(fw, args.set or [])
    res = run_flywheel(args.checkpoint, fw, args.out, data_root=args.data_root, log=logger("dim"))
    cols = ["arm", "round", "frames_added", "hard_frames", "dup_share", "guard_off/collision", "guard_off/fell",
            "guard_off/progress_m", "guard_on/collision", "guard_on/guard_aeb", "guard_on/progress_m", "guard_on/reward"]
    cols = [c for c in cols if any(c in r for r in res["rows"])]
    print_table(res["rows"], f"physai flywheel ({fw.env}, held-out suite {fw.eval_suite}; "
                f"{res['seconds']:.0f} s)", cols)
    console.print(f"wrote {Path(args.out) / 'flywheel.json'}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("plan", help="fit a value head on physical tokens for world-model planning (eval --planner)")
    p.add_argument("--checkpoint", required=True, help="policy checkpoint (with a world model)")
    p.add_argument("--recipe", default="rl_car", help="RL recipe whose env and options the roll-outs use")
    p.add_argument("--env", help="override the recipe's env id")
    p.add_argument("--episodes", type=int, default=16, help="policy roll-outs (the last quarter held out)")
    p.add_argument("--seed", type=int, default=300000, help="first roll-out seed (no recording, suite or RL uses it)")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--steps", type=int, default=1500, help="value-head training steps")
    p.add_argument("--safety", action="store_true", help="roll out with the guard on (default off: collisions in the data)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="planner setting, e.g. candidates=32 or noise=0.2")
    p.add_argument("--out", required=True, help="planner directory")
    p.set_defaults(fn=cmd_plan)

    p = sub.add_parser("flywheel", help="evaluate, mine hard cases, relabel, dedup, retrain; mined vs uniform arms")
    p.add_argument("--checkpoint", required=True, help="the checkpoint round 0 starts from")
    p.add_argument("--recipe", default="flywheel_car")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="e.g. rounds=3, episodes=8, mine.ttc_s=1.5")
    p.add_argument("--data-root", help="where the retrain recipe's recordings are cached (default: its data.root)")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_flywheel)
