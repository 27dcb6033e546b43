"""`physai bench latency`: `select_action` wall time of physai against LeRobot's ACT on the same
observations, in the same process and threads, re-planning on every call so each call is a full
inference. physai is timed eager and after `optimize_for_inference` (traced, frozen graph); the
rows carry p50 / p99 / mean in ms and the physai/ACT ratios. With `variants`, the deployment
path is timed too on the same observations: PyTorch dynamic int8, the ONNX export run by
onnxruntime (fp32) and onnxruntime's dynamic int8 of it; each variant's row also carries its
action agreement with eager fp32 (cosine of the chunks, max |difference| in physical units) and
the body's control period (`budget_ms`). With `pruned` (a `physai prune` checkpoint of the same
model), its eager and traced rows join the table, with their agreement against the unpruned eager
model (pruning changes the weights, so that agreement measures what pruning cost, not a runtime's
error). A measurement, asserted nowhere. A transient progress
bar advances once per model timed (`progress=False` hides it).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from rich.progress import Progress

from physai.baselines import LeRobotBaseline
from physai.bench.common import _physai_policy, n_params, percentile_ms
from physai.embodiments import get_spec
from physai.report import console
from physai.device import pick_device
from physai.errors import ConfigError
from physai.testing import make_obs

VARIANT_NAMES = ("physai int8 (torch dynamic)", "physai ONNX (onnxruntime fp32)",
                 "physai ONNX int8 (onnxruntime dynamic)")  # the deployment rows, in the order timed


def _agreement(ref: list[np.ndarray], out: list[np.ndarray]) -> dict[str, float]:
    a, b = np.stack(ref).reshape(len(ref), -1), np.stack(out).reshape(len(out), -1)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return {"cosine": float(cos.min()), "max_abs_diff": float(np.abs(a - b).max())}


def _cycle(obs: list[dict]) -> Callable[[], dict]:
    """A function returning the next of `obs` on each call, round and round."""
    i = {"k": 0}

    def nxt() -> dict:
        i["k"] += 1
        return obs[i["k"] % len(obs)]

    return nxt


def _variants(pol, emb: str, obs: list[dict], calls: int, threads: int, tmp: str,
              done: Callable[[], None] = lambda: None) -> list[dict[str, Any]]:
    """Rows for int8 / ONNX / ONNX int8 of `pol` on `obs`, with agreement against eager fp32;
    `done()` after each one is timed."""
    from physai.export import build_variant

    with torch.inference_mode():
        ref = [pol.predict_action_chunk(o, emb).numpy() for o in obs]
    q, onnx32, onnx8 = (build_variant(pol, emb, v, tmp, threads) for v in ("int8", "onnx", "onnx-int8"))
    runs = dict(zip(VARIANT_NAMES, (lambda o: q.predict_action_chunk(o, emb).numpy(),
                                    onnx32.runtime.predict_action_chunk,  # the runtime itself
                                    onnx8.runtime.predict_action_chunk)))
    rows = []
    for name, fn in runs.items():
        nxt = _cycle(obs)
        with torch.inference_mode():
            t = percentile_ms(lambda fn=fn: fn(nxt()), calls)
            agree = _agreement(ref, [fn(o) for o in obs])
        rows.append({"embodiment": emb, "policy": name, "params_M": n_params(pol) / 1e6, **t, **agree})
        done()
    return rows


def bench_latency(threads: int = 2, calls: int = 100, chunk: int = 8, preset: str = "nano",
                  checkpoint: str | None = None, variants: bool = True, progress: bool = True,
                  device=None, pruned: str | None = None) -> dict[str, Any]:
    """Rows of (embodiment, policy, params_M, p50_ms, p99_ms, mean_ms[, cosine, max_abs_diff],
    budget_ms) for car and G1 (or the bodies of `checkpoint`), physai and ACT on `device`
    (`physai.device.pick_device`; the deployment variants are CPU runtimes and run only on the
    CPU); a progress bar while it runs."""
    import dataclasses
    import tempfile

    from physai.policy import Policy

    torch.set_num_threads(threads)
    dev = pick_device(device)
    variants = variants and dev.type == "cpu"
    rows = []
    trained = Policy.from_pretrained(checkpoint, device=dev) if checkpoint else None
    if pruned and trained is None:
        raise ConfigError("bench latency --pruned needs --checkpoint (the model it was pruned from)")
    small = Policy.from_pretrained(pruned, device=dev) if pruned else None
    for pol in (trained, small):
        if pol is not None:  # re-plan every call: full inference each time
            pol.config = dataclasses.replace(pol.config, n_action_steps=1, temporal_ensemble=None)
    if small is not None and set(small.config.embodiments) != set(trained.config.embodiments):
        raise ConfigError(f"bench latency --pruned drives {sorted(small.config.embodiments)}, the checkpoint "
                          f"{sorted(trained.config.embodiments)}")
    bodies = tuple(trained.config.embodiments if trained is not None else ("car", "g1"))
    with tempfile.TemporaryDirectory(prefix="physai-latency-") as tmp, \
            Progress(console=console, transient=True, disable=not progress) as prog:  # exported files: removed after
        task = prog.add_task("bench latency", total=len(bodies) * (3 + (len(VARIANT_NAMES) if variants else 0)
                                                                    + (2 if small is not None else 0)))
        for emb in bodies:
            prog.update(task, description=f"bench latency {emb}")
            rows += _latency_rows(trained, emb, preset, chunk, calls, threads, variants, tmp,
                                  done=lambda: prog.advance(task), device=dev, pruned=small)
    if trained is not None:
        chunk = trained.config.head.chunk_size
    return {"threads": threads, "device": str(dev), "calls": calls, "chunk_size": chunk, "n_action_steps": 1, "rows": rows,
            "checkpoint": checkpoint, "pruned": pruned}


def _pruned_rows(small, emb: str, obs: list[dict], ref: list[np.ndarray], calls: int, device,
                 done: Callable[[], None]) -> list[dict[str, Any]]:
    """Eager and traced rows of the pruned model, with agreement against the unpruned eager `ref`."""
    small.eval()
    nxt = _cycle(obs)
    rows = []
    for label, jit in (("eager", False), ("traced", True)):
        small.optimize_for_inference(jit)
        with torch.no_grad():
            t = percentile_ms(lambda: small.select_action(nxt(), emb), calls, device=device)
            agree = _agreement(ref, [small.predict_action_chunk(o, emb).cpu().numpy() for o in obs])
        rows.append({"embodiment": emb, "policy": f"physai pruned ({label})", "params_M": n_params(small) / 1e6,
                     **t, **agree})
        done()
    return rows


def _latency_rows(trained, emb: str, preset: str, chunk: int, calls: int, threads: int, variants: bool, tmp: str,
                  done: Callable[[], None] = lambda: None, device=torch.device("cpu"),
                  pruned=None) -> list[dict[str, Any]]:
    """The rows of one body (see `bench_latency`); `done()` after each model is timed."""
    rows: list[dict[str, Any]] = []
    spec = trained.specs[emb] if trained is not None else get_spec(emb)
    rng = np.random.default_rng(0)
    obs = [make_obs(spec, rng) for _ in range(16)]
    pol = trained.eval() if trained is not None else _physai_policy([emb], preset, chunk, n_action_steps=1).to(device)
    pol.optimize_for_inference(False)
    chunk = pol.config.head.chunk_size
    act = LeRobotBaseline("act", spec, chunk_size=chunk, n_action_steps=1).eval().to(device)  # ACT defaults otherwise
    nxt = _cycle(obs)

    name = pol.config.preset if trained is not None else preset
    with torch.inference_mode():
        e = percentile_ms(lambda: pol.select_action(nxt(), emb), calls, device=device)
        done()
        a = percentile_ms(lambda: act.select_action(nxt()), calls, device=device)
        done()
    pol.optimize_for_inference()  # traced + frozen graph (built in the warm-up calls)
    with torch.no_grad():
        p = percentile_ms(lambda: pol.select_action(nxt(), emb), calls, device=device)
    done()
    rows.append({"embodiment": emb, "policy": f"physai {name} (eager)", "params_M": n_params(pol) / 1e6, **e})
    rows.append({"embodiment": emb, "policy": f"physai {name}", "params_M": n_params(pol) / 1e6, **p})
    rows.append({"embodiment": emb, "policy": "lerobot ACT", "params_M": n_params(act) / 1e6, **a})
    rows.append({"embodiment": emb, "policy": "ratio physai/ACT", "params_M": float("nan"),
                 "p50_ms": p["p50_ms"] / a["p50_ms"], "p99_ms": p["p99_ms"] / a["p99_ms"], "mean_ms": p["mean_ms"] / a["mean_ms"]})
    if pruned is not None:
        pol.optimize_for_inference(False)
        with torch.inference_mode():
            ref = [pol.predict_action_chunk(o, emb).cpu().numpy() for o in obs]
        rows += _pruned_rows(pruned, emb, obs, ref, calls, device, done)
    if variants:
        pol.optimize_for_inference(False)
        var = _variants(pol, emb, obs, calls, threads, tmp, done)
        rows += var
        best = min(var, key=lambda r: r["p50_ms"])
        rows.append({"embodiment": emb, "policy": f"ratio {best['policy']} / eager", "params_M": float("nan"),
                     "p50_ms": best["p50_ms"] / e["p50_ms"], "p99_ms": best["p99_ms"] / e["p99_ms"],
                     "mean_ms": best["mean_ms"] / e["mean_ms"]})
        rows.append({"embodiment": emb, "policy": f"ratio {best['policy']} / ACT", "params_M": float("nan"),
                     "p50_ms": best["p50_ms"] / a["p50_ms"], "p99_ms": best["p99_ms"] / a["p99_ms"],
                     "mean_ms": best["mean_ms"] / a["mean_ms"]})
    for r in rows:
        r["budget_ms"] = 1e3 / spec.control_hz
    return rows
