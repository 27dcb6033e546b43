"""`flow` head: conditional flow matching (as pi0) over normalized action chunks.

Training draws t ~ U(0,1), x_t = (1 - t) x0 + t x1 with x0 ~ N(0, I) and x1 the target chunk and
regresses the velocity x1 - x0. Inference integrates from noise with `flow_steps` Euler steps
(a seeded generator can be passed for reproducible samples).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from physai.heads.base import HEADS, ChunkDecoder, Head, HeadConfig, masked_mean, memory


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t: [B] in [0, 1] -> sinusoidal [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    ang = t.float()[:, None] * freqs[None] * 1000.0
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


class FlowHead(Head):
    def __init__(self, spec, width: int, cfg: HeadConfig, backend: str):
        super().__init__(spec, width, cfg)
        self.decoder = ChunkDecoder(width, cfg, backend)
        self.inp = nn.Linear(spec.action_dim, width)
        self.t_mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.out = nn.Linear(width, spec.action_dim)

    def velocity(self, mem: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.t_mlp(time_embedding(t, self.width))[:, None]  # [B, 1, W]
        return self.out(self.decoder(mem, extra=self.inp(x_t) + temb))  # [B, H, A]

    def compute_loss(self, features, batch):
        x1 = batch["action"]  # [B, H, A]
        x0 = torch.randn_like(x1)
        t = torch.rand(x1.shape[0], device=x1.device)
        x_t = (1 - t)[:, None, None] * x0 + t[:, None, None] * x1
        v = self.velocity(memory(features), x_t, t)
        loss = masked_mean((v - (x1 - x0)).pow(2), batch.get("action_is_pad"))
        return loss, {"flow_mse": float(loss.detach())}

    @torch.no_grad()
    def sample_actions(self, features, generator: torch.Generator | None = None):
        mem = memory(features)
        B = mem.shape[0]
        x = torch.randn(B, self.cfg.chunk_size, self.action_dim, device=mem.device, generator=generator)
        n = self.cfg.flow_steps
        for i in range(n):
            t = torch.full((B,), i / n, device=mem.device)
            x = x + self.velocity(mem, x, t) / n
        return x


@HEADS.register("flow")
def build_flow(spec, width, cfg, backend):
    return FlowHead(spec, width, cfg, backend)
