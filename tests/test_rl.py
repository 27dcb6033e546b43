"""Post-training: every reward term on hand-made states, both compositions, PPO solving a small
known task (a 1-D reach registered as its own body family), and the anchor holding a policy near
its start when the reward is zero."""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from physai.embodiments import EMBODIMENTS, CameraSpec, CommandField, EmbodimentSpec, get_spec
from physai.errors import ConfigError
from physai.policy import Policy
from physai.rl.ppo import PPO, ActorCritic, PPOConfig, RLDriver, gae
from physai.rl.reward import REWARDS, RewardModel, RewardTerm, Step, get_reward
from physai.sim.family import BodyFamily, RecordConfig, register_family
from physai.testing import tiny_config

DT = 0.2


# ---- car terms ----------------------------------------------------------------------------------
def _car_info(**kw):
    info = {"collision": False, "offroad": False, "speed": 25.0, "progress_m": 0.0, "lane_error": 0.0, "lane_id": 1,
            "speed_limit": 30.0, "blocked": False, "time_s": 0.0, "command": {"lane": "keep", "speed": 25.0},
            "sensors": {"ego_speed": 25.0, "ego_lane": 1, "lane_width": 4.0, "ego_length": 5.0,
                        "objects": np.zeros((0, 5), np.float32)}}
    sensors = kw.pop("sensors", None)
    info.update(kw)
    if sensors is not None:
        info["sensors"] = {**info["sensors"], **sensors}
    return info


def _car_terms(info, prev=None, action=(0.0, 0.0), prev_action=None, interventions=None):
    m = get_reward("car")
    s = Step(info, prev if prev is not None else _car_info(), np.array(action), None if prev_action is None
             else np.array(prev_action), DT, interventions or {})
    return {t.name: t.fn(s) for t in m.terms}


def test_car_terms_on_hand_made_states():
    calm = _car_terms(_car_info(progress_m=6.0))
    assert calm["progress"] == pytest.approx(6.0 / (30.0 * DT))  # 30 m/s for one step = 1
    assert all(v == 0 for k, v in calm.items() if k != "progress"), calm
    assert _car_terms(_car_info(collision=True))["collision"] == 1
    assert _car_terms(_car_info(offroad=True))["offroad"] == 1
    lead = np.array([[10.0, 0.0, -10.0, 0.0, 5.0]], np.float32)  # 5 m gap closing at 10 m/s: TTC 0.5 s
    assert _car_terms(_car_info(sensors={"objects": lead}))["low_ttc"] == pytest.approx(1 - 0.5 / 1.5)
    assert _car_terms(_car_info(sensors={"objects": lead * [1, 0, -1, 0, 1]}))["low_ttc"] == 0  # opening
    assert _car_terms(_car_info(sensors={"objects": "garbage"}))["low_ttc"] == 1  # fail closed
    assert _car_terms(_car_info(speed=0.2))["stall"] == 1
    assert _car_terms(_car_info(speed=0.2, blocked=True))["stall"] == 0  # waiting behind a car is fine
    assert _car_terms(_car_info(lane_error=1.0))["lane_keeping"] == pytest.approx(0.5)
    assert _car_terms(_car_info(speed=36.0))["speed_limit"] == pytest.approx(0.2)
    beside = np.array([[1.0, 0.3, 0.0, 0.0, 5.0]], np.float32)  # right next to us in the new lane
    assert _car_terms(_car_info(lane_id=2, sensors={"objects": beside}))["unsafe_lane_change"] == 1
    assert _car_terms(_car_info(lane_id=2))["unsafe_lane_change"] == 0  # a free lane
    assert _car_terms(_car_info(lane_id=1, sensors={"objects": beside}))["unsafe_lane_change"] == 0  # no change
    assert _car_terms(_car_info(speed=15.0))["speed_command"] == pytest.approx(0.8)
    assert _car_terms(_car_info(speed=24.0))["speed_command"] == 0  # within the tolerance
    assert _car_terms(_car_info(command={"lane": "left", "speed": 25.0}))["lane_request"] == 1
    j = _car_terms(_car_info(), action=(2.0, 0.0), prev_action=(0.0, 0.0))["jerk"]
    assert j == pytest.approx(min(10.0 / 4.13, 2.0))
    assert _car_terms(_car_info(), interventions={"aeb": 1})["guard"] == 1
    assert _car_terms(_car_info(), interventions={"bounds": 1})["guard"] == 0


