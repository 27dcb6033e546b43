"""`physai rl`: argument parsing and printing only; the work is in `physai.rl.stage.rl_finetune`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from physai.report import console, logger, print_table


def _weight(s: str) -> tuple[str, float]:
    import argparse

    if "=" not in s:
        raise argparse.ArgumentTypeError(f"expected TERM=WEIGHT, got '{s}'")
    k, v = s.split("=", 1)
    try:
        return k, float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"weight of '{k}' must be a number, got '{v}'") from None


def cmd_rl(args) -> int:
    from physai.errors import ConfigError
    from physai.overrides import apply_overrides
    from physai.recipes import get_recipe
    from physai.rl.stage import rl_finetune

    recipe = get_recipe(args.recipe)()
    if not hasattr(recipe, "rl"):
        raise ConfigError(f"recipe '{args.recipe}' is not an RL recipe (rl_car, rl_car_carl, rl_g1)")
    recipe = apply_overrides(recipe, args.set or [])
    if args.env:
        recipe = dataclasses.replace(recipe, env=args.env)
    if args.reward:
        recipe = dataclasses.replace(recipe, reward=args.reward)
    weights = {**dict(recipe.weights), **dict(args.weight or [])}
    out = Path(args.out or f"runs/{recipe.name}")
    res = rl_finetune(args.checkpoint, recipe.env, out, recipe.rl, reward=recipe.reward or None, weights=weights,
                      expert_baseline=not args.no_expert, log=logger(),
                      options=dict(recipe.options))
    first, last = res["first"], res["last"]
    keys = ["reward", *sorted(k for k in last if k.startswith("reward/")),
            *[k for k in ("collision", "fell", "progress_m", "mean_abs_jerk", "safety_interventions", "guard_aeb",
                          "tracking_error", "driving_score") if k in last]]
    rows = [{"metric": k, "first iteration": first.get(k), "last iteration": last.get(k)} for k in keys]
    if res["expert_reward"] is not None:
        rows.append({"metric": "expert reward (same reward, seeds of iteration 0)", "first iteration": res["expert_reward"],
                     "last iteration": res["expert_reward"]})
    rows += [{"metric": "env steps", "first iteration": first["env_steps"], "last iteration": res["env_steps"]},
             {"metric": "wall time (s)", "first iteration": first["wall_s"], "last iteration": res["seconds"]}]
    print_table(rows, f"physai rl {recipe.env} ({recipe.reward or 'default reward'}) -> {res['final']}",
                ["metric", "first iteration", "last iteration"])
    console.print(f"reward curve: {res['plot']}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("rl", help="PPO post-training of a checkpoint against a rule-based reward model")
    p.add_argument("--checkpoint", required=True, help="policy checkpoint to start from")
    p.add_argument("--recipe", default="rl_car", help="RL recipe (rl_car, rl_car_carl, rl_g1)")
    p.add_argument("--env", help="override the recipe's env id")
    p.add_argument("--reward", help="reward model (car, car-carl, humanoid); default: the recipe's")
    p.add_argument("--weight", type=_weight, action="append", metavar="TERM=WEIGHT", help="reward term weight, repeatable")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="recipe override, e.g. rl.iterations=5")
    p.add_argument("--out", help="output directory (default runs/<recipe>)")
    p.add_argument("--no-expert", action="store_true", help="skip the expert's reference reward")
    p.set_defaults(fn=cmd_rl)
