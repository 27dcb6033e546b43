"""`physai bench latency`: `select_action` wall time of physai against LeRobot's ACT on the same
observations, in the same process and threads, re-planning on every call so each call is a full
inference. physai is timed eager and after `optimize_for_inference` (traced, frozen graph); the
rows carry p50 / p99 / mean in ms and the physai/ACT ratios. A measurement, asserted nowhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from physai.baselines import LeRobotBaseline
from physai.bench.common import _physai_policy, n_params, percentile_ms
from physai.embodiments import get_spec
from physai.testing import make_obs


def bench_latency(threads: int = 2, calls: int = 100, chunk: int = 8, preset: str = "nano") -> dict[str, Any]:
    """Rows of (embodiment, policy, params_M, p50_ms, p99_ms, mean_ms) for car and G1."""
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
