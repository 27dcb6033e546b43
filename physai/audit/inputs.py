"""Hostile-input audit: malformed observations and tampered checkpoints (issue 12's counts).

    python -m physai.audit.inputs [--observations 2000] [--json audit_inputs.json]

1. Malformed observations: seeded random mutations of valid car and G1 observations (missing or
   unknown keys, wrong ranks, shapes and dtypes, NaN/inf, huge finite values, strings, None,
   nested lists, bad command dicts) through `Policy.select_action` and `predict_action_chunk`.
   Each outcome is a typed physai error, another exception (a bug), or an action; every action
   is checked finite and within the spec's bounds, and substituted actions are counted.
2. Tampered checkpoints: every config field set to hostile values (0, -1, huge, NaN, inf, wrong
   types), dropped and unknown keys, format/spec tampering, corrupted or NaN weights and stats,
   each loaded in a forked child; outcomes as above, plus the child's peak RSS (the worst case is
   what an attacker's checkpoint can make a loader allocate) and a 60 s timeout.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from physai.errors import PhysaiError  # noqa: E402
from physai.policy import Policy  # noqa: E402
from physai.testing import SyntheticSource, make_obs, tiny_config  # noqa: E402

console = Console()
HOSTILE = [0, -1, 1e8, 100_000, 65536, float("nan"), float("inf"), -1e30, "x", None, [], {}, True, [1, 2], 0.5]


# ---- 1. malformed observations ----------------------------------------------------------------
def _mutations(obs: dict, spec, rng: np.random.Generator) -> dict:
    o = copy.deepcopy(obs)
    k = rng.choice(["image", "proprio", "command", "keys"])
    r = rng.integers(14)
    if k == "keys":
        if r < 5:
            o.pop(rng.choice(["image", "proprio", "command"]))
        else:
            o[str(rng.choice(["extra", "images", "state", "cmd"]))] = np.zeros(3)
        return o
    v = o[k] if k != "command" else np.asarray(spec.encode_command(o["command"]))
    if k == "command" and r < 4:  # a bad command dict
        d = dict(obs["command"])
        bad = [("bogus", 1.0), (next(iter(d)), float("nan")), (next(iter(d)), 3e38), (next(iter(d)), "left"),
               (next(iter(d)), None), (next(iter(d)), [1, 2])][rng.integers(6)]
        d[bad[0]] = bad[1]
        o["command"] = d
        return o
    choices = [
        lambda a: a.reshape(-1)[: max(1, a.size - 1)],
        lambda a: np.concatenate([a.reshape(-1), a.reshape(-1)]),
        lambda a: a[None, None, None],
        lambda a: a.astype(np.float64) * np.nan,
        lambda a: np.full(a.shape, np.inf, np.float32),
        lambda a: np.full(a.shape, float(rng.choice([1e30, -1e30, 3e38, 1e10])), np.float32),
        lambda a: a.astype(np.complex64),
        lambda a: a.astype(bool),
        lambda a: a.astype(object),
        lambda a: "fast",
        lambda a: None,
        lambda a: a.tolist(),
        lambda a: np.zeros((0,) + a.shape[1:], a.dtype),
        lambda a: a.astype(np.float32) * 300.0 if k == "image" else a.astype(np.int64),
    ]
    o[k] = choices[r](np.asarray(v))
    return o


def audit_observations(n: int, seed: int = 0) -> dict:
    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("car", "g1"))).eval()
    SyntheticSource([pol.specs["car"], pol.specs["g1"]]).fit_normalizer(pol)
    rng = np.random.default_rng(seed)
    out = {"cases": 0, "typed": 0, "other": 0, "accepted": 0, "nan_or_out_of_bounds": 0, "substituted": 0,
           "other_examples": []}
    for i in range(n):
        emb = ("car", "g1")[i % 2]
        spec = pol.specs[emb]
        obs = _mutations(make_obs(spec, rng), spec, rng)
        pol.reset()
        before = pol.nonfinite_actions.get(emb, 0)
        out["cases"] += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = pol.select_action(obs, emb) if i % 4 < 2 else pol.predict_action_chunk(obs, emb)
        except PhysaiError:
            out["typed"] += 1
            continue
        except Exception as e:  # noqa: BLE001 - counting what escapes is the point
            out["other"] += 1
            out["other_examples"].append(f"{type(e).__name__}: {e}"[:200])
            continue
        out["accepted"] += 1
        lo, hi = torch.tensor(spec.low), torch.tensor(spec.high)
        if not (torch.isfinite(a).all() and (a >= lo).all() and (a <= hi).all()):
            out["nan_or_out_of_bounds"] += 1
        out["substituted"] += int(pol.nonfinite_actions.get(emb, 0) > before)
    out["other_examples"] = out["other_examples"][:10]
    return out


# ---- 2. tampered checkpoints ------------------------------------------------------------------
def _leaves(d: dict, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,)


def _set(d: dict, path: tuple, value) -> None:
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


def _cases(meta: dict):
    """(name, edit of the config.json dict or None, edit of the checkpoint directory or None)."""
    for path in _leaves(meta["config"]):
        for v in HOSTILE:
            yield f"config.{'.'.join(path)}={v!r}", (lambda m, p=path, v=v: _set(m["config"], p, v)), None
        yield f"drop config.{'.'.join(path)}", (lambda m, p=path: _drop(m["config"], p)), None
    for big in ("width", "depth"):
        for v in (4096, 8192, 16384):
            yield f"config.trunk.{big}={v}", (lambda m, b=big, v=v: _set(m["config"], ("trunk", b), v)), None
    yield "config.stem.image_weights=../../../../etc/passwd", (lambda m: _set(m["config"], ("stem", "image_weights"), "../../../../etc/passwd")), None
    yield "config.stem.image_model=hf-hub:timm/resnet18", (lambda m: _set(m["config"], ("stem", "image_model"), "hf-hub:timm/resnet18.a1_in1k")), None
    for k in ("config", "specs", "format", "format_version"):
        yield f"drop {k}", (lambda m, k=k: m.pop(k)), None
        for v in ("1", 2, None, [], 1.0):
            yield f"{k}={v!r}", (lambda m, k=k, v=v: m.__setitem__(k, v)), None
    yield "unknown top-level config key", (lambda m: m["config"].__setitem__("bogus", 1)), None
    for e in ("car", "g1"):
        for f in ("action_low", "action_high", "proprio_names", "cameras", "name", "control_hz"):
            for v in (None, [], "x", -1, [float("nan")]):
                yield f"specs.{e}.{f}={v!r}", (lambda m, e=e, f=f, v=v: m["specs"][e].__setitem__(f, v)), None
    for name, fn in _file_edits():
        yield name, None, fn


def _drop(d: dict, path: tuple) -> None:
    for k in path[:-1]:
        d = d[k]
    d.pop(path[-1])


def _file_edits():
    from safetensors import safe_open
    from safetensors.numpy import load_file as load_np, save_file as save_np
    from safetensors.torch import load_file, save_file

    def truncate(name, keep):
        return lambda d: (d / name).write_bytes((d / name).read_bytes()[:keep])

    def garbage(name):
        return lambda d: (d / name).write_bytes(os.urandom(2048))

    def nan_weights(d):
        t = load_file(str(d / "model.safetensors"))
        k = sorted(t)[len(t) // 2]
        t[k] = torch.full_like(t[k], float("nan"))
        save_file(t, str(d / "model.safetensors"), metadata={"format": "physai-policy"})

    def resized_weight(d):
        t = load_file(str(d / "model.safetensors"))
        k = sorted(t)[0]
        t[k] = torch.zeros(*[s + 1 for s in t[k].shape])
        save_file(t, str(d / "model.safetensors"), metadata={"format": "physai-policy"})

    def norm_edit(fn):
        def edit(d):
            p = d / "normalization.safetensors"
            with safe_open(str(p), framework="numpy") as f:
                meta = f.metadata()
            arrs = load_np(str(p))
            arrs, meta = fn(arrs, meta)
            save_np(arrs, str(p), metadata=meta)
        return edit

    yield "weights truncated", truncate("model.safetensors", 100)
    yield "weights garbage", garbage("model.safetensors")
    yield "weights NaN", nan_weights
    yield "weight of another shape", resized_weight
    yield "normalization truncated", truncate("normalization.safetensors", 50)
    yield "normalization garbage", garbage("normalization.safetensors")
    yield "config.json garbage", lambda d: (d / "config.json").write_bytes(os.urandom(300))
    yield "config.json not an object", lambda d: (d / "config.json").write_text("[1, 2]")
    for f in ("config.json", "model.safetensors", "normalization.safetensors"):
        yield f"{f} removed", lambda d, f=f: (d / f).unlink()
    yield "stats removed", norm_edit(lambda a, m: ({"__empty__": np.zeros(1, np.float32)}, m))
    yield "stats NaN", norm_edit(lambda a, m: ({k: v * np.nan for k, v in a.items()}, m))
    yield "stats of another width", norm_edit(lambda a, m: ({k: np.zeros(v.shape[0] + 3, v.dtype) for k, v in a.items()}, m))
    yield "stats misnamed", norm_edit(lambda a, m: ({f"x{k}": v for k, v in a.items()}, m))
    yield "modes not JSON", norm_edit(lambda a, m: (a, {**m, "modes": "{not json"}))
    yield "modes unknown", norm_edit(lambda a, m: (a, {**m, "modes": json.dumps({"proprio": "magic"})}))
    yield "modes not a dict", norm_edit(lambda a, m: (a, {**m, "modes": "[1]"}))
    yield "norm format wrong", norm_edit(lambda a, m: (a, {**m, "format": "other"}))


def _load_in_child(ckpt: Path, timeout: float = 60.0) -> tuple[str, str, float]:
    """(outcome, detail, peak RSS MiB) of Policy.from_pretrained in a forked child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                Policy.from_pretrained(ckpt)
            res = ("loaded", "")
        except PhysaiError as e:
            res = ("typed", f"{type(e).__name__}: {e}"[:160])
        except BaseException as e:  # noqa: BLE001
            res = ("other", f"{type(e).__name__}: {e}"[:300])
        os.write(w, json.dumps(res).encode())
        os._exit(0)
    os.close(w)
    t0, status, rusage = time.time(), None, None
    while time.time() - t0 < timeout:
        got, status, rusage = os.wait4(pid, os.WNOHANG)
        if got:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        _, status, rusage = os.wait4(pid, 0)
        os.close(r)
        return "other", f"timeout after {timeout:.0f} s", rusage.ru_maxrss / 1024
    data = os.read(r, 65536)
    os.close(r)
    if not data:
        return "other", f"child died (status {status})", rusage.ru_maxrss / 1024
    outcome, detail = json.loads(data)
    return outcome, detail, rusage.ru_maxrss / 1024


