"""Benchmarks `physai bench latency | train | policies`: physai side by side with LeRobot's own
ACT / Diffusion policies in the same process, same threads, same inputs; each prints a rich
table and writes JSON with the raw figures and the ratios. No timed assertions anywhere: these
are measurements, reported as they come out.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from physai.report import console, print_table, write_json


def percentile_ms(fn: Callable[[], Any], n: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    a = np.asarray(ts)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def _physai_policy(embodiments, preset="nano", chunk=8, n_action_steps=1, patch_size: int | None = None,
                   state_token: bool | None = None, **layout):
    """The configuration the recipes train (see `recipes.core._policy`) at `preset` size;
    `patch_size` / `state_token` (stem) and `n_readout` / `readout` (policy) override its token layout."""
    import dataclasses

    from physai.policy import Policy
    from physai.recipes.core import _policy
    from physai.trunk import TRUNK_PRESETS

    cfg = _policy(tuple(embodiments), chunk=chunk, n_action_steps=n_action_steps, **layout)
    stem = {k: v for k, v in (("patch_size", patch_size), ("state_token", state_token)) if v is not None}
    cfg = dataclasses.replace(cfg, stem=dataclasses.replace(cfg.stem, **stem), trunk=TRUNK_PRESETS.get(preset),
                              preset=preset)
    return Policy.build(cfg).eval()


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


# ---- latency --------------------------------------------------------------------------------
def bench_latency(threads: int = 2, calls: int = 100, chunk: int = 8, preset: str = "nano") -> dict[str, Any]:
    from physai.baselines import LeRobotBaseline
    from physai.embodiments import get_spec
    from physai.testing import make_obs

    torch.set_num_threads(threads)
    rows = []
    for emb in ("car", "g1"):
        spec = get_spec(emb)
        rng = np.random.default_rng(0)
        obs = [make_obs(spec, rng) for _ in range(16)]
        pol = _physai_policy([emb], preset, chunk, n_action_steps=1)  # re-plan every call: full inference each time
        act = LeRobotBaseline("act", spec, chunk_size=chunk, n_action_steps=1).eval()  # LeRobot ACT defaults otherwise
        i = {"k": 0}

        def nxt():
            i["k"] += 1
            return obs[i["k"] % len(obs)]

        with torch.inference_mode():
            e = percentile_ms(lambda: pol.select_action(nxt(), emb), calls)
            a = percentile_ms(lambda: act.select_action(nxt()), calls)
        pol.optimize_for_inference()  # traced + frozen graph (built in the warm-up calls)
        with torch.no_grad():
            p = percentile_ms(lambda: pol.select_action(nxt(), emb), calls)
        rows.append({"embodiment": emb, "policy": f"physai {preset} (eager)", "params_M": n_params(pol) / 1e6, **e})
        rows.append({"embodiment": emb, "policy": f"physai {preset}", "params_M": n_params(pol) / 1e6, **p})
        rows.append({"embodiment": emb, "policy": "lerobot ACT", "params_M": n_params(act) / 1e6, **a})
        rows.append({"embodiment": emb, "policy": "ratio physai/ACT", "params_M": float("nan"),
                     "p50_ms": p["p50_ms"] / a["p50_ms"], "p99_ms": p["p99_ms"] / a["p99_ms"], "mean_ms": p["mean_ms"] / a["mean_ms"]})
    return {"threads": threads, "calls": calls, "chunk_size": chunk, "n_action_steps": 1, "rows": rows}


# ---- training throughput + FLOP/s ------------------------------------------------------------
def matmul_peak_flops(threads: int, sizes: tuple[int, ...] = (1024, 2048), windows: int = 5, reps: int = 6) -> float:
    """The best fp32 matmul FLOP/s over several sizes and timing windows: a peak, so another process
    briefly sharing the core lowers one window, not the figure."""
    torch.set_num_threads(threads)
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(2):
            a @ b
        for _ in range(windows):
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def _train_rate(model, batch_fn, steps: int, lr: float = 1e-4) -> float:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    batches = [batch_fn() for _ in range(steps + 2)]
    for b in batches[:2]:
        loss, _ = model(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    t = time.perf_counter()
    for b in batches[2:]:
        loss, _ = model(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return sum(len(b["action"]) for b in batches[2:]) / (time.perf_counter() - t)


# physai variants `bench train` times: (label, token-layout overrides). The recipes' layout (2x2
# patches of 32 px, the image grid ACT's ResNet-18 gives a 64-px image; one state token; 4 physical
# tokens pooled from the trunk's output: 5 trunk tokens); "p32 registers": the same patches with the
# embodiment, command and proprio tokens and 4 registers riding through the trunk (11); "p16
# registers": the recipes' layout before it, 4x4 patches of 16 px and 8 registers (27).
TRAIN_VARIANTS = (("", {}),
                  ("p32 registers", {"patch_size": 32, "state_token": False, "readout": "trunk", "n_readout": 4}),
                  ("p16 registers", {"patch_size": 16, "state_token": False, "readout": "trunk", "n_readout": 8}))


def _train_flops_per_sample(model, batch) -> float:
    """FLOPs of one training step (forward + backward, train mode) per sample."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.train()
    with FlopCounterMode(display=False) as fc:
        loss, _ = model(batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was)
    return fc.get_total_flops() / len(batch["action"])


