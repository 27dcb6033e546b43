"""MuJoCo humanoid walking: `physai/g1-walk` (Unitree G1, 29 joints) and `physai/t1-walk` (Booster T1,
23 joints) gymnasium envs, their holosoma ONNX walking experts, and closed-loop metrics.

`register_envs()` registers both ids (idempotent; entry points are strings, so nothing heavy is
imported until an env is made). Env kwargs: `image_size`, `render_images`, `episode_seconds`,
`command_schedule`, `render_mode`; see `physai.sim.humanoid.env`. Expert:
`physai.sim.humanoid.expert.HumanoidExpert`; metrics: `physai.sim.humanoid.metrics`; measurement
CLI: `python -m physai.sim.humanoid.measure`.
"""

from __future__ import annotations

from physai.sim.humanoid.robots import CONTROL_HZ  # numpy only: importing stays cheap

ENV_ID_BY_ROBOT = {"g1": "physai/g1-walk", "t1": "physai/t1-walk"}  # embodiment name -> gymnasium id
ENV_IDS = tuple(ENV_ID_BY_ROBOT.values())  # every humanoid gymnasium id
_ENTRY = "physai.sim.humanoid.env:HumanoidWalkEnv"
DEFAULT_SECONDS = 20.0  # the env's default `episode_seconds`


def episode_steps(seconds: float) -> int:
    return int(round(seconds * CONTROL_HZ))


def register_envs() -> None:
    """Register `physai/g1-walk` and `physai/t1-walk` (safe to call repeatedly), with the default
    episode's `max_episode_steps`."""
    import gymnasium

    for robot, env_id in ENV_ID_BY_ROBOT.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=_ENTRY, kwargs={"robot": robot},
                               max_episode_steps=episode_steps(DEFAULT_SECONDS))


register_envs()  # at import: `import physai.sim` (or gym.make("physai.sim:physai/g1-walk")) is enough


__all__ = ["ENV_IDS", "ENV_ID_BY_ROBOT", "DEFAULT_SECONDS", "episode_steps", "register_envs"]
