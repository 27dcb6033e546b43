"""highway-env scenarios driven with continuous (acceleration, steering) actions.

Each scenario is a thin subclass of an upstream highway-env environment plus a table entry
(`SCENARIOS`) with the config overrides physai needs: `ContinuousAction` with ranges equal to the
`car` spec bounds (so unit conversion is exact), policy frequency 5 Hz, no reversing, and a cheap
null observation (physai renders its own image; the upstream pandas-based Kinematics observation
would cost more than the simulation). The subclasses also work around three upstream defects
with continuous actions (highway-env 1.12.1): `merge-v0` and `roundabout-v0` crash in their reward
(`action in [0, 2]` on an array raises "truth value of an array is ambiguous"), and `two-way-v0`
reads the discrete meta-action vehicle's `speed_index`/`target_speeds`/`target_lane_index`, which a
continuously driven `Vehicle` does not have. The rewards below keep the upstream terms and
weights; "lane change" becomes "the ego's lane id changed during this step" and the discrete speed
index becomes the same linear speed scale. Two more intersection quirks are handled: upstream
mutates `IDMVehicle`'s class attributes on every reset (leaking into other scenarios; its traffic
here is a private subclass), and it spawns traffic once per policy step with a probability
calibrated at 1 Hz (rescaled here to keep the per-second rate at 5 Hz).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces
from highway_env import utils
from highway_env.envs.common.abstract import AbstractEnv
from highway_env.envs.common.observation import ObservationType
from highway_env.envs.highway_env import HighwayEnvFast
from highway_env.envs.intersection_env import IntersectionEnv
from highway_env.envs.merge_env import MergeEnv
from highway_env.envs.racetrack_env import RacetrackEnv
from highway_env.envs.roundabout_env import RoundaboutEnv
from highway_env.envs.two_way_env import TwoWayEnv
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.controller import ControlledVehicle

from physai.errors import ConfigError

ACCEL_RANGE = (-5.0, 5.0)  # m/s^2, equals the car spec's accel bounds
STEER_RANGE = (-math.pi / 4, math.pi / 4)  # rad, equals the car spec's steer bounds
POLICY_HZ = 5  # equals the car spec's control_hz


class _NullObservation(ObservationType):
    """Upstream observation slot filler: physai builds its own observation."""

    _ZERO = np.zeros(1, dtype=np.float32)

    def space(self) -> spaces.Space:
        return spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)

    def observe(self) -> np.ndarray:
        return self._ZERO


class _PhysaiMixin:
    """Null observation + bookkeeping of the ego's lane id across a step (for lane-change rewards)."""

    _lane_id_before_step: int | None = None

    def define_spaces(self) -> None:
        super().define_spaces()
        self.observation_type = _NullObservation(self)
        self.observation_space = self.observation_type.space()

    def step(self, action):
        self._lane_id_before_step = self.vehicle.lane_index[2] if self.vehicle is not None else None
        return super().step(action)

    def _lane_changed(self) -> float:
        before = self._lane_id_before_step
        return float(before is not None and self.vehicle.lane_index[2] != before)


class PhysaiHighway(_PhysaiMixin, HighwayEnvFast):
    pass


class PhysaiMerge(_PhysaiMixin, MergeEnv):
    def _rewards(self, action) -> dict[str, float]:
        # upstream: "lane_change_reward": action in [0, 2]  -> crashes on an array action
        scaled_speed = utils.lmap(self.vehicle.speed, self.config["reward_speed_range"], [0, 1])
        return {
            "collision_reward": float(self.vehicle.crashed),
            "right_lane_reward": self.vehicle.lane_index[2] / 1,
            "high_speed_reward": scaled_speed,
            "lane_change_reward": self._lane_changed(),
            "merging_speed_reward": sum(
                (v.target_speed - v.speed) / v.target_speed
                for v in self.road.vehicles
                if v.lane_index == ("b", "c", 2) and isinstance(v, ControlledVehicle)
            ),
        }


class PhysaiRoundabout(_PhysaiMixin, RoundaboutEnv):
    def _rewards(self, action) -> dict[str, float]:
        # upstream: MDPVehicle speed index + `action in [0, 2]` -> crashes on an array action
        return {
            "collision_reward": float(self.vehicle.crashed),
            "high_speed_reward": float(np.clip(utils.lmap(self.vehicle.speed, [20, 30], [0, 1]), 0, 1)),
            "lane_change_reward": self._lane_changed(),
            "on_road_reward": float(self.vehicle.on_road),
        }


