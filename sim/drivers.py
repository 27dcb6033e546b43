"""Drivers: who picks the actions of a roll-out (`physai.sim.rollout.run_episodes`).

`ExpertDriver` lets each slot's family expert drive; `PolicyDriver` runs one batched forward of a
physai `Policy` (or anything with its inference interface: a `Planner`, an `ExportedPolicy`) for
every slot that needs a plan, with an action queue per slot; `StepDriver` wraps any
per-observation `select_action` (LeRobot baselines) one slot at a time; `MixDriver` executes a
second driver's action with probability beta per step (DAgger's mixed roll-out policy).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np


class Driver(Protocol):
    """Who picks the actions: a batched policy, or the expert inside each slot (`in_slot`)."""

    in_slot: bool  # True: the slot's expert drives (no actions are sent)
    max_slots: int | None  # None = any number of envs at once

    def reset(self, slot: int) -> None: ...

    def act(self, obs: list[dict], slots: list[int]) -> list[np.ndarray]: ...

    # optional: `episode_stats(slot) -> dict[str, float]`, merged into the ending episode's metrics
    # (PolicyDriver reports `nonfinite_actions`, the NaN/inf actions it replaced)
    # optional: `feedback(slot, fb)` after every step of an episode with a `reward`: fb = {"reward",
    # "terms", "done" (the episode ended), "terminated" (by the env, not the time limit), "final_obs"
    # (the observation after the last step of a truncated episode, for bootstrapping)}


class ExpertDriver:
    """The family's expert drives, inside each slot (it reads the env's state)."""

    in_slot, max_slots = True, None

    def __init__(self, env_id: str | None = None):
        pass

    def reset(self, slot: int) -> None:
        pass

    def act(self, obs, slots):
        raise RuntimeError("the expert acts inside the env slot")


class PolicyDriver:
    """A physai `Policy` for one embodiment: one batched forward for every slot that needs a plan;
    each slot keeps its own `ActionQueue` (chunking / temporal ensembling)."""

    in_slot, max_slots = False, None

    def __init__(self, policy, embodiment: str, optimize: bool = True):
        from physai.action_queue import ActionQueue

        self.policy, self.emb = policy, embodiment
        self.spec = policy.specs[embodiment]
        if optimize:
            policy.eval().optimize_for_inference()
        self._queues: dict[int, Any] = {}
        self._subs: dict[int, Any] = {}  # per slot: NaN/inf actions replaced this episode
        self._new_queue = lambda: ActionQueue(policy.config.n_action_steps, policy.config.temporal_ensemble)

    def reset(self, slot: int) -> None:
        from physai.validate import Substitutions

        self._queues[slot] = self._new_queue()
        self._subs[slot] = Substitutions(f"{type(self.policy).__name__}[{self.emb}]")

    def episode_stats(self, slot: int) -> dict[str, float]:
        return {"nonfinite_actions": float(self._subs[slot].episode)} if slot in self._subs else {}

    def act(self, obs, slots):
        import torch

        from physai.validate import obs_from_env

        qs = [self._queues[s] if s in self._queues else (self.reset(s) or self._queues[s]) for s in slots]
        need = [i for i, q in enumerate(qs) if q.needs_chunk()]
        if need:
            batch = [obs_from_env(obs[i], self.spec) for i in need]
            stacked = {k: np.concatenate([b[k][None] for b in batch]) for k in ("image", "proprio", "command")}
            chunks = self.policy.predict_action_chunk(stacked, self.emb, substitute=False)  # [n, H, A]
            for j, i in enumerate(need):
                qs[i].push(chunks[j])
        with torch.no_grad():
            return [self._subs[s](q.pop()[None], self.spec)[0].cpu().numpy().astype(np.float32)
                    for s, q in zip(slots, qs)]


class StepDriver:
    """Any per-observation policy (`select_action(obs) -> action`, e.g. a LeRobot baseline or a
    `SafePolicy`-less script): one slot at a time, since such policies keep one action queue."""

    in_slot, max_slots = False, 1

    def __init__(self, fn: Callable[[dict], Any], reset: Callable[[], None] | None = None, spec=None):
        self.fn, self._reset, self.spec = fn, reset, spec

    def reset(self, slot: int) -> None:
        if self._reset is not None:
            self._reset()

    def act(self, obs, slots):
        from physai.validate import obs_from_env

        outs = []
        for o in obs:
            a = self.fn(obs_from_env(o, self.spec) if self.spec is not None else o)
            a = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
            outs.append(np.asarray(a, dtype=np.float32))
        return outs


class MixDriver:
    """DAgger's mixture: both drivers see every step (their queues stay in step), and each slot
    executes `other`'s action with probability `beta`, `main`'s otherwise. beta = 0 is `main`
    alone. Used by distillation so a student that falls at once still visits the states after its
    first mistakes, with the teacher catching it often enough to carry on."""

    in_slot = False

    def __init__(self, main, other, beta: float, seed: int = 0):
        if not 0 <= beta <= 1:
            raise ValueError(f"MixDriver beta must be in [0, 1], got {beta!r}")
        if main.in_slot or other.in_slot:
            raise ValueError("MixDriver mixes batched drivers, not in-slot experts")
        self.main, self.other, self.beta = main, other, float(beta)
        self.max_slots = min((m for m in (main.max_slots, other.max_slots) if m is not None), default=None)
        self.rng = np.random.default_rng([seed, 41])
        self.steps = self.other_steps = 0

    def reset(self, slot: int) -> None:
        self.main.reset(slot)
        self.other.reset(slot)

    def episode_stats(self, slot: int) -> dict[str, float]:
        return getattr(self.main, "episode_stats", lambda s: {})(slot)

    def act(self, obs, slots):
        a, b = self.main.act(obs, slots), self.other.act(obs, slots)
        pick = self.rng.random(len(slots)) < self.beta
        self.steps += len(slots)
        self.other_steps += int(pick.sum())
        return [y if p else x for x, y, p in zip(a, b, pick)]