def test_humanoid_terms_on_hand_made_states():
    m = get_reward("humanoid")
    base = {"fell": False, "base_lin_vel": np.array([0.5, 0.0]), "yaw_rate": 0.0, "energy": 5.0, "time_s": 0.0,
            "command": {"vx": 0.5, "vy": 0.0, "yaw_rate": 0.0}, "sensors": {"gravity": np.array([0.0, 0.0, -1.0])}}

    def terms(action=np.zeros(3), prev_action=None, **kw):
        s = Step({**base, **kw}, base, action, prev_action, 0.02)
        return {t.name: t.fn(s) for t in m.terms}

    perfect = terms()
    assert perfect["lin_vel_tracking"] == 1 and perfect["yaw_tracking"] == 1
    assert perfect["upright"] == 0 and perfect["fall"] == 0 and perfect["smoothness"] == 0
    assert perfect["energy"] == pytest.approx(5.0 / (500.0 * 0.02))
    assert terms(base_lin_vel=np.array([0.0, 0.0]))["lin_vel_tracking"] == pytest.approx(math.exp(-1.0))
    assert terms(yaw_rate=0.5)["yaw_tracking"] == pytest.approx(math.exp(-1.0))
    tilted = terms(sensors={"gravity": np.array([0.0, -math.sin(0.5), -math.cos(0.5)])})["upright"]
    assert tilted == pytest.approx(1 - math.cos(0.5))
    assert terms(fell=True)["fall"] == 1
    assert terms(action=np.ones(3), prev_action=np.zeros(3))["smoothness"] == 1


def test_additive_and_multiplicative_compositions():
    terms = [RewardTerm("progress", lambda s: s.info["p"], 2.0, "bonus"),
             RewardTerm("crash", lambda s: s.info["c"], 0.5, "penalty"),
             RewardTerm("late", lambda s: s.info["l"], 0.25, "penalty")]
    s = Step({"p": 1.0, "c": 1.0, "l": 2.0}, None, None, None, DT)
    r, parts = RewardModel(terms, "additive").score(s)
    assert r == pytest.approx(2.0 - 0.5 - 0.5) and parts == pytest.approx({"progress": 2.0, "crash": -0.5, "late": -0.5})
    r, parts = RewardModel(terms, "multiplicative").score(s)
    assert r == pytest.approx(2.0 * 0.5 * 0.5)  # progress x (1 - 0.5·1) x (1 - 0.25·2)
    assert sum(parts.values()) == pytest.approx(r)  # the terms' contributions add up to the reward
    heavy = RewardModel(terms, "multiplicative").with_weights({"crash": 3.0})
    assert heavy.score(s)[0] == 0  # a factor never goes negative
    with pytest.raises(ConfigError, match="no terms"):
        heavy.with_weights({"crsh": 1.0})
    with pytest.raises(ConfigError, match="penalty and must be >= 0"):
        RewardModel(terms).score(Step({"p": 1.0, "c": -1.0, "l": 0.0}, None, None, None, DT))
    with pytest.raises(ConfigError, match="returned nan"):
        RewardModel(terms).score(Step({"p": float("nan"), "c": 0.0, "l": 0.0}, None, None, None, DT))
    with pytest.raises(ConfigError, match="bonus term"):
        RewardModel(terms[1:], "multiplicative")


def test_a_logged_episode_is_scored_like_the_live_steps():
    m = get_reward("car-carl")
    infos = [_car_info(progress_m=6.0 * t, collision=(t == 3)) for t in range(4)]
    acts = [np.array([a, 0.0]) for a in (0.0, 1.0, -1.0)]
    total, parts = m.episode(infos, acts, DT)
    m.reset(infos[0])
    live = [m.step(infos[t + 1], acts[t], DT)[0] for t in range(3)]
    assert total == pytest.approx(sum(live)) and live[-1] == 0  # the collision step earns nothing
    assert sum(parts.values()) == pytest.approx(total)
    assert set(REWARDS.names()) >= {"car", "car-carl", "humanoid"}


def test_gae_matches_a_hand_computation():
    adv, ret = gae(np.array([1.0, 0.0, 2.0]), np.array([0.5, 0.5, 0.5]), bootstrap=1.0, gamma=0.9, lam=0.8)
    d = [1 + 0.9 * 0.5 - 0.5, 0 + 0.9 * 0.5 - 0.5, 2 + 0.9 * 1.0 - 0.5]
    a2 = d[2]
    a1 = d[1] + 0.72 * a2
    a0 = d[0] + 0.72 * a1
    assert adv == pytest.approx([a0, a1, a2]) and ret == pytest.approx(np.array([a0, a1, a2]) + 0.5)