def audit_checkpoints(work: Path) -> dict:
    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("car", "g1")))
    SyntheticSource([pol.specs["car"], pol.specs["g1"]]).fit_normalizer(pol)
    src = work / "ok"
    pol.save_pretrained(src)
    meta0 = json.loads((src / "config.json").read_text())
    base = _load_in_child(src)
    out = {"cases": 0, "typed": 0, "other": 0, "loaded": 0, "baseline_rss_mib": base[2], "peak_rss_mib": 0.0,
           "peak_case": "", "other_examples": [], "loaded_cases": []}
    for name, edit_meta, edit_dir in _cases(meta0):
        d = work / "case"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(src, d)
        if edit_meta is not None:
            m = copy.deepcopy(meta0)
            try:
                edit_meta(m)
            except (KeyError, TypeError):
                continue
            (d / "config.json").write_text(json.dumps(m))
        if edit_dir is not None:
            edit_dir(d)
        outcome, detail, rss = _load_in_child(d)
        out["cases"] += 1
        out[outcome] += 1
        if rss > out["peak_rss_mib"]:
            out["peak_rss_mib"], out["peak_case"] = rss, name
        if outcome == "other":
            out["other_examples"].append(f"{name}: {detail}")
        if outcome == "loaded":
            out["loaded_cases"].append(name)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--observations", type=int, default=2000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    obs = audit_observations(args.observations)
    with tempfile.TemporaryDirectory() as tmp:
        ck = audit_checkpoints(Path(tmp))
    t = Table(title="hostile-input audit", header_style="bold")
    for c in ("input", "cases", "typed errors", "other errors", "accepted", "NaN / out-of-bounds actions", "notes"):
        t.add_column(c)
    t.add_row("malformed observations", str(obs["cases"]), str(obs["typed"]), str(obs["other"]), str(obs["accepted"]),
              str(obs["nan_or_out_of_bounds"]), f"{obs['substituted']} accepted ones had NaN actions substituted")
    t.add_row("tampered checkpoints", str(ck["cases"]), str(ck["typed"]), str(ck["other"]), str(ck["loaded"]), "-",
              f"peak RSS {ck['peak_rss_mib']:.0f} MiB ({ck['peak_case']}); a clean load {ck['baseline_rss_mib']:.0f} MiB")
    console.print(t)
    for e in obs["other_examples"] + ck["other_examples"]:
        console.print(f"[red]other:[/] {e}")
    console.print(f"loaded despite tampering (harmless edits): {ck['loaded_cases']}")
    console.print(f"{time.time() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"observations": obs, "checkpoints": ck}, indent=2))
    return 0 if obs["other"] == 0 and ck["other"] == 0 and obs["nan_or_out_of_bounds"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
