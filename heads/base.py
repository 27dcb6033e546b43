"""Embodiment head interface, shared chunk decoder and the head registry.

A head turns the physical-language features into an action chunk. It works in *normalized*
action space (the policy normalizes targets and un-normalizes + clamps outputs to the spec's
bounds). Contract: `compute_loss(features, batch) -> (loss, metrics)` and
`sample_actions(features) -> [B, H, A]`. `features` is a dict with `tokens` (quantized physical
tokens projected to the trunk width, [B, K, W]) and, when the policy's `head_reads_trunk` switch
is on, `trunk` ([B, L, W]); `proprio` (normalized, latest step, [B, Dp]) and `command` ([B, Dc])
are there for heads with a direct path from the body state. Builders register in `HEADS` and are called as
`builder(spec, width, cfg, backend)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from physai.embodiments.spec import EmbodimentSpec
from physai.errors import ConfigError
from physai.registry import Registry
from physai.trunk import Block, TrunkConfig

HEADS: Registry = Registry("head")


@dataclass(frozen=True)
class HeadConfig:
    chunk_size: int = 8  # H: actions predicted per call
    depth: int = 2  # decoder blocks (self + cross attention) over the features
    heads: int = 4  # attention heads in the decoder
    dropout: float = 0.0
    tokenizer: str = "bins"  # tokens head: action tokenizer (fixed-length: bins, longlat)
    n_bins: int = 256  # tokens head with bins: bins per dimension
    flow_steps: int = 5  # flow head: Euler integration steps at inference
    reflex_hidden: int = 256  # l1 head: hidden width of the proprio+command MLP added to the chunk (0 = off)

    def __post_init__(self):
        if self.chunk_size < 1 or self.depth < 1 or self.flow_steps < 1 or self.n_bins < 2 or self.reflex_hidden < 0:
            raise ConfigError("head chunk_size, depth, flow_steps must be >= 1, n_bins >= 2 and reflex_hidden >= 0")


def memory(features: dict[str, torch.Tensor]) -> torch.Tensor:
    """The tokens a head attends to: physical tokens, plus trunk features when present. [B, M, W]"""
    if "trunk" in features:
        return torch.cat([features["tokens"], features["trunk"]], dim=1)
    return features["tokens"]


class ChunkDecoder(nn.Module):
    """H learned step queries (+ optional per-step input) -> cross-attend features -> [B, H, W]."""

    def __init__(self, width: int, cfg: HeadConfig, backend: str):
        super().__init__()
        tcfg = TrunkConfig(width=width, depth=cfg.depth, heads=cfg.heads, dropout=cfg.dropout)
        self.queries = nn.Parameter(torch.randn(1, cfg.chunk_size, width) * 0.02)
        self.blocks = nn.ModuleList(Block(tcfg, backend, cross=True) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, mem: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        x = self.queries.expand(mem.shape[0], -1, -1)
        if extra is not None:
            x = x + extra
        for blk in self.blocks:
            x = blk(x, ctx=mem)
        return self.norm(x)


class Head(nn.Module):
    def __init__(self, spec: EmbodimentSpec, width: int, cfg: HeadConfig):
        super().__init__()
        self.spec, self.width, self.cfg = spec, width, cfg

    @property
    def action_dim(self) -> int:
        return self.spec.action_dim

    def compute_loss(self, features: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def sample_actions(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


def masked_mean(x: torch.Tensor, is_pad: torch.Tensor | None) -> torch.Tensor:
    """x: [B, H, ...]; is_pad: [B, H] bool (True = padding, ignored)."""
    while x.dim() > 2:
        x = x.mean(-1)
    if is_pad is None:
        return x.mean()
    w = (~is_pad).float()
    return (x * w).sum() / w.sum().clamp_min(1.0)