# ---- a small known task: reach a goal on a line ---------------------------------------------------
LINE_ENV, LINE_HZ, LINE_STEPS = "toy/line-v0", 5.0, 10


def line_spec() -> EmbodimentSpec:
    return EmbodimentSpec(
        name="line", action_names=("v",), action_units=("m/s",), action_low=(-1.0,), action_high=(1.0,),
        control_hz=LINE_HZ, cameras=(CameraSpec("top", 16, 16),), proprio_names=("x", "last_v"),
        command=(CommandField("goal", "continuous", low=-1.0, high=1.0, default=0.0),),
        description="toy: a point on a line told to reach a goal")


if "line" not in EMBODIMENTS:
    EMBODIMENTS.register("line")(line_spec)


class LineEnv(gym.Env):
    metadata = {"render_modes": [], "render_fps": LINE_HZ}

    def __init__(self, seconds=None, images=True):
        self.max_steps = LINE_STEPS if seconds is None else max(1, int(round(seconds * LINE_HZ)))
        self.observation_space = spaces.Dict({"image": spaces.Box(0, 255, (16, 16, 3), np.uint8),
                                              "proprio": spaces.Box(-np.inf, np.inf, (2,), np.float32),
                                              "command": spaces.Dict({"goal": spaces.Box(-1, 1, (1,), np.float32)})})
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def set_command(self, command):
        self.goal = float(command["goal"])

    def _obs(self):
        return {"image": np.zeros((16, 16, 3), np.uint8), "proprio": np.array([self.x, self.last], np.float32),
                "command": {"goal": np.array([self.goal], np.float32)}}

    def _info(self):
        return {"distance": abs(self.x - self.goal), "time_s": self.t / LINE_HZ, "sensors": {"x": self.x}}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.goal = (float(v) for v in self.np_random.uniform(-1, 1, 2))
        self.last, self.t = 0.0, 0
        return self._obs(), self._info()

    def step(self, action):
        v = float(np.clip(np.asarray(action, np.float64).reshape(-1)[0], -1, 1))
        self.x, self.last, self.t = self.x + 0.3 * v, v, self.t + 1
        return self._obs(), 0.0, False, self.t >= self.max_steps, self._info()


class LineMetrics:
    def reset(self, info):
        self.d = info["distance"]

    def update(self, obs, action, info, reward):
        self.d = info["distance"]

    def result(self):
        return {"final_distance": self.d, "reached": float(self.d < 0.1)}


class LineFamily(BodyFamily):
    name = "line"
    env_ids = (LINE_ENV,)
    record_config = RecordConfig
    metric_columns = ("final_distance", "reached")
    default_reward = "line"

    def register_envs(self):
        if LINE_ENV not in gym.registry:
            gym.register(LINE_ENV, entry_point=LineEnv)

    def embodiment_of(self, env_id):
        return "line"

    def env_kwargs(self, env_id, seconds=None, options=None, images=True):
        return {} if seconds is None else {"seconds": float(seconds)}

    def check_options(self, env_id, options):
        pass

    def make_expert(self, embodiment):
        class Expert:
            def reset(self, env):
                pass

            def act(self, env):
                e = env.unwrapped
                return np.array([np.clip((e.goal - e.x) / 0.3, -1, 1)], np.float32)
        return Expert()

    def make_guard(self, spec):
        return None

    def make_metrics(self, env):
        return LineMetrics()


register_family(LineFamily())
if "line" not in REWARDS.names():
    REWARDS.register("line")(lambda: RewardModel([RewardTerm("closeness", lambda s: -s.info["distance"], 1.0, "bonus")],
                                                 "additive", "line"))


def _line_policy(seed=0):
    torch.manual_seed(seed)
    pol = Policy.build(tiny_config(embodiments=("line",), n_action_steps=1))
    rng = np.random.default_rng(0)
    pol.normalizer.fit("line", "proprio", rng.uniform(-1, 1, (500, 2)))
    pol.normalizer.fit("line", "action", rng.uniform(-1, 1, (500, 1)))
    return pol.eval()


