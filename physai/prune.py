"""Structured pruning of the shared trunk's MLP channels and attention heads (`physai prune`).

MLP criterion: a hidden channel j of a block's MLP (Linear W1: width -> hidden, GELU, Linear W2:
hidden -> width) is scored by ||W1[j, :]||_2 · ||W2[:, j]||_2 (how much it can carry from the
block's input to its output, a magnitude criterion); each block keeps its top `keep` share
(at least one channel). Attention criterion, the same idea on the value path: head h is scored
by ||W_v[h]||_F · ||W_o[:, h]||_F (its value projection's rows times the output projection's
columns that read them); each block keeps its top `keep_heads` share (at least one head), and the
kept heads keep their size (width // heads), so the block's attention inner width shrinks. The
kept rows/columns are copied into smaller Linear layers, and the
trunk's config records the new per-block sizes (`TrunkConfig.mlp_hidden`, `attn_heads`), so the pruned
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


def head_scores(attn) -> torch.Tensor:
    """[heads] scores of one attention layer's heads (see the module docstring)."""
    h = attn.heads
    wv = attn.kv.weight[attn.kv.out_features // 2:]  # [h*d, w]: the value half of kv
    wv = wv.reshape(h, -1, wv.shape[1])  # [h, d, w]
    wo = attn.proj.weight.reshape(attn.proj.out_features, h, -1)  # [w, h, d]
    return wv.flatten(1).norm(dim=1) * wo.transpose(0, 1).flatten(1).norm(dim=1)


def _set_trunk(policy, **sizes) -> None:
    trunk = dataclasses.replace(policy.config.trunk, **sizes)
    policy.config = PolicyConfig.from_dict({**policy.config.to_dict(), "trunk": dataclasses.asdict(trunk)})
    policy.trunk.cfg = trunk
    policy._graphs.clear()


def _linear(rows_of: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Linear:
    """A copy of `rows_of` restricted to output rows `rows` and input columns `cols` (None = all)."""
    w, b = rows_of.weight, rows_of.bias
    if rows is not None:
        w, b = w[rows], b[rows]
    if cols is not None:
        w = w[:, cols]
    out = nn.Linear(w.shape[1], w.shape[0]).to(w.device)
    out.weight.copy_(w)
    out.bias.copy_(b)
    return out


def _top(scores: torch.Tensor, keep: float, name: str) -> torch.Tensor:
    """Sorted indices of the top `keep` share of `scores` (at least one); `keep` checked as `name`."""
    if not 0 < keep <= 1:
        raise ConfigError(f"prune {name} must be in (0, 1], got {keep!r}")
    k = max(1, math.ceil(keep * len(scores)))
    return scores.topk(k).indices.sort().values


@torch.no_grad()
def prune_heads(policy, keep: float):
    """Prune every trunk block's self-attention to `keep` of its heads, in place; returns the policy."""
    _top(torch.zeros(1), keep, "keep_heads")  # a bad share is refused before any block changes
    kept = []
    for blk in policy.trunk.blocks:
        attn = blk.self_attn
        h = attn.heads
        d = attn.q.out_features // h
        top = _top(head_scores(attn), keep, "keep_heads")
        dims = (top[:, None] * d + torch.arange(d, device=top.device)).flatten()  # kept channels of q / k / v
        inner = h * d
        attn.q = _linear(attn.q, dims, None)
        attn.kv = _linear(attn.kv, torch.cat([dims, inner + dims]), None)
        attn.proj = _linear(attn.proj, None, dims)
        attn.heads = kept_heads = len(top)
        kept.append(kept_heads)
    _set_trunk(policy, attn_heads=tuple(kept))
    return policy


@torch.no_grad()
def prune_mlp(policy, keep: float):
    """Prune every trunk block's MLP to `keep` of its channels, in place; returns the policy."""
    _top(torch.zeros(1), keep, "keep")  # a bad share is refused before any block changes
    sizes = []
    for blk in policy.trunk.blocks:
        mlp = blk.mlp
        idx = _top(channel_scores(mlp), keep, "keep")
        mlp[0], mlp[3] = _linear(mlp[0], idx, None), _linear(mlp[3], None, idx)
        sizes.append(len(idx))
    _set_trunk(policy, mlp_hidden=tuple(sizes))
    return policy


def prune_checkpoint(checkpoint, out, keep: float, recipe_name: str = "sft", finetune_steps: int = 300,
                     lr: float = 1e-4, data_root: str | None = None, progress: bool = True,
                     keep_heads: float = 1.0) -> dict:
    """Prune a checkpoint's trunk MLPs to `keep` of their channels and its attention to `keep_heads`
    of its heads, save it (`out/pruned`) and fine-tune it for `finetune_steps` on the recipe's data
    (`out/final`); returns sizes and paths."""
    from pathlib import Path

    from physai.overrides import apply_overrides
    from physai.pipeline import train_recipe
    from physai.policy import Policy
    from physai.recipes import get_recipe

    out = Path(out)
    policy = Policy.from_pretrained(checkpoint)
    before = sum(p.numel() for p in policy.parameters())
    prune_mlp(policy, keep)
    if keep_heads < 1:
        prune_heads(policy, keep_heads)
    after = sum(p.numel() for p in policy.parameters())
    policy.save_pretrained(out / "pruned")
    res = {"checkpoint": str(checkpoint), "keep": keep, "keep_heads": keep_heads, "params_before": before,
           "params_after": after, "mlp_hidden": list(policy.config.trunk.mlp_hidden),
           "attn_heads": list(policy.config.trunk.attn_heads or [policy.config.trunk.heads] * policy.config.trunk.depth),
           "pruned": str(out / "pruned"), "final": str(out / "pruned")}
    if finetune_steps > 0:
        recipe = get_recipe(recipe_name)()
        recipe = apply_overrides(recipe, [f"train.steps={finetune_steps}", f"train.lr={lr}", "train.warmup_steps=20",
                                          f"train.ckpt_every={finetune_steps}", "data.dagger_rounds=0",
                                          *([f"data.root={data_root}"] if data_root else [])])
        recipe = dataclasses.replace(recipe, policy=policy.config, init_from=str(out / "pruned"))
        tr = train_recipe(recipe, out, resume=False, progress=progress)
        res.update(final=tr["final"], finetune_seconds=tr["seconds"])
    return res
