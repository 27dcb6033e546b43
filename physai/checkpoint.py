"""Policy checkpoints: a directory of `config.json` + `model.safetensors` +
`normalization.safetensors`. Never pickle.

Writes are atomic: everything goes to a temporary sibling directory that is renamed into place,
so a crash mid-save leaves the previous checkpoint intact. Loading validates the format version,
rebuilds the policy from the config, checks every stored embodiment spec against the registered
one (a mismatch is a `SpecMismatchError`), and checks the normalization stats' widths.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

import physai
from physai.config import FORMAT_VERSION, PolicyConfig
from physai.embodiments import EMBODIMENTS, EmbodimentSpec, get_spec
from physai.errors import CheckpointError, ConfigError
from physai.normalization import Normalizer

CONFIG, WEIGHTS, NORM = "config.json", "model.safetensors", "normalization.safetensors"


def atomic_write_dir(directory: str | Path, write_fn) -> Path:
    """Call write_fn(tmp_dir) then atomically replace `directory` with it."""
    d = Path(directory)
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.tmp-", dir=d.parent))
    try:
        write_fn(tmp)
        for f in tmp.rglob("*"):  # flush file contents before the rename makes them visible
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if d.exists():
            old = d.parent / f".{d.name}.old-{os.getpid()}"
            d.rename(old)
        tmp.rename(d)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return d


def save_policy(policy, directory: str | Path) -> Path:
    meta = {
        "format": "physai-policy",
        "format_version": FORMAT_VERSION,
        "physai_version": physai.__version__,
        "config": policy.config.to_dict(),
        "specs": {e: s.to_dict() for e, s in policy.specs.items()},
    }

    def write(tmp: Path):
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2))
        save_model(policy, str(tmp / WEIGHTS), metadata={"format": "physai-policy"})
        policy.normalizer.save(tmp / NORM)

    return atomic_write_dir(directory, write)


def read_config(directory: str | Path) -> dict:
    d = Path(directory)
    for f in (CONFIG, WEIGHTS, NORM):
        if not (d / f).is_file():
            raise CheckpointError(f"checkpoint '{d}' is missing {f}")
    try:
        meta = json.loads((d / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint '{d}': {CONFIG} is not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != "physai-policy":
        raise CheckpointError(f"checkpoint '{d}': not a physai policy")
    v = meta.get("format_version")
    if type(v) is not int or v != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint '{d}': format_version {v!r} unsupported (expected the integer {FORMAT_VERSION})")
    for key in ("config", "specs"):
        if not isinstance(meta.get(key), dict):
            raise CheckpointError(f"checkpoint '{d}': {CONFIG} needs an object '{key}', got "
                                  f"{type(meta.get(key)).__name__ if key in meta else 'nothing'}")
    return meta


def load_policy(directory: str | Path, device: str | torch.device = "cpu", backend: str | None = None,
                strict_spec: bool = True):
    from physai.policy import Policy

    d = Path(directory)
    meta = read_config(d)
    try:
        config = PolicyConfig.from_dict(meta["config"])
    except ConfigError as e:
        raise CheckpointError(f"checkpoint '{d}': config.{e}") from None
    specs: dict[str, EmbodimentSpec] = {}
    for name, sd in meta["specs"].items():
        try:
            stored = EmbodimentSpec.from_dict(sd)
        except ConfigError as e:
            raise CheckpointError(f"checkpoint '{d}': specs.{name}: {e}") from None
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise CheckpointError(f"checkpoint '{d}': specs.{name} is malformed ({type(e).__name__}: {e})") from None
        if strict_spec and name in EMBODIMENTS:
            get_spec(name).check_compatible(stored)  # raises SpecMismatchError
        specs[name] = stored
    norm = Normalizer.load(d / NORM)
    for e, s in specs.items():
        norm.check_dims(e, {"proprio": s.proprio_dim, "action": s.action_dim})
    policy = Policy.build(config, specs=specs, backend=backend, normalizer=norm)
    try:
        missing, unexpected = load_model(policy, str(d / WEIGHTS), strict=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint '{d}': weights do not match the config ({e})") from e
    return policy.to(device)
