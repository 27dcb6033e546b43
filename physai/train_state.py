"""Resumable training state on disk, without pickle.

A training checkpoint is a directory: the policy (`save_pretrained` layout), `ema/` (EMA
weights, same layout), `optimizer.safetensors` (every optimizer state tensor, flattened by
parameter index) and `trainer_state.json` (step, optimizer param-group hyper-parameters,
scheduler, data-sampler state, RNG states of python / numpy / torch, best metric). It is written
atomically (temporary directory + rename) so a SIGKILL mid-save never corrupts the last one.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from physai.checkpoint import atomic_write_dir, save_policy
from physai.errors import CheckpointError


def rng_state() -> dict[str, Any]:
    st = {"python": _jsonable(random.getstate()), "numpy": _jsonable(np.random.get_state()),
          "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        st["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    random.setstate(_tuplify(st["python"]))
    n = st["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(st["torch"], dtype=torch.uint8))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in st["cuda"]])


def _jsonable(x):
    if isinstance(x, (tuple, list)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, list) else x


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        pid, k = name.split(".", 1)
        state.setdefault(int(pid), {})[k] = t
    for name, v in meta["scalars"].items():
        pid, k = name.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_train_state(directory: str | Path, policy, ema_policy, optimizer, scheduler, sampler_state: dict,
                     step: int, extra: dict[str, Any]) -> Path:
    def write(tmp: Path):
        save_policy(policy, tmp / "policy")
        if ema_policy is not None:
            save_policy(ema_policy, tmp / "ema")
        tensors, meta = optimizer_tensors(optimizer)
        save_file(tensors or {"__empty__": torch.zeros(1)}, str(tmp / "optimizer.safetensors"))
        state = {"step": step, "optimizer": meta, "scheduler": scheduler.state_dict(), "sampler": sampler_state,
                 "rng": rng_state(), **extra}
        (tmp / "trainer_state.json").write_text(json.dumps(state))

    return atomic_write_dir(directory, write)


def load_train_state(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    d = Path(directory)
    try:
        state = json.loads((d / "trainer_state.json").read_text())
        tensors = load_file(str(d / "optimizer.safetensors"))
    except Exception as e:
        raise CheckpointError(f"training checkpoint '{d}' is unreadable: {e}") from e
    tensors.pop("__empty__", None)
    return state, tensors


def prune(ckpt_root: Path, keep_last: int) -> None:
    steps = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir())
    for p in steps[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(p, ignore_errors=True)
