"""Bodies are plug-ins: this file registers a third body family (a point-mass rover with a scripted
expert, its own spec, env, guard and metrics) and runs record -> co-train with the car -> closed-
loop eval through the public API, with no edit to any library file."""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from physai.data.collect import collect
from physai.data.frames import load_frames
from physai.embodiments import EMBODIMENTS, CameraSpec, CommandField, EmbodimentSpec, get_spec
from physai.errors import ObservationError
from physai.pipeline import evaluate_checkpoint, train_recipe
from physai.recipes.core import DataConfig, Recipe
from physai.sim.family import BodyFamily, RecordConfig, family_for_env, register_family
from physai.sim.suite import Scenario
from physai.testing import tiny_config
from physai.trainer import TrainConfig

ENV_ID = "toy/rover-v0"
HZ = 10.0


def rover_spec() -> EmbodimentSpec:
    return EmbodimentSpec(
        name="rover", action_names=("vx", "vy"), action_units=("m/s", "m/s"), action_low=(-1.0, -1.0),
        action_high=(1.0, 1.0), control_hz=HZ, cameras=(CameraSpec("top", 64, 64),),
        proprio_names=("x", "y", "last_vx", "last_vy"),
        command=(CommandField("goal_x", "continuous", low=-3.0, high=3.0, default=1.0),
                 CommandField("goal_y", "continuous", low=-3.0, high=3.0, default=0.0)),
        description="toy point-mass rover driven by velocity commands")


if "rover" not in EMBODIMENTS:
    EMBODIMENTS.register("rover")(rover_spec)


