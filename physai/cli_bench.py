"""`physai bench data | latency | train | policies | rollout | guard | world-model`: argument parsing and printing only.

Each handler calls a benchmark function of `physai.bench` (which returns plain data), prints its
rows as rich tables and writes the whole result as JSON. `add_parsers(sub)` adds the `bench`
command and its four subcommands to the top-level `physai` subparsers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from physai.errors import ConfigError
from physai.device import add_device_argument
from physai.report import closed_loop_tables, console, logger, print_table, write_json


def _write(path, result: dict[str, Any]) -> None:
    write_json(path, result)
    console.print(f"wrote {path}")


def data_table(report: dict[str, Any]) -> Table:
    """The `bench data` report as one table: samples/s per dataset and loader, physai's ratio."""
    t = Table(title=f"data loading, batch {report['batch_size']}, action chunk {report['chunk_size']} (samples/s)",
              header_style="bold")
    cols = ["dataset", "emb", "frames"] + [f"LeRobot w={w}" for w in report["workers"]] + ["physai", "load s", "ratio"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("dataset", "emb") else "right")
    for r in report["rows"]:
        t.add_row(Path(r["dataset"]).name, r["embodiment"], str(r["frames"]),
                  *[f"{r[f'baseline_w{w}_samples_per_s']:.0f}" for w in report["workers"]],
                  f"{r['physai_samples_per_s']:.0f}", f"{r['physai_load_s']:.2f}", f"{r['ratio_vs_best_baseline']:.0f}x")
    if "mixed" in report:
        m = report["mixed"]
        t.add_row("mixed", "all", "", *[""] * len(report["workers"]), f"{m['physai_samples_per_s']:.0f}",
                  f"{m['physai_load_s']:.2f}", "")
    return t


def cmd_data(args) -> int:
    from physai.bench.data import bench_data

    if args.batch_size < 1 or args.chunk_size < 1 or args.batches < 1:
        raise ConfigError("--batch-size, --chunk-size and --batches must be >= 1")
    report = bench_data(args.datasets, batch_size=args.batch_size, chunk_size=args.chunk_size, batches=args.batches,
                        workers=tuple(args.workers), cache_dir=args.cache_dir, log=logger("dim"))
    console.print(data_table(report))
    if args.json:
        _write(args.json, report)
    return 0


def cmd_latency(args) -> int:
    from physai.bench.latency import bench_latency

    res = bench_latency(args.threads, args.calls, args.chunk, args.preset, checkpoint=args.checkpoint,
                        variants=not args.no_variants, device=args.device, pruned=args.pruned)
    print_table(res["rows"], f"physai bench latency (select_action, re-plan every call, {args.threads} threads"
                f"{', ' + args.checkpoint if args.checkpoint else ''})",
                ["embodiment", "policy", "params_M", "p50_ms", "p99_ms", "mean_ms", "budget_ms", "cosine", "max_abs_diff"])
    _write(args.json, res)
    return 0


def cmd_train(args) -> int:
    from physai.bench.train import bench_train

    res = bench_train(args.threads, args.batch_size, args.steps, args.preset, act_dim_model=args.act_dim,
                      device=args.device)
    print_table(res["rows"], f"physai bench train (car, batch {args.batch_size}, {args.threads} threads, {res['device']}, "
                f"matmul peak {res['matmul_peak_GFLOPs']:.1f} GFLOP/s)")
    _write(args.json, res)
    return 0


def cmd_policies(args) -> int:
    from physai.bench.policies import bench_policies

    res = bench_policies(args.recipe, args.set, args.episodes, args.seed, args.out, device=args.device)
    for t in closed_loop_tables(res["closed_loop"], "bench policies: closed loop"):  # one per body family
        console.print(t)
    print_table([{"policy": k, **v} for k, v in res["stats"].items()], "bench policies: size and speed",
                ["policy", "params_M", "train_samples_per_s", "p50_ms", "p99_ms"])
    _write(args.json, res)
    return 0


def cmd_rollout(args) -> int:
    from physai.bench.rollout import bench_rollout

    res = bench_rollout(args.env, args.episodes, parallel=args.parallel, threads=args.threads,
                        checkpoint=args.checkpoint)
    print_table(res["rows"], f"physai bench rollout (env steps/s, camera images on, {res['episodes']} episodes, "
                f"same seeds)", ["env", "driver", "mode", "slots", "steps", "wall_s", "steps_per_s", "speedup"])
    _write(args.json, res)
    return 0


def cmd_guard(args) -> int:
    from physai.bench.safety import bench_guard

    res = bench_guard(episodes=args.episodes, seed=args.seed, seconds=args.seconds, env_id=args.env)
    print_table(res["rows"], f"physai bench guard ({args.env}, {args.episodes} episodes of {args.seconds:g} s, "
                f"seeds {args.seed}+)")
    _write(args.json, res)
    return 0


