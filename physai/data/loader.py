"""`MultiEmbodimentLoader`: mix LeRobot datasets of several embodiments into per-embodiment batches.

Each dataset is loaded into memory once (`physai.data.frames.load_frames`: images decoded once,
stored as uint8 tensors); datasets of the same embodiment share one pool. A step draws
`batch_size` samples: how many come from each dataset is multinomial in the sampling weights, the
frames are uniform within a dataset (or, for embodiments given a `transition_weight`, frames in the
`transition_seconds` after a command change are that many times likelier), and a step is a dict
`embodiment -> batch` (embodiments with no sample that step are absent) - each batch a few tensor index ops in the layout
`Policy.forward` takes: image uint8 [B, 1, C, 3, H, W], proprio [B, 1, Dp] (raw), command [B, Dc],
action [B, H, A] (physical units; frames past the episode end repeat its last action and are
flagged in action_is_pad [B, H]), next_image/next_proprio at t+H clamped to the episode's last
frame, next_is_pad [B] (t+H past the end). Sampling is a numpy PCG64 stream: the same seed gives the
same batches and `state_dict()`/`load_state_dict()` resume it exactly. `normalizer()` returns a
`Normalizer` from the per-dataset cached stats (`physai.data.stats`), checked against the specs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from physai.data.frames import Frames, load_frames
from physai.data.stats import dataset_stats, merge_stats
from physai.embodiments import EmbodimentSpec
from physai.errors import ConfigError, SpecMismatchError
from physai.normalization import Normalizer

Batch = dict[str, Any]


@dataclass
class _Pool:
    """All frames of one embodiment (datasets concatenated). Gathers run in numpy and are wrapped
    with `torch.from_numpy` (zero copy): numpy fancy indexing is single-threaded memcpy, while
    torch's indexing kernels on a loaded 2-core machine were 10-100x slower (thread contention)."""

    spec: EmbodimentSpec
    images: np.ndarray  # [N, C, 3, H, W] uint8
    state: np.ndarray  # [N, Dp] float32
    command: np.ndarray  # [N, Dc]
    action: np.ndarray  # [N, A]
    ep_end: np.ndarray  # [N] int64, one past the last frame of the frame's episode

    @classmethod
    def build(cls, parts: Sequence[Frames]) -> "_Pool":
        """Concatenate datasets; afterwards each `Frames` views the pool's memory (no second copy)."""
        offsets = np.cumsum([0] + [len(f) for f in parts]).tolist()
        names = ("images", "state", "command", "action")
        arrays = {k: np.ascontiguousarray(np.concatenate([getattr(f, k) for f in parts])) for k in names}
        for f, a, b in zip(parts, offsets[:-1], offsets[1:]):
            for k in names:
                setattr(f, k, arrays[k][a:b])
        ep_end = np.concatenate([f.ep_end + o for f, o in zip(parts, offsets)])
        return cls(parts[0].spec, ep_end=ep_end, **arrays)

    def batch(self, idx: np.ndarray, chunk: int) -> Batch:
        """idx [B] int64 frame indices -> one embodiment's training batch."""
        end = self.ep_end[idx]  # [B]
        t = idx[:, None] + np.arange(chunk)  # [B, H]
        a_idx = np.minimum(t, end[:, None] - 1)
        nxt = idx + chunk  # [B]
        n_idx = np.minimum(nxt, end - 1)
        arrays = {
            "image": self.images[idx][:, None],  # [B, 1, C, 3, H, W]
            "proprio": self.state[idx][:, None],  # [B, 1, Dp]
            "command": self.command[idx],  # [B, Dc]
            "action": self.action[a_idx],  # [B, H, A]
            "action_is_pad": t >= end[:, None],  # [B, H]
            "next_image": self.images[n_idx][:, None],
            "next_proprio": self.state[n_idx][:, None],
            "next_is_pad": nxt >= end,  # [B]
            "index": idx,
        }
        return {"embodiment": self.spec.name, **{k: torch.from_numpy(v) for k, v in arrays.items()}}