def match_act_dim(spec, chunk: int, params: int, dims=range(64, 1025, 64)) -> int:
    """ACT's dim_model (dim_feedforward = 4x) whose parameter count is closest to `params`."""
    from physai.baselines import LeRobotBaseline

    best, best_gap = dims[0], float("inf")
    for d in dims:
        n = n_params(LeRobotBaseline("act", spec, chunk_size=chunk, n_action_steps=chunk, dim_model=d, dim_feedforward=4 * d))
        if abs(n - params) < best_gap:
            best, best_gap = d, abs(n - params)
        if n > params:  # grows with d: nothing further is closer
            break
    return best


def bench_train(threads: int = 2, batch_size: int = 128, steps: int = 4, preset: str = "small", chunk: int = 8,
                act_dim_model: int | None = None, variants=TRAIN_VARIANTS) -> dict[str, Any]:
    """Training samples/s of physai `preset` (each token variant) and of LeRobot ACT with the
    parameter count closest to physai's (or `act_dim_model`), plus physai's achieved FLOP/s as a
    fraction of the fp32 matmul peak measured in the same run. Same batches, AdamW, same threads."""
    from physai.baselines import LeRobotBaseline
    from physai.embodiments import get_spec
    from physai.testing import make_batch

    torch.set_num_threads(threads)
    spec = get_spec("car")
    pols = {f"physai {preset}" + (f" {label}" if label else ""): _physai_policy(["car"], preset, chunk, 1, **kw)
            for label, kw in variants}
    if act_dim_model is None:
        act_dim_model = match_act_dim(spec, chunk, int(np.mean([n_params(p) for p in pols.values()])))
    act = LeRobotBaseline("act", spec, chunk_size=chunk, n_action_steps=chunk, dim_model=act_dim_model,
                          dim_feedforward=4 * act_dim_model)
    seeds = iter(range(10_000))
    bp = lambda: make_batch(spec, B=batch_size, H=chunk, seed=next(seeds))
    ba = lambda: make_batch(spec, B=batch_size, H=chunk, seed=next(seeds), next_obs=False)
    peak = matmul_peak_flops(threads)
    act_name = f"lerobot ACT d{act_dim_model}"
    act_flops = _train_flops_per_sample(act, ba())
    sps_a = _train_rate(act, ba, steps)
    rows = []
    for name, pol in pols.items():
        flops = _train_flops_per_sample(pol, bp())
        sps = _train_rate(pol, bp, steps)
        tokens = pol.stems["car"].num_tokens + (pol.config.n_readout if pol.config.readout == "trunk" else 0)
        rows.append({"policy": name, "params_M": n_params(pol) / 1e6, "tokens": tokens, "samples_per_s": sps,
                     "GFLOP_per_sample": flops / 1e9, "achieved_GFLOPs": flops * sps / 1e9,
                     "fraction_of_matmul_peak": flops * sps / peak, "ratio_vs_ACT": sps / sps_a})
    rows.append({"policy": act_name, "params_M": n_params(act) / 1e6, "samples_per_s": sps_a,
                 "GFLOP_per_sample": act_flops / 1e9, "achieved_GFLOPs": act_flops * sps_a / 1e9,
                 "fraction_of_matmul_peak": act_flops * sps_a / peak, "ratio_vs_ACT": 1.0})
    return {"threads": threads, "batch_size": batch_size, "steps": steps, "chunk_size": chunk,
            "act_dim_model": act_dim_model, "matmul_peak_GFLOPs": peak / 1e9, "rows": rows}


def cmd_latency(args) -> int:
    res = bench_latency(args.threads, args.calls, args.chunk, args.preset)
    print_table(res["rows"], f"physai bench latency (select_action, re-plan every call, {args.threads} threads)",
                ["embodiment", "policy", "params_M", "p50_ms", "p99_ms", "mean_ms"])
    write_json(args.json, res)
    console.print(f"wrote {args.json}")
    return 0


def cmd_train(args) -> int:
    res = bench_train(args.threads, args.batch_size, args.steps, args.preset, act_dim_model=args.act_dim)
    print_table(res["rows"], f"physai bench train (car, batch {args.batch_size}, {args.threads} threads, "
                f"matmul peak {res['matmul_peak_GFLOPs']:.1f} GFLOP/s)")
    write_json(args.json, res)
    console.print(f"wrote {args.json}")
    return 0


def add_bench_parsers(bench_sub) -> None:
    p = bench_sub.add_parser("latency", help="select_action p50/p99: physai vs LeRobot ACT, same inputs and threads")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--preset", default="nano")
    p.add_argument("--json", default="runs/bench/latency.json")
    p.set_defaults(fn=cmd_latency)
    p = bench_sub.add_parser("train", help="training samples/s vs ACT at comparable size, FLOP/s vs matmul peak")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128, help="default: the recipes' batch size")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--preset", default="small")
    p.add_argument("--act-dim", type=int, default=None,
                   help="ACT dim_model (sets its size; default: the one whose parameter count is closest to physai's)")
    p.add_argument("--json", default="runs/bench/train.json")
    p.set_defaults(fn=cmd_train)
    from physai.recipes.bench_policies import add_parser

    add_parser(bench_sub)
