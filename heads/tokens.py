"""`tokens` head: discrete action tokens, trained by classification (as RT-2 / pi0-FAST).

Each (step, dim) of the normalized chunk is one token from a fixed-length action tokenizer
(`bins` or, for the 2-DoF car, `longlat`) spanning the normalized range [-1, 1]. The decoder's
step features are projected to per-dimension logits; inference takes the argmax token and
decodes it back. Variable-length tokenizers (`fast`) need autoregressive decoding and are
rejected with a clear error.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from physai.errors import ConfigError
from physai.heads.base import HEADS, ChunkDecoder, Head, HeadConfig, masked_mean, memory


def build_action_tokenizer(name: str, spec, cfg: HeadConfig):
    import physai.tokenizers as T

    cls = T.TOKENIZERS.get(name)
    if name == "bins":
        tok = cls(n_bins=cfg.n_bins, low=-1.0, high=1.0, horizon=cfg.chunk_size, action_dim=spec.action_dim)
    elif name == "longlat":
        if spec.action_dim != 2:
            raise ConfigError(f"tokenizer 'longlat' needs a 2-DoF spec, '{spec.name}' has {spec.action_dim}")
        tok = cls(long_range=(-1.0, 1.0), lat_range=(-1.0, 1.0), horizon=cfg.chunk_size)
    else:
        raise ConfigError(f"tokens head needs a fixed-length tokenizer (bins, longlat); got '{name}'")
    return tok


class TokensHead(Head):
    def __init__(self, spec, width: int, cfg: HeadConfig, backend: str):
        super().__init__(spec, width, cfg)
        self.tokenizer = build_action_tokenizer(cfg.tokenizer, spec, cfg)
        self.vocab = int(self.tokenizer.vocab_size)
        self.decoder = ChunkDecoder(width, cfg, backend)
        self.out = nn.Linear(width, spec.action_dim * self.vocab)

    def logits(self, features) -> torch.Tensor:
        z = self.out(self.decoder(memory(features)))  # [B, H, A*V]
        return rearrange(z, "b h (a v) -> b h a v", a=self.action_dim)

    def compute_loss(self, features, batch):
        target = batch["action"].detach().clamp(-1.0, 1.0).cpu().numpy()  # [B, H, A]
        tokens = np.asarray(self.tokenizer.encode(target))  # [B, H*A]
        tokens = torch.as_tensor(tokens, device=batch["action"].device).long()
        tokens = rearrange(tokens, "b (h a) -> b h a", a=self.action_dim)
        logits = self.logits(features)
        ce = F.cross_entropy(rearrange(logits, "b h a v -> b v h a"), tokens, reduction="none")  # [B, H, A]
        loss = masked_mean(ce, batch.get("action_is_pad"))
        acc = (logits.argmax(-1) == tokens).float().mean()
        return loss, {"token_ce": float(loss.detach()), "token_acc": float(acc)}

    @torch.no_grad()
    def sample_actions(self, features):
        tok = rearrange(self.logits(features).argmax(-1), "b h a -> b (h a)").cpu().numpy()
        acts = self.tokenizer.decode(tok)  # [B, H, A]
        return torch.as_tensor(np.asarray(acts, dtype=np.float32), device=features["tokens"].device)


@HEADS.register("tokens")
def build_tokens(spec, width, cfg, backend):
    return TokensHead(spec, width, cfg, backend)
