"""Safety layers: classic rules outside the learned model that may veto its actions.

The model drives, the guard vetoes. `CarSafety` is an automatic emergency brake fed by the
simulator's "radar" (gap and closing speed to the vehicle ahead in the ego lane): below a
time-to-collision threshold it overrides the longitudinal command with full braking.
`HumanoidSafety` keeps joint targets inside the joint limits and limits how far a target may jump
from the previous one in one control step. Both count their interventions, and both are applied
by the closed-loop evaluator unless `--no-safety` is given. Neither is differentiable or trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from physai.embodiments.spec import EmbodimentSpec


@dataclass
class CarSafety:
    spec: EmbodimentSpec
    ttc_s: float = 1.5  # brake hard when the time to collision drops below this
    min_gap_m: float = 4.0  # ... or the bumper-to-bumper gap below this
    interventions: int = 0

    def reset(self) -> None:
        self.interventions = 0

    @staticmethod
    def front_gap(env) -> tuple[float, float]:
        """(gap m, closing speed m/s) to the vehicle ahead in the ego lane; (inf, 0) when free."""
        sim = getattr(env.unwrapped, "sim", None)
        ego = getattr(sim, "vehicle", None)
        if ego is None or sim.road is None:
            return float("inf"), 0.0
        front, _ = sim.road.neighbour_vehicles(ego, ego.lane_index)
        if front is None:
            return float("inf"), 0.0
        lane = ego.lane
        gap = lane.local_coordinates(front.position)[0] - lane.local_coordinates(ego.position)[0]
        gap -= (ego.LENGTH + front.LENGTH) / 2
        return float(gap), float(ego.speed - front.speed)

    def filter(self, action: np.ndarray, env) -> np.ndarray:
        a = self.spec.clip_action(action)
        gap, closing = self.front_gap(env)
        ttc = gap / closing if closing > 1e-3 else float("inf")
        if gap < self.min_gap_m or ttc < self.ttc_s:
            if a[0] > self.spec.action_low[0]:
                self.interventions += 1
            a = a.copy()
            a[0] = self.spec.action_low[0]
        return a


@dataclass
class HumanoidSafety:
    spec: EmbodimentSpec
    max_step_rad: float = 0.35  # largest change of a joint target per 50 Hz step
    interventions: int = 0
    _last: np.ndarray | None = field(default=None, repr=False)

    def reset(self) -> None:
        self.interventions, self._last = 0, None

    def filter(self, action: np.ndarray, env) -> np.ndarray:
        a = self.spec.clip_action(action)
        if self._last is not None:
            lo, hi = self._last - self.max_step_rad, self._last + self.max_step_rad
            b = np.clip(a, lo, hi)
            if not np.array_equal(a, b):
                self.interventions += 1
            a = b
        self._last = a.copy()
        return a


def make_safety(spec: EmbodimentSpec):
    return CarSafety(spec) if spec.name == "car" else HumanoidSafety(spec)
