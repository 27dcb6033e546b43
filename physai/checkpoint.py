"""Policy checkpoints: a directory of `config.json` + `model.safetensors` +
`normalization.safetensors`. Never pickle.

Writes are atomic: everything goes to a temporary sibling directory that is renamed into place,
so a crash mid-save leaves the previous checkpoint intact (`clean_stale` removes what a killed save
leaves behind). A checkpoint is untrusted input. Loading validates the format version and the
config against hard size limits (`LOAD_LIMITS`), builds the policy on the meta device (no memory)
and checks every tensor shape against the `model.safetensors` header before allocating anything,
opens only the checkpoint's own three files (a config's `stem.image_weights` path is not read: the
trained weights are in `model.safetensors`) and never the network (timm hub names are refused),
checks every stored embodiment spec against the registered one (`SpecMismatchError`), and requires
finite weights and finite normalization stats for every normalized key (missing stats are an error
unless the config's mode for that key is `identity`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model

import physai
from physai.config import FORMAT_VERSION, PolicyConfig
from physai.embodiments import EMBODIMENTS, EmbodimentSpec, get_spec
from physai.errors import CheckpointError, ConfigError
from physai.fs import pid_alive
from physai.normalization import Normalizer

CONFIG, WEIGHTS, NORM = "config.json", "model.safetensors", "normalization.safetensors"

# Hard limits on what a checkpoint's config may ask for, checked before anything is built: far above
# every preset (large: width 1024, depth 24), far below what would exhaust a machine or hang a load.
LOAD_LIMITS: dict[str, int | float] = {
    "trunk.width": 16384, "trunk.depth": 256, "trunk.heads": 256, "trunk.mlp_ratio": 16,
    "head.chunk_size": 1024, "head.depth": 64, "head.heads": 256, "head.n_bins": 65536, "head.flow_steps": 1000,
    "head.reflex_hidden": 16384, "stem.n_obs_steps": 64, "stem.patch_size": 4096, "n_readout": 1024,
    "world_model_depth": 64, "fsq_vocabulary": 2 ** 20, "embodiments": 64,
}


def clean_stale(parent: str | Path, name: str | None = None) -> list[str]:
    """Undo what killed `atomic_write_dir` calls left in `parent` (for `name`, or every name):
    `.X.tmp-PID-*` (an unfinished write: removed) and `.X.old-PID` (the previous `X`, moved aside
    just before the new one was renamed in: put back if `X` is missing, else removed), for PIDs no
    longer alive. Returns what was done, one line each."""
    parent, done = Path(parent), []
    if not parent.is_dir():
        return done
    for p in parent.glob(f".{name or '*'}.tmp-*"):
        pid = p.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if p.is_dir() and not (pid.isdigit() and pid_alive(int(pid))):  # (no pid: written before PIDs were named)
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed unfinished {p.name}")
    for p in parent.glob(f".{name or '*'}.old-*"):
        target, pid = p.name[1:].rsplit(".old-", 1)
        if not p.is_dir() or (pid.isdigit() and pid_alive(int(pid))):
            continue
        if not (parent / target).exists():
            p.rename(parent / target)
            done.append(f"restored {target} from {p.name}")
        else:
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p.name}")
    return done


def atomic_write_dir(directory: str | Path, write_fn) -> Path:
    """Call write_fn(tmp_dir) then atomically replace `directory` with it (leftovers of killed
    writes of the same name are cleaned first, see `clean_stale`)."""
    d = Path(directory)
    d.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(d.parent, d.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.tmp-{os.getpid()}-", dir=d.parent))
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


def save_policy(policy, directory: str | Path, training: dict | None = None) -> Path:
    """Write the checkpoint atomically, with its model card (`physai.card`; `training` says what
    it was trained on)."""
    from physai.card import card_data, write_card

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
        write_card(tmp, card_data(policy, training))

    return atomic_write_dir(directory, write)


def read_config(directory: str | Path) -> dict:
    d = Path(directory)
    for f in (CONFIG, WEIGHTS, NORM):
        if not (d / f).is_file():
            raise CheckpointError(f"checkpoint '{d}' is missing {f}")
    try:
        meta = json.loads((d / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint '{d}': {CONFIG} is not valid JSON ({e})") from None
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


def check_limits(config: PolicyConfig, where: str = "config") -> None:
    """CheckpointError naming the first setting beyond `LOAD_LIMITS`."""
    c = config
    values = {
        "trunk.width": c.trunk.width, "trunk.depth": c.trunk.depth, "trunk.heads": c.trunk.heads,
        "trunk.mlp_ratio": c.trunk.mlp_ratio, "head.chunk_size": c.head.chunk_size, "head.depth": c.head.depth,
        "head.heads": c.head.heads, "head.n_bins": c.head.n_bins, "head.flow_steps": c.head.flow_steps,
        "head.reflex_hidden": c.head.reflex_hidden, "stem.n_obs_steps": c.stem.n_obs_steps,
        "stem.patch_size": c.stem.patch_size, "n_readout": c.n_readout, "world_model_depth": c.world_model_depth,
        "fsq_vocabulary": math.prod(c.fsq_levels) if c.fsq_levels else 0, "embodiments": len(c.embodiments),
    }
    for k, v in values.items():
        if not isinstance(v, (int, float)) or not v <= LOAD_LIMITS[k]:
            raise CheckpointError(f"{where}.{k} = {v!r} is beyond the load limit {LOAD_LIMITS[k]} "
                                  "(physai.checkpoint.LOAD_LIMITS)")
    if c.world_model_depth < 1 or any(not isinstance(x, int) or x < 2 for x in c.fsq_levels) or not c.fsq_levels:
        raise CheckpointError(f"{where}: world_model_depth must be >= 1 and fsq_levels integers >= 2")


def weights_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header (reads the header only, no tensor data)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"'{path}' is not a readable safetensors file ({type(e).__name__}: {e})") from None


def _check_shapes(d: Path, config: PolicyConfig, specs: dict[str, EmbodimentSpec], backend: str | None) -> None:
    """Build the policy on the meta device and compare its tensors with the weights file's header."""
    from physai.policy import Policy

    header = weights_header(d / WEIGHTS)
    try:
        with torch.device("meta"):
            probe = Policy.build(config, specs=specs, backend=backend)
    except (ConfigError, CheckpointError):
        raise
    except Exception as e:
        raise CheckpointError(f"checkpoint '{d}': the config does not build a policy ({type(e).__name__}: {e})") from None
    expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    missing = sorted(set(expected) - set(header))
    extra = sorted(set(header) - set(expected))
    wrong = sorted(k for k in set(expected) & set(header) if expected[k] != header[k])
    if missing or extra or wrong:
        k = (wrong or missing or extra)[0]
        detail = (f"'{k}' is {list(header[k])} in {WEIGHTS} but the config makes {list(expected[k])}" if wrong else
                  f"{WEIGHTS} lacks '{k}' (and {len(missing) - 1} more)" if missing else
                  f"{WEIGHTS} has '{k}' that the config does not make (and {len(extra) - 1} more)")
        raise CheckpointError(f"checkpoint '{d}': weights do not match the config: {detail}")