def _reached(pol, seeds):
    from physai.sim.evaluate import seeded_scenarios
    from physai.sim.rollout import Episode, PolicyDriver, run_episodes

    eps = [Episode(scenario=sc, safety=False) for sc in seeded_scenarios(LINE_ENV, len(seeds), seeds[0])]
    res = run_episodes(PolicyDriver(pol, "line", optimize=False), eps, slots=8)
    return float(np.mean([r["metrics"]["reached"] for r in res]))


def test_ppo_solves_the_line_task(tmp_path):
    """From a random policy to >= 95% of held-out episodes ending within 0.1 of the goal."""
    from physai.rl.stage import rl_finetune

    pol = _line_policy()
    before = _reached(pol, list(range(50_000, 50_040)))
    cfg = PPOConfig(iterations=25, episodes=32, slots=8, workers=False, safety=False, lr=1e-3, value_lr=3e-3, target_kl=None,
                    init_std=0.4, anchor="none", epochs=4, minibatch=64, gamma=0.9, seed=7)
    summary = rl_finetune(None, LINE_ENV, tmp_path / "rl", cfg, policy=pol, progress=False, expert_baseline=True)
    after = _reached(Policy.from_pretrained(tmp_path / "rl" / "final").eval(), list(range(50_000, 50_040)))
    assert before < 0.5 and after >= 0.95, (before, after)
    assert summary["last"]["reward"] > summary["first"]["reward"]
    assert summary["env_steps"] == 25 * 32 * LINE_STEPS
    assert (tmp_path / "rl" / "reward_curve.png").stat().st_size > 10_000
    assert summary["expert_reward"] is not None


def _drift(anchor: str, coef: float = 1.0) -> tuple[float, float]:
    """(gap before, gap after) between a drifted head and its start after PPO updates on zero reward."""
    from physai.sim.evaluate import seeded_scenarios
    from physai.sim.rollout import Episode, run_episodes

    if "zero" not in REWARDS.names():
        REWARDS.register("zero")(lambda: RewardModel([RewardTerm("nothing", lambda s: 0.0, 1.0, "bonus")]))
    pol = _line_policy()
    cfg = PPOConfig(episodes=8, slots=4, workers=False, lr=1e-3, anchor=anchor, anchor_coef=coef, epochs=8, minibatch=40,
                    target_kl=None)
    ac = ActorCritic(pol, "line", cfg.init_std)
    ppo = PPO(ac, cfg)
    torch.manual_seed(1)
    with torch.no_grad():  # drift: as if a noisy update had moved the head
        for q in ac.policy.heads["line"].parameters():
            q.add_(torch.randn_like(q) * 0.05)
    g = torch.Generator().manual_seed(0)
    eps = [Episode(scenario=sc, safety=False, reward="zero") for sc in seeded_scenarios(LINE_ENV, 8, 60_000)]

    def roll():
        d = RLDriver(ac, ppo.ref, g)
        run_episodes(d, eps, slots=4)
        return d.done

    def gap(trajs):
        obs = {k: torch.cat([o[k] for t in trajs for o in t.obs]) for k in trajs[0].obs[0]}
        with torch.no_grad():
            return float((ac(obs)[0] - ppo.ref(obs)[0]).abs().mean())

    trajs = roll()
    start = gap(trajs)
    for _ in range(6):
        ppo.update(trajs, g)
        trajs = roll()
    return start, gap(trajs)


def test_the_anchor_holds_the_policy_when_the_reward_is_zero():
    """Zero reward leaves only value-error noise in the advantages: the anchor pulls a drifted head
    back toward the starting policy, which without it stays where it drifted (or wanders further)."""
    start, kl = _drift("kl")
    _, bc = _drift("bc", coef=5.0)
    start_free, free = _drift("none")
    assert start == pytest.approx(start_free) and start > 0.02
    assert kl < 0.3 * start and bc < 0.5 * start and free > 2 * max(kl, bc), (start, kl, bc, free)


def test_rl_settings_are_validated():
    with pytest.raises(ConfigError, match="rl.anchor"):
        PPOConfig(anchor="l2")
    with pytest.raises(ConfigError, match="multiple of rl.group_size"):
        PPOConfig(advantage="group", episodes=6, group_size=4)
    with pytest.raises(ConfigError, match="rl.lr"):
        PPOConfig(lr=float("nan"))
    with pytest.raises(ConfigError, match="no embodiment 'car'"):
        ActorCritic(_line_policy(), "car")