class IntersectionIDMVehicle(IDMVehicle):
    """Traffic for the intersection. Upstream `IntersectionEnv._make_vehicles` overwrites the class
    attributes DISTANCE_WANTED/COMFORT_ACC_* of its traffic class on every reset; with the default
    `IDMVehicle` that leaks into every other scenario created later in the same process (traffic,
    hence seeded episodes, would depend on which envs ran before). This subclass absorbs it."""


class PhysaiIntersection(_PhysaiMixin, IntersectionEnv):
    def step(self, action):
        # upstream spawns traffic once per policy step with a probability calibrated at 1 Hz; keep
        # its per-second rate at 5 Hz
        self._lane_id_before_step = self.vehicle.lane_index[2]
        out = AbstractEnv.step(self, action)
        self._clear_vehicles()
        p = 1.0 - (1.0 - self.config["spawn_probability"]) ** (1.0 / self.config["policy_frequency"])
        self._spawn_vehicle(spawn_probability=p)
        return out


class PhysaiRacetrack(_PhysaiMixin, RacetrackEnv):
    pass


class PhysaiTwoWay(_PhysaiMixin, TwoWayEnv):
    def _rewards(self, action) -> dict[str, float]:
        # upstream reads MDPVehicle.speed_index / target_speeds / target_lane_index -> AttributeError
        neighbours = self.road.network.all_side_lanes(self.vehicle.lane_index)
        return {
            "high_speed_reward": float(np.clip(utils.lmap(self.vehicle.speed, [20, 30], [0, 1]), 0, 1)),
            "left_lane_reward": (len(neighbours) - 1 - self.vehicle.lane_index[2]) / (len(neighbours) - 1),
        }


@dataclass(frozen=True)
class Scenario:
    name: str  # physai scenario name; the gymnasium id is f"physai/car-{name}"
    cls: type  # highway-env environment class (with the fixes above)
    upstream_id: str  # the highway-env id it reproduces
    default_speed: float  # m/s: default `speed` command (the scenario's natural target)
    destination: str | None = None  # road-network node the ego heads for (routes at junctions)
    centering: tuple[float, float] = (0.5, 0.5)  # ego position in the image, fraction of (W, H)
    view_m: float = 50.0  # metres covered by the image width
    config: dict[str, Any] = field(default_factory=dict)  # scenario-specific highway-env overrides
    registered: bool = True  # exposed as a gymnasium id (two-way is reachable via CarEnv only)
    yield_at: tuple[tuple[str, str], ...] = ()  # road segments (from, to) whose end the ego must yield at


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("highway", PhysaiHighway, "highway-fast-v0", 25.0, centering=(0.3, 0.5)),
        Scenario("merge", PhysaiMerge, "merge-v0", 25.0, centering=(0.3, 0.5), config={"duration": 40}),
        Scenario("racetrack", PhysaiRacetrack, "racetrack-v0", 10.0, view_m=40.0),
        Scenario("roundabout", PhysaiRoundabout, "roundabout-v0", 14.0, destination="nxs", view_m=60.0,
                 yield_at=(("ses", "se"), ("ees", "ee"), ("nes", "ne"), ("wes", "we"))),
        Scenario("intersection", PhysaiIntersection, "intersection-v0", 9.0, destination="o1", view_m=60.0,
                 config={"other_vehicles_type": f"{__name__}.IntersectionIDMVehicle"},
                 yield_at=tuple((f"o{k}", f"ir{k}") for k in range(4))),
        Scenario("two-way", PhysaiTwoWay, "two-way-v0", 25.0, centering=(0.3, 0.5), config={"duration": 40},
                 registered=False),
    )
}


def base_config() -> dict[str, Any]:
    """highway-env config shared by every scenario (continuous action in the car spec's units)."""
    return {
        "action": {
            "type": "ContinuousAction",
            "acceleration_range": ACCEL_RANGE,
            "steering_range": STEER_RANGE,
            "speed_range": (0.0, 40.0),  # no reversing; 40 m/s is highway-env's max speed
            "longitudinal": True,
            "lateral": True,
            "clip": True,
        },
        "policy_frequency": POLICY_HZ,
        "offscreen_rendering": True,
        "show_trajectories": False,
    }


def get_scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise ConfigError(f"car scenario '{name}' is unknown; choose one of {sorted(SCENARIOS)}")
    return SCENARIOS[name]
