"""The car body family: highway-env scenarios (`physai/car-*`), the IDM/MOBIL expert, the
emergency-brake guard, driving metrics, and lane/speed/stop instruction scoring.

Everything that is car-specific outside the model is decided here; the rest of the library asks
this object (see `physai.sim.family`). Importing it is cheap: highway-env is imported only when an
env, expert or metric is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from physai.errors import ConfigError
from physai.sim.car import ENV_IDS, STOP_NONE_M, episode_steps
from physai.sim.car import reward as _reward  # noqa: F401  (registers the `car` and `car-carl` rewards)
from physai.sim.car.score import driving_score, lead_from_sensors, trace_metrics, ttc_from_sensors
from physai.sim.family import BodyFamily, RecordConfig, register_family


@dataclass(frozen=True)
class CarRecordConfig(RecordConfig):
    seconds: float = 30.0  # episode length of car recordings and DAgger roll-outs
    # highway-env traffic density of recordings (None: the scenario's default, 1). The dense suite
    # drives at 2-2.5, which default recordings never show
    density: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.density is not None and not (isinstance(self.density, (int, float)) and 0 < self.density <= 5):
            raise ConfigError(f"record.density must be in (0, 5] or None, got {self.density!r}")

    def env_options(self) -> dict[str, Any]:
        return {} if self.density is None else {"vehicles_density": float(self.density)}

    def tag(self) -> str:
        return super().tag() + ("" if self.density is None else f"-density{self.density:g}")


class CarFamily(BodyFamily):
    name = "car"
    env_ids = ENV_IDS
    spawnable = True
    record_config = CarRecordConfig
    default_reward = "car"
    probe_key, probe_cap = "lead_gap", 60.0  # m to the car ahead in the ego lane (none ahead: far)
    failure_key, risk_key = "collision", "ttc"
    metric_columns = ("progress_m", "collision", "offroad_s", "lane_error_m", "mean_abs_jerk",
                      "speed_limit_compliance", "stall_s", "length_s", "driving_score", "safety_interventions")

    def owns(self, env_id: str) -> bool:
        return env_id.startswith("physai/car-")  # physai's car namespace (test and user envs too)

    def register_envs(self) -> None:
        from physai.sim.car import register_envs

        register_envs()

    def embodiment_of(self, env_id: str) -> str:
        return "car"

    def env_kwargs(self, env_id, seconds=None, options=None, images=True):
        kw: dict[str, Any] = {}
        if options:
            kw["config"] = dict(options)  # highway-env config keys (vehicles_density, lanes_count, ...)
        if seconds is not None:  # gymnasium's TimeLimit must not cut a longer episode short
            kw["episode_seconds"] = float(seconds)
            kw["max_episode_steps"] = episode_steps(float(seconds))
        return kw  # the car's camera is a cheap top-down render: always on

    def episode_seconds(self, env):
        car = env.unwrapped
        if car.episode_seconds is not None:
            return float(car.episode_seconds)
        d = car.sim.config.get("duration")
        return float(d) if d is not None else None

    def check_options(self, env_id, options):
        from physai.sim.car.env import _LOCKED_KEYS as LOCKED_KEYS
        from physai.sim.car.scenarios import get_scenario

        sc = get_scenario(env_id.removeprefix("physai/car-"))
        known = set(sc.cls.default_config())
        for k in options:
            if k in LOCKED_KEYS:
                raise ConfigError(f"options.{k}: fixed by physai (it defines the car spec contract)")
            if k == "duration":
                raise ConfigError("options.duration: set the episode length with 'seconds'")
            if k not in known:
                raise ConfigError(f"options.{k}: not a {sc.upstream_id} option; known: {sorted(known)}")

    def make_expert(self, embodiment):
        from physai.sim.car.expert import CarExpert

        return CarExpert()

    def make_guard(self, spec):
        from physai.embodiments.safety import CarGuard

        return CarGuard(spec)

    def make_metrics(self, env):
        from physai.sim.car.metrics import EpisodeMetrics

        return EpisodeMetrics(dt=getattr(env.unwrapped, "dt", 0.2))

    def trace_step(self, info: Mapping[str, Any]) -> dict[str, Any]:
        cmd = info.get("command") or {}
        sensors = info.get("sensors")
        gap, lead_speed = lead_from_sensors(sensors)
        return {"t": float(info["time_s"]), "lane": int(info["lane_id"]), "lane_error": float(info["lane_error"]),
                "speed": float(info["speed"]), "collision": bool(info["collision"]), "offroad": bool(info["offroad"]),
                "cmd_lane": cmd.get("lane"), "cmd_speed": cmd.get("speed"), "cmd_stop": cmd.get("stop"),
                "progress": float(info.get("progress_m", 0.0)), "ttc": ttc_from_sensors(sensors),
                "lead_gap": gap, "lead_speed": lead_speed}

    def trace_metrics(self, trace, dt):
        return trace_metrics(trace, dt)

    def counterfactual_actions(self, spec):
        """Braking hard must leave a larger gap to the car ahead than accelerating, wheel straight."""
        import numpy as np

        return (("brake", np.array([-4.0, 0.0], np.float32)), ("accelerate", np.array([3.0, 0.0], np.float32)))

    def score_instructions(self, commands, trace, seconds):
        from physai.sim.car.instructions import score_instructions

        return score_instructions(commands, trace, seconds)

    def episode_summary(self, metrics, reference):
        return driving_score(metrics, reference)

    def random_commands(self, env_id, rng, seconds):
        """Two instructions per episode, as in the shipped suites, at 3-8 s and again at 14-20 s: a
        lane change (either way, 50%), a new speed target in [10, 30] m/s (25%), or a first one
        "stop within D m", D in [110, 220] (25%), which the second, at 22-26 s, ends ("go")."""
        out = []
        for lo, hi in ((3.0, 8.0), (14.0, 20.0)):
            after_stop = bool(out) and "stop" in out[-1][1]
            if after_stop:
                lo, hi = 22.0, 26.0
            if seconds is not None and lo >= seconds:
                break
            at = float(round(rng.uniform(lo, min(hi, seconds or hi)), 1))
            u = rng.random()
            if after_stop:
                cmd = {"stop": STOP_NONE_M}
            elif u < 0.5:
                cmd = {"lane": str(rng.choice(["left", "right"]))}
            elif u < 0.75 or out:
                cmd = {"speed": float(round(rng.uniform(10.0, 30.0)))}
            else:
                cmd = {"stop": float(round(rng.uniform(110.0, 220.0)))}
            out.append((at, cmd))
        return tuple(out)

    def task_string(self, spec, command) -> str:
        vals = spec.decode_command(spec.encode_command(command))
        # the metres left count down every frame (they are in the command vector); a task string
        # per frame would make one dataset task per metre
        stop = "" if vals["stop"] >= STOP_NONE_M - 1e-3 else ", stop ahead"
        return f"drive: lane {vals['lane']}, {int(round(vals['speed']))} m/s{stop}"


register_family(CarFamily())
