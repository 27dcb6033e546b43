"""What the benchmarks share: call timing as percentiles, parameter counts, and the physai policy
they measure. That policy is the library's default configuration (what the recipes train) at a
chosen size, so a benchmark's figures are the shipped model's, with only the token layout
overridable for side-by-side variants.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np
import torch

from physai.config import policy_config
from physai.heads.base import HeadConfig
from physai.policy import Policy
from physai.stems import StemConfig


def sync(device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously: a timer must not stop early)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def percentile_ms(fn: Callable[[], Any], n: int, warmup: int = 5, device="cpu") -> dict[str, float]:
    """p50 / p99 / mean wall time of `n` calls of `fn` (after `warmup` untimed ones), in ms."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(n):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        ts.append((time.perf_counter() - t) * 1e3)
    a = np.asarray(ts)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def _physai_policy(embodiments, preset="nano", chunk=8, n_action_steps=1, patch_size: int | None = None,
                   state_token: bool | None = None, **layout) -> Policy:
    """The default configuration (what the recipes train) at `preset` size, in eval mode;
    `patch_size` / `state_token` (stem) and `n_readout` / `readout` (policy) override its token layout."""
    stem = {k: v for k, v in (("patch_size", patch_size), ("state_token", state_token)) if v is not None}
    cfg = policy_config(preset, embodiments=tuple(embodiments), head=HeadConfig(chunk_size=chunk),
                        n_action_steps=n_action_steps, stem=dataclasses.replace(StemConfig(), **stem), **layout)
    return Policy.build(cfg).eval()
