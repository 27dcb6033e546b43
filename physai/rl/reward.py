"""Rule-based reward models: named terms in plain Python, composed additively or multiplicatively.

A `RewardTerm` maps one control step (`Step`: the env's documented `info` after the step, the
previous `info`, the executed action, the previous one, dt and the guard's interventions this
step) to a number: a `bonus` (e.g. progress) or a non-negative `penalty` magnitude (e.g. 1 on a
collision). Terms read only the documented per-step signals the safety guards and metrics read
(`info["sensors"]`, speed, progress, command, ...), so a model scores logged data as well as
roll-outs. A `RewardModel` composes them:

- additive: r = Σ_bonus w·v − Σ_penalty w·v
- multiplicative (CaRL): r = (Σ_bonus w·v) × Π_penalty max(0, 1 − w·v): every infraction scales
  the step's progress down instead of being traded against it, which CaRL found PPO optimises
  reliably at large batch.

Every term's weighted contribution is returned per step, so each is logged separately. Named
models live in `REWARDS` (body families register theirs: `car`, `car-carl`, `humanoid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from physai.errors import ConfigError
from physai.registry import Registry


@dataclass(frozen=True)
class Step:
    """One control step's signals."""

    info: Mapping[str, Any]  # the env's info after the step (documented per family)
    prev: Mapping[str, Any] | None  # the info before it (reset's info at the first step)
    action: Any  # executed action (after the guard), physical units
    prev_action: Any | None  # the executed action of the step before (None at the first step)
    dt: float  # control period, s
    interventions: Mapping[str, int] = field(default_factory=dict)  # guard rule -> count this step


@dataclass(frozen=True)
class RewardTerm:
    name: str
    fn: Callable[[Step], float]
    weight: float = 1.0
    kind: str = "penalty"  # "bonus" (added / the multiplicative base) or "penalty" (magnitude >= 0)
    group: str = ""  # safety | efficiency | compliance | comfort | tracking ... (for tables)

    def __post_init__(self):
        if self.kind not in ("bonus", "penalty"):
            raise ConfigError(f"reward term '{self.name}': kind must be 'bonus' or 'penalty', got {self.kind!r}")
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and self.weight >= 0):
            raise ConfigError(f"reward term '{self.name}': weight must be a finite number >= 0, got {self.weight!r}")


class RewardModel:
    """Terms + a composition; `reset(info)` at each episode start, then `step(...)` per control step."""

    def __init__(self, terms: Sequence[RewardTerm], composition: str = "additive", name: str = ""):
        if composition not in ("additive", "multiplicative"):
            raise ConfigError(f"reward composition must be 'additive' or 'multiplicative', got {composition!r}")
        names = [t.name for t in terms]
        if len(set(names)) != len(names) or not names:
            raise ConfigError(f"reward terms need unique names, got {names}")
        if composition == "multiplicative" and not any(t.kind == "bonus" for t in terms):
            raise ConfigError("a multiplicative reward needs at least one bonus term (its base)")
        self.terms, self.composition, self.name = tuple(terms), composition, name
        self._prev, self._prev_action = None, None

    @property
    def term_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.terms)

    def with_weights(self, weights: Mapping[str, float]) -> "RewardModel":
        """A copy with some terms' weights changed (unknown names are a ConfigError)."""
        unknown = set(weights) - set(self.term_names)
        if unknown:
            raise ConfigError(f"reward '{self.name}' has no terms {sorted(unknown)}; terms: {list(self.term_names)}")
        return RewardModel([replace(t, weight=float(weights.get(t.name, t.weight))) for t in self.terms],
                           self.composition, self.name)

    def reset(self, info: Mapping[str, Any] | None) -> None:
        self._prev, self._prev_action = info, None

    def step(self, info: Mapping[str, Any], action: Any, dt: float,
             interventions: Mapping[str, int] | None = None) -> tuple[float, dict[str, float]]:
        """(reward, {term: weighted contribution}) of one step; advances the model's memory."""
        s = Step(info, self._prev, action, self._prev_action, float(dt), dict(interventions or {}))
        self._prev, self._prev_action = info, action
        return self.score(s)

    def score(self, s: Step) -> tuple[float, dict[str, float]]:
        """The reward of one `Step` (stateless; `step` builds the Step from its memory)."""
        raw = {}
        for t in self.terms:
            v = float(t.fn(s))
            if not math.isfinite(v):
                raise ConfigError(f"reward term '{t.name}' returned {v} for this step")
            if t.kind == "penalty" and v < 0:
                raise ConfigError(f"reward term '{t.name}' is a penalty and must be >= 0, got {v}")
            raw[t.name] = v
        base = sum(t.weight * raw[t.name] for t in self.terms if t.kind == "bonus")
        if self.composition == "additive":
            parts = {t.name: (t.weight if t.kind == "bonus" else -t.weight) * raw[t.name] for t in self.terms}
            return sum(parts.values()), parts
        parts = {t.name: t.weight * raw[t.name] for t in self.terms if t.kind == "bonus"}
        r = base
        for t in self.terms:
            if t.kind == "penalty":
                f = max(0.0, 1.0 - t.weight * raw[t.name])
                parts[t.name] = r * f - r  # what this factor took away (<= 0 for a positive base)
                r *= f
        return r, parts

    def episode(self, infos: Sequence[Mapping[str, Any]], actions: Sequence[Any], dt: float,
                interventions: Sequence[Mapping[str, int]] | None = None) -> tuple[float, dict[str, float]]:
        """Score a logged episode: infos[0] is the reset info, infos[t + 1] follows actions[t].
        Returns (total reward, {term: total contribution})."""
        if len(infos) != len(actions) + 1:
            raise ConfigError(f"episode(): need len(infos) == len(actions) + 1, got {len(infos)} and {len(actions)}")
        self.reset(infos[0])
        total, parts = 0.0, {n: 0.0 for n in self.term_names}
        for t, a in enumerate(actions):
            r, p = self.step(infos[t + 1], a, dt, interventions[t] if interventions else None)
            total += r
            for k, v in p.items():
                parts[k] += v
        return total, parts


REWARDS: Registry[Callable[[], RewardModel]] = Registry("reward model")


def get_reward(name: str, weights: Mapping[str, float] | None = None) -> RewardModel:
    """A registered reward model by name, with optional weight overrides."""
    from physai.sim.family import families

    families()  # importing the families registers their reward models
    model = REWARDS.get(name)()
    return model.with_weights(weights) if weights else model
