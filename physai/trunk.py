"""The shared transformer trunk and its building blocks.

Pre-norm transformer blocks (self-attention + GELU MLP) with dropout and optional gradient
checkpointing, plus a cross-attention block used by the physical-token readout and the heads.
Attention goes through `physai.attention.attention` with a backend fixed at construction.
Named size presets (`nano` ~1 M params ... `large` ~300 M) live in a registry.
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import torch
import torch.nn as nn
from einops import rearrange
from torch.utils.checkpoint import checkpoint

from physai.attention import attention, default_backend
from physai.errors import ConfigError
from physai.registry import Registry


@dataclass(frozen=True)
class TrunkConfig:
    width: int = 128  # token dimension shared by stems, trunk, bottleneck and heads
    depth: int = 4  # number of self-attention blocks
    heads: int = 4  # attention heads (width must divide evenly)
    mlp_ratio: float = 4.0  # MLP hidden = width * mlp_ratio
    dropout: float = 0.0  # dropout on attention probs and residual branches
    grad_checkpoint: bool = False  # trade compute for memory on big presets
    # per-block MLP hidden sizes of the trunk's blocks after structured pruning (`physai prune`);
    # empty = width * mlp_ratio in every block
    mlp_hidden: tuple[int, ...] = ()
    # per-block attention heads kept after structured pruning (`physai prune --keep-heads`), each of
    # width // heads dimensions; empty = `heads` in every block
    attn_heads: tuple[int, ...] = ()

    def __post_init__(self):
        for k in ("width", "depth", "heads"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"trunk.{k} must be an integer >= 1, got {v!r}")
        if not (isinstance(self.mlp_ratio, (int, float)) and math.isfinite(self.mlp_ratio) and self.mlp_ratio > 0):
            raise ConfigError(f"trunk.mlp_ratio must be a finite number > 0, got {self.mlp_ratio!r}")
        if self.width % self.heads:
            raise ConfigError(f"trunk width {self.width} must be divisible by heads {self.heads}")
        if self.depth < 1 or self.width < 8:
            raise ConfigError("trunk depth must be >= 1 and width >= 8")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("trunk dropout must be in [0, 1)")
        if self.mlp_hidden and (len(self.mlp_hidden) != self.depth or any(
                not isinstance(h, int) or isinstance(h, bool) or h < 1 for h in self.mlp_hidden)):
            raise ConfigError(f"trunk.mlp_hidden must be empty or {self.depth} integers >= 1, got {self.mlp_hidden!r}")
        if self.attn_heads and (len(self.attn_heads) != self.depth or any(
                not isinstance(h, int) or isinstance(h, bool) or not 1 <= h <= self.heads for h in self.attn_heads)):
            raise ConfigError(f"trunk.attn_heads must be empty or {self.depth} integers in [1, heads={self.heads}], "
                              f"got {self.attn_heads!r}")


TRUNK_PRESETS: Registry = Registry("trunk preset")
for _name, _cfg in {
    "pico": TrunkConfig(width=32, depth=2, heads=2),  # ~25 k, the smallest distilled students
    "micro": TrunkConfig(width=64, depth=3, heads=4),  # ~0.1 M, distilled students (`physai distill`)
    "nano": TrunkConfig(width=128, depth=4, heads=4),  # ~1 M, tests and CPU demos
    "tiny": TrunkConfig(width=256, depth=6, heads=4),  # ~5 M
    "small": TrunkConfig(width=384, depth=8, heads=6),  # ~14 M
    "base": TrunkConfig(width=768, depth=12, heads=12),  # ~85 M
    "large": TrunkConfig(width=1024, depth=24, heads=16, grad_checkpoint=True),  # ~300 M
}.items():
    TRUNK_PRESETS.register(_name)(_cfg)


class MultiHeadAttention(nn.Module):
    """Multi-head attention; `head_dim` defaults to width // heads (a pruned block keeps that size
    with fewer heads, so its inner width is heads * head_dim < width)."""

    def __init__(self, width: int, heads: int, dropout: float, backend: str, cross: bool = False,
                 head_dim: int | None = None):
        super().__init__()
        self.heads, self.backend, self.dropout = heads, backend, dropout
        inner = heads * (head_dim or width // heads)
        self.q = nn.Linear(width, inner)
        self.kv = nn.Linear(width, 2 * inner)
        self.proj = nn.Linear(inner, width)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if ctx is None else ctx
        q = rearrange(self.q(x), "b l (h d) -> b h l d", h=self.heads)  # [B, H, Lq, D]
        k, v = rearrange(self.kv(ctx), "b l (two h d) -> two b h l d", two=2, h=self.heads)
        out = attention(q, k, v, mask=mask, backend=self.backend, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class MLP(nn.Sequential):
    def __init__(self, width: int, ratio: float, dropout: float, hidden: int | None = None):
        hidden = int(width * ratio) if hidden is None else int(hidden)
        super().__init__(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width))


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)) [+ cross-attn(norm(x), ctx)] + mlp(norm(x))."""

    def __init__(self, cfg: TrunkConfig, backend: str, cross: bool = False, self_attn: bool = True,
                 mlp_hidden: int | None = None, attn_heads: int | None = None):
        super().__init__()
        w = cfg.width
        self.self_attn = (MultiHeadAttention(w, attn_heads or cfg.heads, cfg.dropout, backend, head_dim=w // cfg.heads)
                          if self_attn else None)
        self.n1 = nn.LayerNorm(w) if self_attn else None
        self.cross = MultiHeadAttention(w, cfg.heads, cfg.dropout, backend) if cross else None
        self.nc = nn.LayerNorm(w) if cross else None
        self.n2 = nn.LayerNorm(w)
        self.mlp = MLP(w, cfg.mlp_ratio, cfg.dropout, mlp_hidden)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask=None, ctx=None, ctx_mask=None):
        if self.self_attn is not None:
            x = x + self.drop(self.self_attn(self.n1(x), mask=mask))
        if self.cross is not None:
            x = x + self.drop(self.cross(self.nc(x), ctx=ctx, mask=ctx_mask))
        return x + self.drop(self.mlp(self.n2(x)))


class Trunk(nn.Module):
    """Stack of self-attention blocks over the stems' tokens. x: [B, L, W] -> [B, L, W]."""

    def __init__(self, cfg: TrunkConfig, backend: str | None = None):
        super().__init__()
        self.cfg = cfg
        self.backend = backend or default_backend()[0]
        hidden = cfg.mlp_hidden or (None,) * cfg.depth
        heads = cfg.attn_heads or (None,) * cfg.depth
        self.blocks = nn.ModuleList(Block(cfg, self.backend, mlp_hidden=h, attn_heads=a) for h, a in zip(hidden, heads))
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for blk in self.blocks:
            if self.cfg.grad_checkpoint and self.training and x.requires_grad:
                x = checkpoint(blk, x, mask, use_reentrant=False)
            else:
                x = blk(x, mask)
        return self.norm(x)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
