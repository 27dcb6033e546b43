"""The model factory end to end, as library functions the CLI calls: record the datasets a
recipe needs (cached), build the loader and policy, train, and evaluate closed loop against the
expert. `physai train`, `physai eval` and `physai demo` are thin wrappers around these.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from physai.errors import CheckpointError, ConfigError
from physai.sim.suite import embodiment_of


def env_kwargs_for(env_id: str, seconds: float) -> dict[str, Any]:
    if embodiment_of(env_id) == "car":
        return {"config": {"duration": seconds}}
    return {"episode_seconds": seconds, "render_images": True}


def ensure_dataset(env_id: str, episodes: int, root: str | Path, seed: int, seconds: float,
                   progress: bool = True, action_noise: float = 0.0) -> Path:
    """Record (or top up) an expert dataset; reuses what an earlier run already recorded."""
    from physai.data import format as F
    from physai.data.collect import collect

    tag = f"-noise{action_noise:g}" if action_noise > 0 else ""
    path = Path(root) / f"{env_id.split('/')[-1]}-seed{seed}-{seconds:g}s{tag}"
    have = int(F.read_info(path).get("total_episodes", 0)) if F.is_dataset(path) else 0
    if have < episodes:
        collect(env_id, episodes - have, path, seed=seed, env_kwargs=env_kwargs_for(env_id, seconds), progress=progress,
                action_noise=action_noise)
    return path


def dataset_paths(recipe, progress: bool = True) -> dict[Path, float]:
    d = recipe.data
    out = {}
    for env_id, episodes, weight in d.datasets:
        secs = d.car_seconds if embodiment_of(env_id) == "car" else d.humanoid_seconds
        out[ensure_dataset(env_id, episodes, d.root, d.seed, secs, progress, d.action_noise)] = weight
    return out


def build_policy(recipe, loader):
    """A fresh policy with the loader's normalization, or one loaded from `recipe.init_from`
    with the recipe's new embodiments added (fine-tuning)."""
    from physai.policy import Policy

    norm = loader.normalizer({"proprio": recipe.policy.proprio_norm, "action": recipe.policy.action_norm,
                              "action_delta": recipe.policy.action_norm})
    fit_residual_stats(norm, loader, recipe.policy.residual_actions)
    if not recipe.init_from:
        return Policy.build(recipe.policy, specs=loader.specs, normalizer=norm)
    if not (Path(recipe.init_from) / "config.json").exists():
        raise CheckpointError(f"recipe '{recipe.name}' starts from '{recipe.init_from}', which does not exist: "
                              f"train it first (e.g. `physai train --recipe cotrain --out runs/cotrain`) "
                              f"or pass --set init_from=DIR")
    pol = Policy.from_pretrained(recipe.init_from)
    import dataclasses

    pol.config = dataclasses.replace(pol.config, residual_actions=tuple(
        dict.fromkeys(pol.config.residual_actions + recipe.policy.residual_actions)))
    for emb, spec in loader.specs.items():
        if emb not in pol.specs:
            pol.add_embodiment(spec, head=recipe.policy.head_type(emb, spec.default_head))
        pol.normalizer.stats[emb] = norm.stats[emb]
    pol.normalizer.modes.setdefault("action_delta", recipe.policy.action_norm)
    return pol


def fit_residual_stats(norm, loader, embodiments, batches: int = 40) -> None:
    """Stats of (action chunk - last applied action) for embodiments that predict residuals."""
    import numpy as np

    rng = np.random.default_rng(0)
    for emb in embodiments:
        if emb not in loader.specs:
            continue
        spec = loader.specs[emb]
        idx = [spec.proprio_names.index(f"last_action_{a}") for a in spec.action_names]
        n = loader.num_frames()[emb]
        deltas = []
        for _ in range(batches):
            b = loader.batch_for(emb, rng.integers(0, n, 64))
            base = np.asarray(b["proprio"])[:, -1, idx]  # [B, A]
            d = np.asarray(b["action"]) - base[:, None]  # [B, H, A]
            keep = ~np.asarray(b["action_is_pad"])
            deltas.append(d[keep])
        norm.fit(emb, "action_delta", np.concatenate(deltas))


def train_recipe(recipe, out: str | Path, resume: bool = True, progress: bool = True) -> dict[str, Any]:
    from physai.data.loader import MultiEmbodimentLoader
    from physai.trainer import Trainer

    out = Path(out)
    paths = dataset_paths(recipe, progress)
    loader = MultiEmbodimentLoader({str(p): w for p, w in paths.items()}, batch_size=recipe.train.batch_size,
                                   chunk_size=recipe.policy.head.chunk_size, seed=recipe.train.seed)
    torch.manual_seed(recipe.train.seed)
    policy = build_policy(recipe, loader)
    val_rng = torch.Generator().manual_seed(12345)
    val = []
    for emb, n in loader.num_frames().items():  # a fixed validation set (same data; tracks fit, picks `best`)
        idx = torch.randint(0, n, (min(64, n),), generator=val_rng).tolist()
        val.append(loader.batch_for(emb, idx))
    trainer = Trainer(policy, loader, recipe.train, out, val_batches=val)
    resumed = trainer.resume() if resume else False
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(_asdict(recipe), indent=2))
    result = trainer.fit(show_progress=progress)
    result.update(resumed=resumed, datasets={str(p): w for p, w in paths.items()}, history=trainer.history,
                  params=sum(p.numel() for p in policy.parameters()))
    return result


def _asdict(x):
    import dataclasses

    return dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x
