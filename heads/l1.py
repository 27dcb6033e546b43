"""`l1` head: action-chunk regression with an L1 loss (as ACT).

H step queries cross-attend over the physical tokens and regress normalized actions directly.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from physai.heads.base import HEADS, ChunkDecoder, Head, HeadConfig, masked_mean, memory


class L1Head(Head):
    def __init__(self, spec, width: int, cfg: HeadConfig, backend: str):
        super().__init__(spec, width, cfg)
        self.decoder = ChunkDecoder(width, cfg, backend)
        self.out = nn.Linear(width, spec.action_dim)

    def sample_actions(self, features):
        return self.out(self.decoder(memory(features)))  # [B, H, A]

    def compute_loss(self, features, batch):
        pred = self.sample_actions(features)
        err = (pred - batch["action"]).abs()  # [B, H, A]
        loss = masked_mean(err, batch.get("action_is_pad"))
        return loss, {"l1": float(loss.detach())}


@HEADS.register("l1")
def build_l1(spec, width, cfg, backend):
    return L1Head(spec, width, cfg, backend)
