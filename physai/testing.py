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


def write_lerobot_dataset(root, repo_id: str = "user/myarm", robot_type: str = "myarm", episodes: int = 4,
                          frames: int = 25, fps: int = 10, size: int = 32, seed: int = 0, task: str = "reach"):
    """A small dataset written with LeRobot's own API (no physai writer, no `meta/physai.json`) for a
    3-joint arm physai has never seen: one 32-px camera, a 4-d state, actions a smooth function of
    the state (so a policy can learn them). Returns the dataset root."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {
        "observation.images.wrist": {"dtype": "image", "shape": (size, size, 3), "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (4,), "names": ["j0", "j1", "j2", "gripper"]},
        "action": {"dtype": "float32", "shape": (3,), "names": ["j0", "j1", "j2"]},
    }
    ds = LeRobotDataset.create(repo_id, fps, features, root=root, robot_type=robot_type, use_videos=False)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    for _ in range(episodes):
        s = rng.uniform(-1, 1, 4).astype(np.float32)
        for _ in range(frames):
            s = np.clip(s + 0.1 * rng.standard_normal(4).astype(np.float32), -1, 1)
            img = np.zeros((size, size, 3), np.uint8)
            img[..., 0] = int(127.5 * (s[0] + 1))  # the image shows the first joint
            ds.add_frame({"observation.images.wrist": img, "observation.state": s,
                          "action": np.tanh(s @ w).astype(np.float32), "task": task})
        ds.save_episode()
    ds.finalize()
    return root
