"""The humanoid body family: MuJoCo walking envs (`physai/g1-walk`, `physai/t1-walk`), holosoma's
ONNX walking experts, the joint-limit/fall guard, walking metrics, and velocity-command scoring.

Everything that is humanoid-specific outside the model is decided here; the rest of the library
asks this object (see `physai.sim.family`). Importing it is cheap: MuJoCo is imported only when
an env, expert or guard is made.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Mapping

from physai.errors import ConfigError
from physai.sim.family import BodyFamily, RecordConfig, register_family, _num
from physai.sim.humanoid import ENV_ID_BY_ROBOT, ENV_IDS, episode_steps
from physai.sim.humanoid import reward as _reward  # noqa: F401  (registers the `humanoid` reward)
from physai.sim.humanoid.commands import P_STAND
_RESERVED = {"robot", "render_images", "episode_seconds", "render_mode"}  # set by physai, not by a scenario


@dataclass(frozen=True)
class HumanoidRecordConfig(RecordConfig):
    seconds: float = 20.0  # episode length of humanoid recordings and DAgger roll-outs
    # chance a random command is "stand still" in recordings and DAgger roll-outs (the env and
    # evaluation use 0.1). Learned G1 policies fell almost only in the walk-to-stand transition
    # (8 of 8 falls in a 20-episode evaluation), which 0.1 makes rare in a few dozen episodes.
    stand_prob: float = 0.3
    # frames in the 1.5 s after a command change drawn 3x as often: the remaining falls came 1-2 s
    # after walk-to-stand switches, where the policy's joint-target error was 2-3x its walking error
    transition_weight: float = 3.0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.stand_prob <= 1.0:
            raise ConfigError(f"record.stand_prob must be in [0, 1], got {self.stand_prob}")

    def env_options(self) -> dict[str, Any]:
        return {} if self.stand_prob == P_STAND else {"stand_prob": float(self.stand_prob)}

    def tag(self) -> str:
        return super().tag() + ("" if self.stand_prob == P_STAND else f"-stand{self.stand_prob:g}")


class _WalkMetrics:
    """`WalkMetrics` behind the family's metrics protocol."""

    def __init__(self, dt: float):
        from physai.sim.humanoid.metrics import WalkMetrics

        self._m = WalkMetrics(dt)

    def reset(self, info):
        pass

    def update(self, obs, action, info, reward):
        self._m.update(action, info)

    def result(self):
        return self._m.summary()


class HumanoidFamily(BodyFamily):
    name = "humanoid"
    env_ids = ENV_IDS
    spawnable = True
    record_config = HumanoidRecordConfig
    default_reward = "humanoid"
    failure_key = "fell"  # flywheel: the frames before a fall are hard cases
    metric_columns = ("fell", "survival_s", "tracking_error", "energy_J", "action_smoothness", "length_s",
                      "safety_interventions")
    rollout_processes = 2  # humanoid roll-outs are the slow ones

    def owns(self, env_id: str) -> bool:
        return any(env_id.startswith(f"physai/{robot}-") for robot in ENV_ID_BY_ROBOT)  # physai's namespaces

    def register_envs(self) -> None:
        from physai.sim.humanoid import register_envs

        register_envs()

    def embodiment_of(self, env_id: str) -> str:
        for robot in ENV_ID_BY_ROBOT:
            if env_id.startswith(f"physai/{robot}-"):
                return robot
        raise ConfigError(f"env '{env_id}' is not a humanoid env (physai/g1-*, physai/t1-*)")

    def env_kwargs(self, env_id, seconds=None, options=None, images=True):
        kw: dict[str, Any] = dict(options or {})
        kw["render_images"] = bool(images)
        if seconds is not None:  # gymnasium's TimeLimit must not cut a longer episode short
            kw["episode_seconds"] = float(seconds)
            kw["max_episode_steps"] = episode_steps(float(seconds))
        return kw

    def episode_seconds(self, env):
        return env.unwrapped.max_steps * env.unwrapped.control_dt

    def check_options(self, env_id, options):
        from physai.sim.humanoid.env import HumanoidWalkEnv

        known = set(inspect.signature(HumanoidWalkEnv.__init__).parameters) - {"self"} - _RESERVED
        for k in options:
            if k not in known:
                raise ConfigError(f"options.{k}: not a {env_id} option; known: {sorted(known)}")

    def make_expert(self, embodiment):
        from physai.sim.humanoid.expert import HumanoidExpert

        return HumanoidExpert(embodiment)

    def make_guard(self, spec):
        from physai.embodiments.safety import HumanoidGuard
        from physai.sim.humanoid.robots import robot_setup

        return HumanoidGuard(spec, default_pose=robot_setup(spec.name).default_pose)

    def make_metrics(self, env):
        return _WalkMetrics(env.unwrapped.control_dt)

    def trace_step(self, info: Mapping[str, Any]) -> dict[str, Any]:
        v = info["base_lin_vel"]
        return {"t": float(info["time_s"]), "vx": float(v[0]), "vy": float(v[1]), "yaw_rate": float(info["yaw_rate"]),
                "cmd": {k: float(x) for k, x in info["command"].items()}, "fell": bool(info["fell"])}

    def score_instructions(self, commands, trace, seconds):
        from physai.sim.humanoid.instructions import score_instructions

        return score_instructions(commands, trace, seconds)

    def video_fps(self, spec) -> float:
        return min(float(spec.control_hz), 25.0)  # 50 Hz control, 25 fps video (every other frame)

    def task_string(self, spec, command) -> str:
        vals = spec.decode_command(spec.encode_command(command))
        return f"walk: vx {_num(vals['vx'])} vy {_num(vals['vy'])} yaw {_num(vals['yaw_rate'])}"


register_family(HumanoidFamily())