def cmd_world_model(args) -> int:
    from physai.bench.world_model import bench_world_model

    res = bench_world_model(args.checkpoint, episodes=args.episodes, seed=args.seed, horizon=args.horizon,
                            stride=args.stride, seconds=args.seconds, png=args.png)
    print_table(res["rows"], f"physai bench world-model: imagined vs real physical tokens ({args.episodes} expert "
                f"episodes per body from seed {args.seed}; baselines fitted on the first half, scored on the second)",
                ["embodiment", "horizon", "seconds_ahead", "wm_top1", "copy_top1", "freq_top1", "wm_ce", "freq_ce", "starts"])
    if res["counterfactual"]:
        cols = list(res["counterfactual"][0])
        print_table(res["counterfactual"], "counterfactual: a probe reads the imagined tokens under two constant actions", cols)
    if res.get("png"):
        console.print(f"wrote {res['png']}")
    _write(args.json, res)
    return 0


def add_parsers(sub) -> None:
    """Add `bench` with its subcommands to the top-level `physai` subparsers."""
    bench = sub.add_parser("bench", help="benchmarks: data, policies, latency, train, rollout, guard, world-model").add_subparsers(dest="bench", required=True)
    p = bench.add_parser("data", help="physai loader vs LeRobotDataset + DataLoader (samples/s)")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON here")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=8, help="action chunk H")
    p.add_argument("--batches", type=int, default=20, help="timed baseline batches per setting")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="baseline DataLoader num_workers values")
    p.add_argument("--datasets", nargs="+", metavar="DIR", help="datasets to load (default: record small ones)")
    p.add_argument("--cache-dir", help="where default datasets are recorded (default ~/.cache/physai/bench_data)")
    p.set_defaults(fn=cmd_data)

    p = bench.add_parser("latency", help="select_action p50/p99: physai vs LeRobot ACT, same inputs and threads")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--preset", default="nano")
    p.add_argument("--checkpoint", help="time this trained checkpoint's bodies instead of an untrained preset")
    p.add_argument("--no-variants", action="store_true", help="skip the int8 / ONNX / ONNX int8 rows")
    p.add_argument("--pruned", help="a `physai prune` output of --checkpoint: adds its eager and traced rows")
    p.add_argument("--json", default="runs/bench/latency.json")
    add_device_argument(p)
    p.set_defaults(fn=cmd_latency)

    p = bench.add_parser("train", help="training samples/s vs ACT at comparable size, FLOP/s vs matmul peak")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128, help="default: the recipes' batch size")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--preset", default="small")
    p.add_argument("--act-dim", type=int, default=None,
                   help="ACT dim_model (sets its size; default: the one whose parameter count is closest to physai's)")
    p.add_argument("--json", default="runs/bench/train.json")
    add_device_argument(p)
    p.set_defaults(fn=cmd_train)

    p = bench.add_parser("policies", help="physai vs LeRobot ACT/Diffusion: same data, same samples, same closed loop")
    p.add_argument("--recipe", default="cotrain")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--out", default="runs/bench_policies")
    p.add_argument("--json", default="runs/bench/policies.json")
    add_device_argument(p)
    p.set_defaults(fn=cmd_policies)

    p = bench.add_parser("rollout", help="env steps/s of the roll-out runner: serial vs parallel, expert and policy")
    p.add_argument("--env", nargs="+", default=["physai/car-highway", "physai/g1-walk"])
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--parallel", type=int, nargs="+", default=[2, 4], help="slot counts to time")
    p.add_argument("--checkpoint", help="the policy that drives (default: an untrained nano policy)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the batched policy")
    p.add_argument("--json", default="runs/bench/rollout.json")
    p.set_defaults(fn=cmd_rollout)

    p = bench.add_parser("world-model", help="imagined vs real physical tokens per horizon, baselines, counterfactual")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--episodes", type=int, default=6, help="expert episodes per body (first half fit the baselines)")
    p.add_argument("--seed", type=int, default=7000, help="first episode seed (no recording, suite or RL uses it)")
    p.add_argument("--horizon", type=int, default=4, help="imagined steps (each one action chunk)")
    p.add_argument("--stride", type=int, default=4, help="control steps between start frames")
    p.add_argument("--seconds", type=float, default=None, help="episode length (default: the family's recording length)")
    p.add_argument("--png", default="runs/bench/world_model.png")
    p.add_argument("--json", default="runs/bench/world_model.json")
    p.set_defaults(fn=cmd_world_model)

    p = bench.add_parser("guard", help="collisions of full-throttle and random policies with and without the guard")
    p.add_argument("--env", default="physai/car-highway")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--json", default="runs/bench/guard.json")
    p.set_defaults(fn=cmd_guard)
