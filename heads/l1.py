"""`l1` head: action-chunk regression with an L1 loss (as ACT).

H step queries cross-attend over the physical tokens and regress normalized actions directly.
With `reflex_hidden > 0` a small MLP of the normalized proprioception and command adds its own
chunk to the decoder's: a direct path for the precise state-feedback part of control (lane
keeping, balance), which the transformer path learns far more slowly per sample (measured on car
data after 19k samples: first-step steering L1 0.031 through the transformer alone vs 0.007 for
an MLP), while the transformer keeps what needs vision and context.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from physai.heads.base import HEADS, ChunkDecoder, Head, HeadConfig, masked_mean, memory


class L1Head(Head):
    jit_safe = True  # sampling is pure torch: Policy.optimize_for_inference may trace it

    def __init__(self, spec, width: int, cfg: HeadConfig, backend: str):
        super().__init__(spec, width, cfg)
        self.decoder = ChunkDecoder(width, cfg, backend)
        self.out = nn.Linear(width, spec.action_dim)
        self.reflex = None
        if cfg.reflex_hidden:
            d, h = max(spec.proprio_dim, 1) + spec.command_dim, cfg.reflex_hidden
            self.reflex = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, h), nn.GELU(),
                                        nn.Linear(h, cfg.chunk_size * spec.action_dim))

    def sample_actions(self, features):
        out = self.out(self.decoder(memory(features)))  # [B, H, A]
        if self.reflex is not None:
            x = torch.cat([features["proprio"], features["command"]], dim=-1)  # [B, Dp + Dc]
            out = out + self.reflex(x).view(out.shape)
        return out

    def compute_loss(self, features, batch):
        pred = self.sample_actions(features)
        err = (pred - batch["action"]).abs()  # [B, H, A]
        loss = masked_mean(err, batch.get("action_is_pad"))
        return loss, {"l1": float(loss.detach())}


@HEADS.register("l1")
def build_l1(spec, width, cfg, backend):
    return L1Head(spec, width, cfg, backend)
