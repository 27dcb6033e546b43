"""Structured pruning of the shared trunk's MLP channels (`physai prune`).

Criterion: a hidden channel j of a block's MLP (Linear W1: width -> hidden, GELU, Linear W2:
hidden -> width) is scored by ||W1[j, :]||_2 · ||W2[:, j]||_2 (how much it can carry from the
block's input to its output, a magnitude criterion); each block keeps its top `keep` share
(at least one channel). The kept rows/columns are copied into smaller Linear layers, and the
trunk's config records the new per-block sizes (`TrunkConfig.mlp_hidden`), so the pruned
checkpoint saves and loads like any other. Fine-tuning afterwards (`finetune_steps`) runs the
recipe's training from the pruned weights.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn as nn

from physai.config import PolicyConfig
from physai.errors import ConfigError


def channel_scores(mlp: nn.Sequential) -> torch.Tensor:
    """[hidden] scores of one MLP's hidden channels (see the module docstring)."""
    w1, w2 = mlp[0].weight, mlp[3].weight  # [h, w], [w, h]
    return w1.norm(dim=1) * w2.norm(dim=0)


@torch.no_grad()
def prune_mlp(policy, keep: float):
    """Prune every trunk block's MLP to `keep` of its channels, in place; returns the policy."""
    if not 0 < keep <= 1:
        raise ConfigError(f"prune keep must be in (0, 1], got {keep!r}")
    sizes = []
    for blk in policy.trunk.blocks:
        mlp = blk.mlp
        h = mlp[0].out_features
        k = max(1, math.ceil(keep * h))
        idx = channel_scores(mlp).topk(k).indices.sort().values
        fc1 = nn.Linear(mlp[0].in_features, k).to(mlp[0].weight.device)
        fc2 = nn.Linear(k, mlp[3].out_features).to(mlp[3].weight.device)
        fc1.weight.copy_(mlp[0].weight[idx])
        fc1.bias.copy_(mlp[0].bias[idx])
        fc2.weight.copy_(mlp[3].weight[:, idx])
        fc2.bias.copy_(mlp[3].bias)
        mlp[0], mlp[3] = fc1, fc2
        sizes.append(int(k))
    trunk = dataclasses.replace(policy.config.trunk, mlp_hidden=tuple(sizes))
    policy.config = PolicyConfig.from_dict({**policy.config.to_dict(), "trunk": dataclasses.asdict(trunk)})
    policy.trunk.cfg = trunk
    policy._graphs.clear()
    return policy


def prune_checkpoint(checkpoint, out, keep: float, recipe_name: str = "sft", finetune_steps: int = 300,
                     lr: float = 1e-4, data_root: str | None = None, progress: bool = True) -> dict:
    """Prune a checkpoint's trunk MLPs to `keep`, save it (`out/pruned`) and fine-tune it for
    `finetune_steps` on the recipe's data (`out/final`); returns sizes and paths."""
    from pathlib import Path

    from physai.overrides import apply_overrides
    from physai.pipeline import train_recipe
    from physai.policy import Policy
    from physai.recipes import get_recipe

    out = Path(out)
    policy = Policy.from_pretrained(checkpoint)
    before = sum(p.numel() for p in policy.parameters())
    prune_mlp(policy, keep)
    after = sum(p.numel() for p in policy.parameters())
    policy.save_pretrained(out / "pruned")
    res = {"checkpoint": str(checkpoint), "keep": keep, "params_before": before, "params_after": after,
           "mlp_hidden": list(policy.config.trunk.mlp_hidden), "pruned": str(out / "pruned"), "final": str(out / "pruned")}
    if finetune_steps > 0:
        recipe = get_recipe(recipe_name)()
        recipe = apply_overrides(recipe, [f"train.steps={finetune_steps}", f"train.lr={lr}", "train.warmup_steps=20",
                                          f"train.ckpt_every={finetune_steps}", "data.dagger_rounds=0",
                                          *([f"data.root={data_root}"] if data_root else [])])
        recipe = dataclasses.replace(recipe, policy=policy.config, init_from=str(out / "pruned"))
        tr = train_recipe(recipe, out, resume=False, progress=progress)
        res.update(final=tr["final"], finetune_seconds=tr["seconds"])
    return res
