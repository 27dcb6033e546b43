"""The physical-language bottleneck and the world model that predicts it.

`PhysicalBottleneck`: K learned readout tokens ride through the trunk with the observation tokens
(so they are input-dependent at every layer, which keeps FSQ codes from collapsing to one value),
then cross-attend over the trunk's output once more (`readout="pool"`: they skip the trunk and
only cross-attend to its output, so the trunk's cost does not grow with K), are projected to
`len(levels)` scalars and quantized with FSQ into discrete codes from one vocabulary shared by all
embodiments, then projected back to the trunk width for the heads. `WorldModel`: given the
current quantized tokens and the action chunk taken (embodiment-specific action embedding),
predicts the codes of the next step's tokens (cross-entropy over the FSQ vocabulary) - a
self-supervised signal and an action-conditioned simulator in token space.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from physai.tokenizers.fsq import FSQ
from physai.trunk import Block, TrunkConfig


class PhysicalBottleneck(nn.Module):
    def __init__(self, cfg: TrunkConfig, n_tokens: int, levels: tuple[int, ...], backend: str):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, n_tokens, cfg.width) * 0.02)
        self.read = Block(cfg, backend, cross=True)
        self.fsq = FSQ(levels)
        self.to_code = nn.Sequential(nn.LayerNorm(cfg.width), nn.Linear(cfg.width, self.fsq.dim))
        self.from_code = nn.Linear(self.fsq.dim, cfg.width)
        self.pos = nn.Parameter(torch.randn(1, n_tokens, cfg.width) * 0.02)

    @property
    def vocab_size(self) -> int:
        return self.fsq.vocab_size

    def embed(self, quantized: torch.Tensor) -> torch.Tensor:
        """[B, K, d] quantized -> [B, K, W] token features for the heads."""
        return self.from_code(quantized) + self.pos

    def registers(self, batch: int) -> torch.Tensor:
        """The K readout tokens, appended to the trunk's input so they attend at every layer. [B, K, W]"""
        q = self.queries if torch.is_grad_enabled() else self.queries.detach()  # a no-grad view keeps requires_grad
        return q.expand(batch, -1, -1)

    def forward(self, trunk_out: torch.Tensor, readout: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """trunk_out: [B, L, W] observation tokens; readout: [B, K, W] the registers' trunk outputs
        (input-dependent queries; without them the learned queries are used)."""
        q0 = self.registers(trunk_out.shape[0]) if readout is None else readout
        x = self.read(q0, ctx=trunk_out)  # [B, K, W]
        z = self.to_code(x)  # [B, K, d]
        q, codes = self.fsq(z)  # [B, K, d], [B, K]
        return {"tokens": self.embed(q), "quantized": q, "codes": codes, "z": z}


class WorldModel(nn.Module):
    """(quantized tokens [B, K, d], normalized action chunk [B, H, A]) -> next-code logits [B, K, V]."""

    def __init__(self, cfg: TrunkConfig, n_tokens: int, code_dim: int, vocab: int, action_dims: dict[str, int],
                 depth: int, backend: str):
        super().__init__()
        wcfg = TrunkConfig(width=cfg.width, depth=depth, heads=cfg.heads, dropout=cfg.dropout)
        self.inp = nn.Linear(code_dim, cfg.width)
        self.pos = nn.Parameter(torch.randn(1, n_tokens, cfg.width) * 0.02)
        self.action_in = nn.ModuleDict({e: nn.Linear(a, cfg.width) for e, a in action_dims.items()})
        self.blocks = nn.ModuleList(Block(wcfg, backend, cross=True) for _ in range(depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.out = nn.Linear(cfg.width, vocab)

    def add_embodiment(self, name: str, action_dim: int) -> None:
        w = self.inp.out_features
        self.action_in[name] = nn.Linear(action_dim, w).to(self.inp.weight.device)

    def forward(self, quantized: torch.Tensor, action: torch.Tensor, embodiment: str) -> torch.Tensor:
        x = self.inp(quantized) + self.pos  # [B, K, W]
        act = self.action_in[embodiment](action)  # [B, H, W]
        for blk in self.blocks:
            x = blk(x, ctx=act)
        return self.out(self.norm(x))  # [B, K, V]