class MultiEmbodimentLoader:
    """Weighted mixture of LeRobot datasets -> steps of {embodiment: batch} (see the module docstring).

    datasets: paths, or a mapping path -> sampling weight; weights: per dataset (default: equal).
    frames: already-loaded `Frames` by path, used instead of loading those datasets again.
    steps: stop after this many steps when iterating (None: forever).
    transition_weight: {embodiment: w}: within that embodiment's datasets, a frame in the first
    `transition_seconds` after the command changed (within an episode) is drawn w times as often as
    any other frame (w >= 1; embodiments not named are uniform). Closed-loop policies fail most right
    after a switch (a walking humanoid told to stand), which a few dozen episodes hold few of."""

    def __init__(self, datasets: Sequence[str | Path] | Mapping[str | Path, float], weights: Sequence[float] | None = None,
                 batch_size: int = 64, chunk_size: int = 8, seed: int = 0, steps: int | None = None,
                 device: str | torch.device | None = None, cache_stats: bool = True,
                 frames: Mapping[str, Frames] | None = None, transition_weight: Mapping[str, float] | None = None,
                 transition_seconds: float = 1.5):
        if isinstance(datasets, Mapping):
            if weights is not None:
                raise ConfigError("give weights either in the datasets mapping or as `weights`, not both")
            datasets, weights = list(datasets), list(datasets.values())
        paths = [Path(p) for p in datasets]
        if not paths:
            raise ConfigError("MultiEmbodimentLoader needs at least one dataset")
        weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
        if len(weights) != len(paths) or any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"weights must be {len(paths)} finite non-negative numbers with a positive sum, got {weights}")
        if batch_size < 1 or chunk_size < 1:
            raise ConfigError(f"batch_size and chunk_size must be >= 1, got {batch_size}, {chunk_size}")
        self.paths, self.batch_size, self.chunk_size = paths, int(batch_size), int(chunk_size)
        self.seed, self.steps, self.device, self.cache_stats = int(seed), steps, device, cache_stats
        given = {str(Path(k)): v for k, v in (frames or {}).items()}  # already-loaded datasets (reused, not re-decoded)
        self.frames = [given[str(p)] if str(p) in given else load_frames(p) for p in paths]
        self.probs = np.asarray(weights, dtype=np.float64) / sum(weights)
        by_emb: dict[str, list[int]] = {}
        for i, f in enumerate(self.frames):
            by_emb.setdefault(f.spec.name, []).append(i)
        self.embodiments = list(by_emb)
        self.specs = {e: self.frames[ids[0]].spec for e, ids in by_emb.items()}
        self._pools = {e: _Pool.build([self.frames[i] for i in ids]) for e, ids in by_emb.items()}
        self._src_emb = [f.spec.name for f in self.frames]
        offs: dict[str, int] = {}
        self._src_off = []
        for f in self.frames:
            self._src_off.append(offs.get(f.spec.name, 0))
            offs[f.spec.name] = self._src_off[-1] + len(f)
        self._src_len = [len(f) for f in self.frames]
        self.transition_weight = {str(k): float(v) for k, v in (transition_weight or {}).items()}
        self.transition_seconds = float(transition_seconds)
        for emb, w in self.transition_weight.items():
            if not np.isfinite(w) or w < 1:
                raise ConfigError(f"transition_weight['{emb}'] must be a finite number >= 1, got {w}")
        if not np.isfinite(self.transition_seconds) or self.transition_seconds <= 0:
            raise ConfigError(f"transition_seconds must be > 0, got {transition_seconds}")
        # per dataset: None (uniform) or the cumulative frame-sampling distribution
        self._src_cdf = [self._transition_cdf(f) for f in self.frames]
        self.stats_source: dict[str, str] = {}  # dataset path -> "cache" | "computed"
        self._normalizer_stats: dict[str, dict] | None = None
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        self.step = 0

    # ---- sampling --------------------------------------------------------------------------
    def _transition_cdf(self, f: Frames) -> np.ndarray | None:
        w = self.transition_weight.get(f.spec.name, 1.0)
        if w == 1.0 or len(f) == 0:
            return None
        return np.cumsum(self.frame_weights(f, w, self.transition_seconds))

    @staticmethod
    def frame_weights(f: Frames, weight: float, seconds: float) -> np.ndarray:
        """[N] float64: `weight` for frames less than `seconds` after a command change inside their
        episode (the change's own frame included), 1 elsewhere."""
        n = len(f)
        window = max(1, int(round(seconds * f.spec.control_hz)))
        changed = np.any(f.command[1:] != f.command[:-1], axis=1) & (f.ep_start[1:] == f.ep_start[:-1])
        t = np.flatnonzero(changed) + 1  # frames where a new command starts
        marks = np.zeros(n + 1, dtype=np.int64)
        np.add.at(marks, t, 1)
        np.add.at(marks, np.minimum(t + window, f.ep_end[t]), -1)
        out = np.ones(n, dtype=np.float64)
        out[np.cumsum(marks[:n]) > 0] = weight
        return out

    def num_frames(self) -> dict[str, int]:
        return {e: int(p.state.shape[0]) for e, p in self._pools.items()}

    def sample(self) -> dict[str, Batch]:
        """One mixed step: {embodiment: batch}."""
        counts = self._rng.multinomial(self.batch_size, self.probs)  # per dataset
        picks: dict[str, list[np.ndarray]] = {}
        for s, c in enumerate(counts):
            if c:
                off, cdf = self._src_off[s], self._src_cdf[s]
                if cdf is None:
                    local = self._rng.integers(0, self._src_len[s], c)
                else:
                    local = np.minimum(np.searchsorted(cdf, self._rng.random(c) * cdf[-1], side="right"),
                                       self._src_len[s] - 1)
                picks.setdefault(self._src_emb[s], []).append(off + local)
        self.step += 1
        out = {}
        for emb in self.embodiments:  # fixed order: deterministic dict order
            if emb in picks:
                b = self._pools[emb].batch(np.concatenate(picks[emb]), self.chunk_size)
                if self.device is not None:
                    b = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in b.items()}
                out[emb] = b
        return out

    def __iter__(self) -> Iterator[dict[str, Batch]]:
        while self.steps is None or self.step < self.steps:
            yield self.sample()

    def batch_for(self, embodiment: str, indices: Sequence[int]) -> Batch:
        """A batch of given frame indices of one embodiment's pool (evaluation, tests)."""
        if embodiment not in self._pools:
            raise ConfigError(f"no dataset of embodiment '{embodiment}' (have {self.embodiments})")
        return self._pools[embodiment].batch(np.asarray(indices, dtype=np.int64).reshape(-1), self.chunk_size)

    # ---- resumable state -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "step": self.step, "rng": self._rng.bit_generator.state,
                "batch_size": self.batch_size, "chunk_size": self.chunk_size, "probs": self.probs.tolist(),
                "fingerprints": [f.fingerprint for f in self.frames],
                "transition": {"weight": self.transition_weight, "seconds": self.transition_seconds}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue exactly where `state` was taken; the data and sampling setup must be the same."""
        for key, mine in (("batch_size", self.batch_size), ("chunk_size", self.chunk_size),
                          ("fingerprints", [f.fingerprint for f in self.frames])):
            if state.get(key) != mine:
                raise ConfigError(f"loader state was saved with {key}={state.get(key)!r}, this loader has {mine!r}")
        mine_t = {"weight": self.transition_weight, "seconds": self.transition_seconds}
        saved_t = state.get("transition", {"weight": {}, "seconds": self.transition_seconds})  # older states: uniform
        if saved_t["weight"] != mine_t["weight"] or (mine_t["weight"] and saved_t["seconds"] != mine_t["seconds"]):
            raise ConfigError(f"loader state was saved with transition sampling {saved_t}, this loader has {mine_t} "
                              f"(resume with the settings the run started with, e.g. data.record.humanoid.transition_weight)")
        if not np.allclose(state.get("probs", []), self.probs):
            raise ConfigError(f"loader state was saved with weights {state.get('probs')}, this loader has {self.probs.tolist()}")
        self._rng.bit_generator.state = state["rng"]
        self.step, self.seed = int(state["step"]), int(state["seed"])

    # ---- normalization ---------------------------------------------------------------------
    def stats(self) -> dict[str, dict]:
        """{embodiment: {"proprio": stats, "action": stats}} (cached per dataset)."""
        if self._normalizer_stats is None:
            parts: dict[str, list] = {}
            for f in self.frames:
                st, src = dataset_stats(f, use_cache=self.cache_stats)
                self.stats_source[str(f.root)] = src
                parts.setdefault(f.spec.name, []).append((st, len(f)))
            self._normalizer_stats = {e: merge_stats(p) for e, p in parts.items()}
        return self._normalizer_stats

    def normalizer(self, modes: Mapping[str, str] | None = None) -> Normalizer:
        norm = Normalizer(modes=dict(modes)) if modes is not None else Normalizer()
        for emb, st in self.stats().items():
            spec = self.specs[emb]
            for key, want in (("proprio", spec.proprio_dim), ("action", spec.action_dim)):
                got = st[key]["mean"].shape[-1]
                if got != want:
                    raise SpecMismatchError(emb, f"normalization.{key} dim", want, got)
            norm.stats[emb] = {k: dict(v) for k, v in st.items()}
        return norm
