"""Closed-loop evaluation: scenario files are validated strictly, safety layers veto what they
should, and the evaluator runs a policy and the expert on the same seeds with command changes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from physai.embodiments import get_spec
from physai.embodiments.safety import CarSafety, HumanoidSafety
from physai.errors import ConfigError
from physai.policy import Policy
from physai.sim.evaluate import ExpertAgent, PolicyAgent, evaluate, run_scenario, summarize
from physai.sim.suite import Scenario, load_scenarios, parse_scenarios
from physai.testing import tiny_config


def test_scenario_file_parsing(tmp_path):
    f = tmp_path / "suite.json"
    f.write_text(json.dumps([
        {"env": "physai/car-highway", "seed": 3, "seconds": 40, "options": {"vehicles_density": 1.5},
         "commands": [{"at": 10, "lane": "left"}, {"at": 0, "lane": "keep", "speed": 25}]},
        {"env": "physai/g1-walk", "seed": 1, "commands": [{"at": 0, "vx": 0.5}, {"at": 2, "yaw_rate": 0.3}]},
    ]))
    sc = load_scenarios(f)
    assert [s.embodiment for s in sc] == ["car", "g1"]
    assert sc[0].commands[0] == (0.0, {"lane": "keep", "speed": 25}) and sc[0].seconds == 40
    assert sc[1].seconds is None and sc[1].commands[1] == (2.0, {"yaw_rate": 0.3})


@pytest.mark.parametrize("bad,match", [
    ([{"env": "physai/car-highway", "seed": 1, "speed": 3}], "unknown field"),
    ([{"env": "physai/car-highway"}], "missing required field 'seed'"),
    ([{"env": "physai/boat-lake", "seed": 1}], "not a physai env"),
    ([{"env": "physai/g1-walk", "seed": 1, "commands": [{"at": 0, "lane": "left"}]}], "unknown command field"),
    ([{"env": "physai/g1-walk", "seed": 1, "commands": [{"at": 0, "vx": 5.0}]}], "command.vx"),
    ([{"env": "physai/car-highway", "seed": 1, "commands": [{"lane": "left"}]}], "'at'"),
    ({"env": "x"}, "JSON list"),
])
def test_scenario_errors_name_the_field(bad, match):
    with pytest.raises(ConfigError, match=match):
        parse_scenarios(bad)


def test_missing_scenario_file_is_typed(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_scenarios(tmp_path / "nope.json")


def test_humanoid_safety_rate_limits_and_clamps():
    spec = get_spec("g1")
    g = HumanoidSafety(spec)
    a0 = (spec.low + spec.high) / 2
    assert np.allclose(g.filter(a0, None), a0) and g.interventions == 0
    jump = a0 + 1.0
    out = g.filter(jump, None)
    assert np.all(out <= a0 + g.max_step_rad + 1e-6) and np.all(out <= spec.high) and g.interventions == 1
    nan = g.filter(np.full(spec.action_dim, np.nan), None)
    assert np.isfinite(nan).all()


def test_car_safety_brakes_when_close():
    import gymnasium as gym

    import physai.sim

    physai.sim.register_envs()
    env = gym.make("physai/car-highway")
    env.reset(seed=0)
    guard = CarSafety(get_spec("car"))
    gap, _ = guard.front_gap(env)
    a = guard.filter(np.array([3.0, 0.0]), env)
    if gap < guard.min_gap_m:
        assert a[0] == -5.0
    guard.min_gap_m = gap + 1.0 if np.isfinite(gap) else 1e9  # make the car ahead "too close"
    guard.ttc_s = 1e9
    a = guard.filter(np.array([3.0, 0.1]), env)
    assert a[0] == -5.0 and a[1] == pytest.approx(0.1) and guard.interventions >= 1
    env.close()


def test_evaluate_policy_and_expert_same_seeds():
    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("g1",)))
    sc = [Scenario(env="physai/g1-walk", seed=5, seconds=0.4, commands=((0.0, {"vx": 0.3}), (0.2, {"vx": 0.0, "yaw_rate": 0.2})))]
    res = evaluate({"physai": lambda e: PolicyAgent(pol, "g1"), "expert": ExpertAgent}, sc, show_progress=False,
                   render_images=False)
    rows = summarize(res)
    assert {r["agent"] for r in rows} == {"physai", "expert"}
    exp = res["expert"]["physai/g1-walk"][0]
    assert exp["fell"] == 0.0 and exp["length_s"] == pytest.approx(0.4, abs=0.03)
    assert "safety_interventions" in res["physai"]["physai/g1-walk"][0]


def test_command_changes_reach_the_agent():
    seen = []

    class Probe:
        def reset(self):
            pass

        def act(self, obs, env):
            seen.append(float(np.asarray(obs["command"]["vx"]).reshape(-1)[0]))
            return env.unwrapped.spec_.low * 0 + (env.unwrapped.spec_.low + env.unwrapped.spec_.high) / 2

    sc = Scenario(env="physai/g1-walk", seed=0, seconds=0.2, commands=((0.0, {"vx": 0.5}), (0.1, {"vx": -0.5})))
    run_scenario(Probe(), sc, safety=False, render_images=False)
    assert seen[0] == pytest.approx(0.5) and seen[5] == pytest.approx(-0.5)
