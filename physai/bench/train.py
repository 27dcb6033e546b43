"""`physai bench train`: training samples/s of physai against LeRobot's ACT of the closest
parameter count, on the same batches with AdamW and the same threads, and physai's achieved FLOP/s
as a fraction of the fp32 matmul peak measured in the same run (FLOPs counted by torch's
`FlopCounterMode` on one training step, train mode). Several physai token layouts are timed side by
side (`TRAIN_VARIANTS`). A measurement, asserted nowhere. A transient progress bar advances once
per model timed (`progress=False` hides it).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch.utils.flop_counter import FlopCounterMode

from physai.baselines import LeRobotBaseline
from physai.bench.common import _physai_policy, n_params, sync
from physai.device import pick_device
from physai.embodiments import get_spec
from physai.report import console
from physai.testing import make_batch


def matmul_peak_flops(threads: int, sizes: tuple[int, ...] = (1024, 2048), windows: int = 5, reps: int = 6,
                      device="cpu") -> float:
    """The best fp32 matmul FLOP/s over several sizes and timing windows: a peak, so another process
    briefly sharing the core lowers one window, not the figure."""
    torch.set_num_threads(threads)
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        for _ in range(2):
            a @ b
        for _ in range(windows):
            sync(device)
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            sync(device)
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
    dev = next(model.parameters()).device
    sync(dev)
    t = time.perf_counter()
    for b in batches[2:]:
        loss, _ = model(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync(dev)
    return sum(len(b["action"]) for b in batches[2:]) / (time.perf_counter() - t)


# physai variants `bench train` times: (label, token-layout overrides). The default layout, which the
# recipes train (2x2 patches of 32 px, one state token, 4 physical tokens pooled from the trunk's
# output: 5 trunk tokens); "p32 registers": the same patches with the embodiment, command and proprio
# tokens and 4 registers riding through the trunk (11); "p16 registers": the recipes' layout before
# it, 4x4 patches of 16 px and 8 registers (27).
TRAIN_VARIANTS = (("", {}),
                  ("p32 registers", {"patch_size": 32, "state_token": False, "readout": "trunk", "n_readout": 4}),
                  ("p16 registers", {"patch_size": 16, "state_token": False, "readout": "trunk", "n_readout": 8}))


def _train_flops_per_sample(model, batch) -> float:
    """FLOPs of one training step (forward + backward, train mode) per sample."""
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
    best, best_gap = dims[0], float("inf")
    for d in dims:
        n = n_params(LeRobotBaseline("act", spec, chunk_size=chunk, n_action_steps=chunk, dim_model=d, dim_feedforward=4 * d))
        if abs(n - params) < best_gap:
            best, best_gap = d, abs(n - params)
        if n > params:  # grows with d: nothing further is closer
            break
    return best


def bench_train(threads: int = 2, batch_size: int = 128, steps: int = 4, preset: str = "small", chunk: int = 8,
                act_dim_model: int | None = None, variants=TRAIN_VARIANTS, progress: bool = True,
                device=None) -> dict[str, Any]:
    """Training samples/s of physai `preset` (each token variant) and of LeRobot ACT with the
    parameter count closest to physai's (or `act_dim_model`), plus physai's achieved FLOP/s as a
    fraction of the fp32 matmul peak measured in the same run. Same batches, AdamW, same threads,
    same `device` (`physai.device.pick_device`: CUDA when available); a progress bar while it runs."""
    torch.set_num_threads(threads)
    dev = pick_device(device)
    spec = get_spec("car")
    pols = {f"physai {preset}" + (f" {label}" if label else ""): _physai_policy(["car"], preset, chunk, 1, **kw).to(dev)
            for label, kw in variants}
    if act_dim_model is None:
        act_dim_model = match_act_dim(spec, chunk, int(np.mean([n_params(p) for p in pols.values()])))
    act = LeRobotBaseline("act", spec, chunk_size=chunk, n_action_steps=chunk, dim_model=act_dim_model,
                          dim_feedforward=4 * act_dim_model).to(dev)
    seeds = iter(range(10_000))
    bp = lambda: make_batch(spec, B=batch_size, H=chunk, seed=next(seeds))
    ba = lambda: make_batch(spec, B=batch_size, H=chunk, seed=next(seeds), next_obs=False)
    act_name = f"lerobot ACT d{act_dim_model}"
    rows = []
    with Progress(console=console, transient=True, disable=not progress) as prog:
        task = prog.add_task("bench train: fp32 matmul peak", total=1 + len(pols))
        peak = matmul_peak_flops(threads, device=dev)
        prog.update(task, description=f"bench train: {act_name}")
        act_flops = _train_flops_per_sample(act, ba())
        sps_a = _train_rate(act, ba, steps)
        prog.advance(task)
        for name, pol in pols.items():
            prog.update(task, description=f"bench train: {name}")
            flops = _train_flops_per_sample(pol, bp())
            sps = _train_rate(pol, bp, steps)
            tokens = pol.stems["car"].num_tokens + (pol.config.n_readout if pol.config.readout == "trunk" else 0)
            rows.append({"policy": name, "params_M": n_params(pol) / 1e6, "tokens": tokens, "samples_per_s": sps,
                         "GFLOP_per_sample": flops / 1e9, "achieved_GFLOPs": flops * sps / 1e9,
                         "fraction_of_matmul_peak": flops * sps / peak, "ratio_vs_ACT": sps / sps_a})
            prog.advance(task)
    rows.append({"policy": act_name, "params_M": n_params(act) / 1e6, "samples_per_s": sps_a,
                 "GFLOP_per_sample": act_flops / 1e9, "achieved_GFLOPs": act_flops * sps_a / 1e9,
                 "fraction_of_matmul_peak": act_flops * sps_a / peak, "ratio_vs_ACT": 1.0})
    return {"threads": threads, "device": str(dev), "batch_size": batch_size, "steps": steps, "chunk_size": chunk,
            "act_dim_model": act_dim_model, "matmul_peak_GFLOPs": peak / 1e9, "rows": rows}
