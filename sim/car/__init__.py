"""Driving simulation: highway-env scenarios in the `car` spec's units, an IDM/MOBIL expert, metrics.

`register_envs()` registers the gymnasium ids in `ENV_IDS` (`physai/car-highway` = highway-fast,
`physai/car-merge`, `physai/car-racetrack`, `physai/car-roundabout`, `physai/car-intersection`);
each is a `CarEnv` (see `physai.sim.car.env` for units, sign conventions and the command
semantics). `CarEnv(scenario="two-way")` also works (upstream `two-way-v0` cannot take continuous
actions; the scenario subclass fixes it) but is not registered. `CarExpert` (in `.expert`) drives
any of them from the current state only, so it can relabel DAgger roll-outs; `EpisodeMetrics` and
`run_episode` (in `.metrics`) score episodes; `python -m physai.sim.car.measure` measures them.
"""

from __future__ import annotations

import math

from physai.embodiments import get_spec

# the `stop` command meaning "no stop requested": the car spec's upper bound for it (metres)
STOP_NONE_M: float = float(next(f.high for f in get_spec("car").command if f.name == "stop"))

# kept literal so that importing this package stays cheap (no highway-env import); a test checks it
# against `scenarios.SCENARIOS`
ENV_IDS: tuple[str, ...] = (
    "physai/car-highway",
    "physai/car-merge",
    "physai/car-racetrack",
    "physai/car-roundabout",
    "physai/car-intersection",
)


# each scenario's default episode length (its highway-env `duration`, s; a test checks it) and the
# control rate, so the registered specs carry `max_episode_steps` for gymnasium/LeRobot tooling
DEFAULT_SECONDS: dict[str, float] = {
    "physai/car-highway": 30.0,
    "physai/car-merge": 40.0,
    "physai/car-racetrack": 300.0,
    "physai/car-roundabout": 11.0,
    "physai/car-intersection": 13.0,
}
CONTROL_HZ = 5.0


def episode_steps(seconds: float) -> int:
    """Env steps in an episode of `seconds` (the env truncates at the first step at or past it)."""
    return int(math.ceil(seconds * CONTROL_HZ - 1e-9))


def register_envs() -> None:
    """Register every id in `ENV_IDS` with gymnasium (idempotent)."""
    import gymnasium

    for env_id in ENV_IDS:
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point="physai.sim.car.env:CarEnv",
            kwargs={"scenario": env_id.removeprefix("physai/car-")},
            max_episode_steps=episode_steps(DEFAULT_SECONDS[env_id]),
        )


register_envs()  # at import: `import physai.sim` (or gym.make("physai.sim:physai/car-highway")) is enough


def __getattr__(name: str):  # lazy: importing the package must not import pygame/highway-env envs
    if name == "CarEnv":
        from physai.sim.car.env import CarEnv

        return CarEnv
    if name == "CarExpert":
        from physai.sim.car.expert import CarExpert

        return CarExpert
    if name in ("EpisodeMetrics", "run_episode"):
        from physai.sim.car import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module 'physai.sim.car' has no attribute {name!r}")


__all__ = ["ENV_IDS", "DEFAULT_SECONDS", "episode_steps", "register_envs", "CarEnv", "CarExpert", "EpisodeMetrics", "run_episode"]
