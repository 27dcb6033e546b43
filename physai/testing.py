"""Helpers for tests of physai and of code built on it: tiny configs, random batches and
observations that follow an embodiment spec (like `torch.testing`, shipped with the library)."""

from __future__ import annotations

import numpy as np
import torch

from physai.config import policy_config
from physai.heads.base import HeadConfig
from physai.stems import StemConfig


def tiny_config(**kw):
    """A policy far below nano, for fast tests (32-d trunk, 2 blocks). Its token layout is pinned to
    the one the committed golden checkpoint has (8-px patches, separate state tokens, 4 registers
    through the trunk, the whole chunk executed), not the library default, so the tests' model does
    not change when a default does; pass `stem=`, `readout=` ... to test another layout."""
    from physai.trunk import TrunkConfig

    kw.setdefault("head", HeadConfig(chunk_size=4, depth=1, heads=2))
    kw.setdefault("stem", StemConfig(patch_size=8, state_token=False))
    for k, v in (("readout", "trunk"), ("head_reads_trunk", False), ("world_model_fraction", 1.0),
                 ("n_action_steps", None)):
        kw.setdefault(k, v)
    return policy_config("nano", trunk=TrunkConfig(width=32, depth=2, heads=2), n_readout=4, world_model_depth=1, **kw)


def make_batch(spec, B=3, H=4, seed=0, next_obs=True):
    g = torch.Generator().manual_seed(seed)
    cam = spec.cameras[0]
    lo, hi = torch.tensor(spec.low), torch.tensor(spec.high)
    b = {
        "embodiment": spec.name,
        "image": torch.randint(0, 256, (B, 1, 1, 3, cam.height, cam.width), generator=g, dtype=torch.uint8),
        "proprio": torch.randn(B, 1, spec.proprio_dim, generator=g),
        "command": torch.stack([torch.as_tensor(spec.encode_command(spec.default_command()))] * B),
        "action": lo + (hi - lo) * torch.rand(B, H, spec.action_dim, generator=g),
    }
    if next_obs:
        b["next_image"] = torch.randint(0, 256, b["image"].shape, generator=g, dtype=torch.uint8)
        b["next_proprio"] = torch.randn(B, 1, spec.proprio_dim, generator=g)
    return b


def make_obs(spec, rng=None):
    rng = rng or np.random.default_rng(0)
    cam = spec.cameras[0]
    return {
        "image": rng.integers(0, 256, (3, cam.height, cam.width), dtype=np.uint8),
        "proprio": rng.standard_normal(spec.proprio_dim).astype(np.float32),
        "command": spec.default_command(),
    }


class SyntheticSource:
    """A deterministic mixed-embodiment batch source (the trainer's source protocol) for tests:
    batch i is a pure function of (seed, i), so `state_dict` is just the counter."""

    def __init__(self, specs, batch_size=4, chunk_size=4, seed=0, weights=None):
        self.specs, self.B, self.H, self.seed = list(specs), batch_size, chunk_size, seed
        self.weights = weights or [1.0] * len(self.specs)
        self.i = 0

    def sample(self):
        g = np.random.default_rng([self.seed, self.i])
        self.i += 1
        p = np.asarray(self.weights) / np.sum(self.weights)
        counts = g.multinomial(self.B, p)
        return {s.name: make_batch(s, B=int(n), H=self.H, seed=int(g.integers(1 << 30)))
                for s, n in zip(self.specs, counts) if n > 0}

    def fit_normalizer(self, policy, batches: int = 4):
        """Fit `policy`'s proprio/action stats from a few of this source's batches (as a real dataset's
        stats are fitted before training); the source's own position is unchanged. Returns the source."""
        i, self.i, got = self.i, 10 ** 6, {}
        for _ in range(batches):
            for e, b in self.sample().items():
                got.setdefault(e, []).append(b)
        self.i = i
        for e, bs in got.items():
            policy.normalizer.fit(e, "proprio", np.concatenate([b["proprio"].reshape(-1, b["proprio"].shape[-1]).numpy() for b in bs]))
            policy.normalizer.fit(e, "action", np.concatenate([b["action"].reshape(-1, b["action"].shape[-1]).numpy() for b in bs]))
        return self

    def state_dict(self):
        return {"i": self.i, "seed": self.seed}

    def load_state_dict(self, st):
        self.i, self.seed = int(st["i"]), int(st["seed"])
