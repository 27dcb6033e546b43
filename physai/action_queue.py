"""`ActionQueue`: the runtime state between predicted action chunks and executed actions.

A policy predicts a chunk of H actions; the queue hands them out one per control step and says
when a new chunk is needed (after `n_action_steps`), or, with ACT-style temporal ensembling
(`temporal_ensemble=m`), asks for a chunk every step and averages the overlapping predictions
with weights exp(-m·i), oldest first. It holds tensors of any leading shape ([B, H, A] chunks
give [B, A] actions), so `Policy.select_action` keeps one per embodiment and the roll-out runner
one per environment slot. It lives outside the `nn.Module`, as DESIGN asks of runtime state.
"""

from __future__ import annotations

import math
from collections import deque

import torch


class ActionQueue:
    def __init__(self, n_action_steps: int | None = None, temporal_ensemble: float | None = None):
        self.n_action_steps = n_action_steps  # actions executed per chunk (None = the whole chunk)
        self.temporal_ensemble = temporal_ensemble  # ensembling coefficient m (None = plain queue)
        self._q: deque = deque()

    def reset(self) -> None:
        self._q.clear()

    def needs_chunk(self, batch: int | None = None) -> bool:
        """True when the next action needs a fresh chunk (always, with ensembling)."""
        if self.temporal_ensemble is not None or not self._q:
            return True
        return batch is not None and self._q[0].shape[0] != batch  # the queued plan belongs to another batch

    def push(self, chunk: torch.Tensor) -> None:
        """Add a predicted chunk [..., H, A] (its time axis is dim -2)."""
        if self.temporal_ensemble is not None:
            if self._q and self._q[0][0].shape[:-2] != chunk.shape[:-2]:
                self._q.clear()  # another batch: its old chunks cannot be averaged with this one
            self._q.append([chunk, 0])
            while self._q and self._q[0][1] >= chunk.shape[-2]:
                self._q.popleft()
            return
        self._q.clear()
        n = self.n_action_steps or chunk.shape[-2]
        self._q.extend(chunk[..., i, :] for i in range(n))

    def pop(self) -> torch.Tensor:
        """The action to execute now [..., A]."""
        if self.temporal_ensemble is None:
            return self._q.popleft()
        m = self.temporal_ensemble
        ws = torch.tensor([math.exp(-m * i) for i in range(len(self._q))], device=self._q[0][0].device)
        acts = torch.stack([c[..., age, :] for c, age in self._q])  # [N, ..., A] oldest first
        for item in self._q:
            item[1] += 1
        return (acts * ws.view(-1, *([1] * (acts.dim() - 1)))).sum(0) / ws.sum()