def _check_norm(d: Path, norm: Normalizer, specs: dict[str, EmbodimentSpec], config: PolicyConfig) -> None:
    for e, s in specs.items():
        norm.check_dims(e, {"proprio": s.proprio_dim, "action": s.action_dim})
    for e, key, mode in norm.missing(specs, config.residual_actions)[:1]:
        raise CheckpointError(
            f"checkpoint '{d}': {NORM} has no '{key}' stats for '{e}' but its mode is '{mode}'; a policy without "
            f"them would run on unnormalized values. Restore the stats, or save a policy whose config says "
            f"{'proprio_norm' if key == 'proprio' else 'action_norm'}='identity'")
    for e, keys in norm.stats.items():
        for key, stats in keys.items():
            for stat, arr in stats.items():
                if not np.isfinite(arr).all():
                    raise CheckpointError(f"checkpoint '{d}': {NORM} '{e}/{key}/{stat}' has NaN/inf values")


def load_policy(directory: str | Path, device: str | torch.device = "cpu", backend: str | None = None,
                strict_spec: bool = True):
    from physai.policy import Policy

    d = Path(directory)
    meta = read_config(d)
    try:
        config = PolicyConfig.from_dict(meta["config"])
    except ConfigError as e:
        raise CheckpointError(f"checkpoint '{d}': config.{e}") from None
    check_limits(config, f"checkpoint '{d}': config")
    if config.stem.image_weights is not None:  # never opened on load: model.safetensors has the weights
        config = dataclasses.replace(config, stem=dataclasses.replace(config.stem, image_weights=None))
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
    if len(specs) > LOAD_LIMITS["embodiments"]:
        raise CheckpointError(f"checkpoint '{d}': {len(specs)} specs is beyond the load limit {LOAD_LIMITS['embodiments']}")
    norm = Normalizer.load(d / NORM)
    _check_norm(d, norm, {e: specs.get(e) or get_spec(e) for e in config.embodiments}, config)
    _check_shapes(d, config, specs, backend)  # before anything is allocated
    policy = Policy.build(config, specs=specs, backend=backend, normalizer=norm)
    try:
        load_model(policy, str(d / WEIGHTS), strict=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint '{d}': weights do not match the config ({e})") from e
    for name, t in policy.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"checkpoint '{d}': {WEIGHTS} tensor '{name}' has NaN/inf values")
    return policy.to(device)
