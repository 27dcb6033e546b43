"""physai's envs as a LeRobot `EnvConfig` (`lerobot-eval --env.type=physai --env.task=car-highway`).

LeRobot's eval loop reads `pixels` / `agent_pos` observations (`lerobot.envs.utils.preprocess_observation`);
`LeRobotObservation` maps physai's `image` / `proprio` onto them (the camera keeps its spec name,
so the policy sees `observation.images.<camera>` and `observation.state`, the keys of a physai
recording). The env's command is not an input LeRobot passes: an episode keeps the env's own
command schedule, and a policy trained through LeRobot does not read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig

from physai.embodiments import get_spec
from physai.sim.family import family_for_env

ACTION, OBS_STATE, OBS_IMAGES = "action", "observation.state", "observation.images"


class LeRobotObservation(gym.ObservationWrapper):
    """{image, proprio, command} -> {pixels: {camera: image}, agent_pos: proprio}."""

    def __init__(self, env: gym.Env, camera: str, env_id: str):
        super().__init__(env)
        self.camera, self.task = camera, env_id  # `task`: what LeRobot's eval asks every sub-env for
        self._fam = family_for_env(env_id)
        self._spec = get_spec(self._fam.embodiment_of(env_id))
        self._command = None
        space = env.observation_space
        self.observation_space = gym.spaces.Dict({"pixels": gym.spaces.Dict({camera: space["image"]}),
                                                  "agent_pos": space["proprio"]})

    def reset(self, *, seed=None, options=None):
        # LeRobot's eval marks a new roll-out in the options (`lerobot_new_rollout`); physai's envs
        # refuse options they do not know, so LeRobot's own keys stop here
        opts = {k: v for k, v in (options or {}).items() if not str(k).startswith("lerobot_")}
        return super().reset(seed=seed, options=opts or None)

    def render(self):
        """An RGB frame for LeRobot's eval videos (the same view as `physai eval --video`)."""
        from physai.sim.video import render_frame

        return render_frame(self.env, 256)

    @property
    def task_description(self) -> str:
        """The current command in words (the family's task string), e.g. "drive: lane keep, 25 m/s"."""
        return self._fam.task_string(self._spec, self._command) if self._command is not None else ""

    def observation(self, obs):
        self._command = obs.get("command")
        return {"pixels": {self.camera: obs["image"]}, "agent_pos": np.asarray(obs["proprio"], np.float32)}


@EnvConfig.register_subclass("physai")
@dataclass
class PhysaiEnvConfig(EnvConfig):
    task: str | None = "car-highway"  # a physai env id without its `physai/` prefix
    fps: int = 5  # set from the body's control rate
    episode_seconds: float | None = None  # None: the env's default episode
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        fam = family_for_env(self.gym_id)
        spec = get_spec(fam.embodiment_of(self.gym_id))
        self.fps = int(round(spec.control_hz))
        cam = spec.cameras[0]
        self.features = {ACTION: PolicyFeature(FeatureType.ACTION, (spec.action_dim,)),
                         "agent_pos": PolicyFeature(FeatureType.STATE, (spec.proprio_dim,)),
                         f"pixels/{cam.name}": PolicyFeature(FeatureType.VISUAL, (cam.height, cam.width, 3))}
        self.features_map = {ACTION: ACTION, "agent_pos": OBS_STATE, f"pixels/{cam.name}": f"{OBS_IMAGES}.{cam.name}"}

    @property
    def package_name(self) -> str:
        return "physai.sim"  # importing it registers the envs

    @property
    def gym_id(self) -> str:
        return f"physai/{self.task}"

    @property
    def gym_kwargs(self) -> dict:
        return family_for_env(self.gym_id).env_kwargs(self.gym_id, self.episode_seconds)

    def create_envs(self, n_envs: int, use_async_envs: bool = False):
        # (this module's import of physai.sim.family registered the envs; a spawned worker imports
        # it too, to unpickle `LeRobotObservation`)
        gym_id, kwargs = self.gym_id, self.gym_kwargs
        camera = get_spec(family_for_env(gym_id).embodiment_of(gym_id)).cameras[0].name

        def make_one():
            return LeRobotObservation(gym.make(gym_id, disable_env_checker=True, **kwargs), camera, gym_id)

        cls = gym.vector.AsyncVectorEnv if (use_async_envs and n_envs > 1) else gym.vector.SyncVectorEnv
        extra = {"context": "spawn"} if cls is gym.vector.AsyncVectorEnv else {}
        return {self.type: {0: cls([make_one for _ in range(n_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
                                   **extra)}}