class RoverEnv(gym.Env):
    """A point mass on a plane told to reach a goal; the image shows the rover and the goal."""

    metadata = {"render_modes": [], "render_fps": HZ}
    embodiment = "rover"

    def __init__(self, seconds: float = 3.0, images: bool = True, friction: float = 0.0):
        self.spec_ = get_spec("rover")
        self.max_steps = int(round(seconds * HZ))
        self.images, self.friction = images, friction
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (64, 64, 3), np.uint8),
            "proprio": spaces.Box(-np.inf, np.inf, (4,), np.float32),
            "command": spaces.Dict({"goal_x": spaces.Box(-3, 3, (1,), np.float32),
                                    "goal_y": spaces.Box(-3, 3, (1,), np.float32)})})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.command = {"goal_x": 1.0, "goal_y": 0.0}

    def set_command(self, command):
        self.command = {**self.command, **{k: float(v) for k, v in command.items()}}

    def _goal(self):
        return np.array([self.command["goal_x"], self.command["goal_y"]])

    def _obs(self):
        img = np.zeros((64, 64, 3), np.uint8)
        if self.images:
            for p, ch in ((self.pos, 0), (self._goal(), 1)):
                i, j = (np.clip((p + 3.2) / 6.4 * 63, 0, 63)).astype(int)
                img[max(j - 2, 0):j + 3, max(i - 2, 0):i + 3, ch] = 255
        return {"image": img, "proprio": np.array([*self.pos, *self.last], np.float32),
                "command": {k: np.array([v], np.float32) for k, v in self.command.items()}}

    def _info(self):
        return {"distance": float(np.linalg.norm(self._goal() - self.pos)), "time_s": self.t / HZ,
                "sensors": {"position": self.pos.copy()}}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-2, 2, 2)
        self.command = {"goal_x": float(self.np_random.uniform(-2, 2)), "goal_y": float(self.np_random.uniform(-2, 2))}
        self.last, self.t = np.zeros(2), 0
        return self._obs(), self._info()

    def step(self, action):
        a = np.asarray(action, np.float64)
        if a.shape != (2,) or not np.isfinite(a).all():
            raise ObservationError("action", "finite [2]", f"{a.shape}")
        self.pos = self.pos + np.clip(a, -1, 1) * (1 - self.friction) / HZ
        self.last, self.t = a, self.t + 1
        info = self._info()
        return self._obs(), -info["distance"], False, self.t >= self.max_steps, info

    def render_frame(self, size=256):
        return np.repeat(np.repeat(self._obs()["image"], size // 64, 0), size // 64, 1)


class RoverExpert:
    def reset(self, env):
        pass

    def act(self, env):
        r = env.unwrapped
        return np.clip(2.0 * (r._goal() - r.pos), -1, 1).astype(np.float32)


class RoverGuard:
    """Bounds and a speed limit near the origin (a keep-out zone), counted per rule."""

    def __init__(self, spec):
        self.spec, self.counts = spec, {"bounds": 0, "nonfinite": 0}

    @property
    def interventions(self):
        return sum(self.counts.values())

    def reset(self, sensors=None):
        self.counts = {k: 0 for k in self.counts}

    def filter(self, action, sensors):
        a = np.asarray(action, np.float32)
        if not np.isfinite(a).all():
            self.counts["nonfinite"] += 1
            a = np.zeros(2, np.float32)
        b = np.clip(a, self.spec.low, self.spec.high)
        if not np.array_equal(a, b):
            self.counts["bounds"] += 1
        return b


class RoverMetrics:
    def reset(self, info):
        self.d0, self.d, self.steps = info["distance"], info["distance"], 0

    def update(self, obs, action, info, reward):
        self.d, self.steps = info["distance"], self.steps + 1

    def result(self):
        return {"final_distance_m": self.d, "reached": float(self.d < 0.2), "length_s": self.steps / HZ}


class RoverFamily(BodyFamily):
    name = "rover"
    env_ids = (ENV_ID,)
    record_config = RecordConfig
    metric_columns = ("final_distance_m", "reached", "length_s", "safety_interventions")

    def register_envs(self):
        if ENV_ID not in gym.registry:
            gym.register(ENV_ID, entry_point=RoverEnv)

    def embodiment_of(self, env_id):
        return "rover"

    def env_kwargs(self, env_id, seconds=None, options=None, images=True):
        return {**dict(options or {}), "images": images, **({"seconds": seconds} if seconds is not None else {})}

    def check_options(self, env_id, options):
        pass

    def make_expert(self, embodiment):
        return RoverExpert()

    def make_guard(self, spec):
        return RoverGuard(spec)

    def make_metrics(self, env):
        return RoverMetrics()


register_family(RoverFamily())


def test_a_registered_family_is_asked_for_everything():
    fam = family_for_env(ENV_ID)
    assert fam.name == "rover" and fam.embodiment_of(ENV_ID) == "rover"
    with pytest.raises(Exception, match="rover-v0"):
        family_for_env("toy/rover-v1")  # a typo names the close match


def test_record_cotrain_with_car_and_evaluate_a_new_body(tmp_path):
    # record: the family's expert drives its env, through the same collect() the built-ins use
    s = collect(ENV_ID, 2, tmp_path / "rover-demo", seed=0, seconds=1.0, progress=False)
    f = load_frames(tmp_path / "rover-demo")
    assert s["frames"] == 20 and f.spec.name == "rover" and f.images.std() > 0
    # co-train with the car through a recipe: datasets are recorded on first use by each family
    recipe = Recipe(
        name="toy", policy=tiny_config(embodiments=("car", "rover")),
        train=TrainConfig(steps=12, batch_size=8, warmup_steps=1, ckpt_every=6, log_every=3),
        data=DataConfig(datasets=(("physai/car-highway", 1, 0.5), (ENV_ID, 3, 0.5)), root=str(tmp_path / "data"),
                        record={"car": {"seconds": 2.0}, "rover": {"seconds": 2.0}}))
    assert recipe.data.record["rover"].seconds == 2.0  # the family's RecordConfig, filled from the dict
    res = train_recipe(recipe, tmp_path / "run", progress=False)
    car, rover = (f"spec{get_spec(e).digest()}" for e in ("car", "rover"))
    assert res["steps"] == 12 and set(res["datasets"]) == {str(tmp_path / "data" / f"car-highway-seed0-2s-noise0.03-{car}"),
                                                          str(tmp_path / "data" / f"rover-v0-seed0-2s-noise0.03-{rover}")}
    # closed-loop evaluation beside the family's expert, with its guard and metrics
    scenarios = [Scenario(env=ENV_ID, seed=700 + i, seconds=6.0) for i in range(2)]
    scenarios.append(Scenario(env="physai/car-highway", seed=1000, seconds=1.0))
    ev = evaluate_checkpoint(res["final"], scenarios, slots=2, workers=False, progress=False, card_title="toy suite")
    rows = {(r["agent"], r["env"]): r for r in ev["summary"]}
    from physai.card import read_card

    card = read_card(res["final"])  # the model card says what it trained on and what eval measured
    assert card["training"]["recipe"] == recipe.name and card["training"]["steps"] == 12
    assert {d["body"] for d in card["training"]["datasets"]} == {"car", "rover"}
    assert ev["card_updated"] and card["results"][-1]["what"] == "toy suite"
    assert "final_distance_m" in card["results"][-1]["columns"]
    assert set(rows) == {(a, e) for a in ("physai", "expert") for e in (ENV_ID, "physai/car-highway")}
    assert rows[("expert", ENV_ID)]["final_distance_m"] < 0.2 and rows[("expert", ENV_ID)]["length_s"] == 6.0
    rover_eps = [e for e in ev["episodes"]["physai"] if e["env"] == ENV_ID]
    assert [e["seed"] for e in rover_eps] == [700, 701] and all("bounds" in e["safety"] for e in rover_eps)
    assert all(math.isfinite(e["metrics"]["final_distance_m"]) for e in rover_eps)
