"""Closed-loop evaluation: scenario files are validated strictly, safety layers veto what they
should, and the evaluator runs a policy and the expert on the same seeds with command changes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from physai.embodiments import get_spec
from physai.errors import ConfigError
from physai.policy import Policy
from physai.sim.evaluate import ExpertAgent, PolicyAgent, evaluate, summarize
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
    ([{"env": "physai/boat-lake", "seed": 1}], "unknown env"),
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


def test_evaluate_policy_and_expert_same_seeds():
    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("g1",)))
    sc = [Scenario(env="physai/g1-walk", seed=5, seconds=0.4, commands=((0.0, {"vx": 0.3}), (0.2, {"vx": 0.0, "yaw_rate": 0.2})))]
    res = evaluate({"physai": lambda e: PolicyAgent(pol, "g1"), "expert": ExpertAgent}, sc, show_progress=False,
                   render_images=False)
    rows = summarize(res)
    assert {r["agent"] for r in rows} == {"physai", "expert"} and all(r["family"] == "humanoid" for r in rows)
    exp = res["expert"][0]
    assert exp["metrics"]["fell"] == 0.0 and exp["metrics"]["length_s"] == pytest.approx(0.4, abs=0.03)
    assert exp["env"] == "physai/g1-walk" and exp["seed"] == 5 and exp["index"] == 0
    assert exp["commands"] == [{"at": 0.0, "vx": 0.3}, {"at": 0.2, "vx": 0.0, "yaw_rate": 0.2}]
    assert "safety_interventions" in res["physai"][0]["metrics"] and isinstance(res["physai"][0]["safety"], dict)


def test_command_changes_reach_the_agent():
    from physai.sim.rollout import Episode, StepDriver, run_episodes

    seen = []
    spec = get_spec("g1")

    def act(obs):
        seen.append(float(np.asarray(obs["command"]["vx"]).reshape(-1)[0]))
        return (spec.low + spec.high) / 2

    sc = Scenario(env="physai/g1-walk", seed=0, seconds=0.2, commands=((0.0, {"vx": 0.5}), (0.1, {"vx": -0.5})))
    run_episodes(StepDriver(act), [Episode(sc, safety=False, images=False)])
    assert seen[0] == pytest.approx(0.5) and seen[5] == pytest.approx(-0.5)


def test_eval_json_is_strict_and_records_the_episode(tmp_path):
    from physai.report import write_json

    p = write_json(tmp_path / "r.json", {"a": float("nan"), "b": [float("inf"), np.float32(2.5)], "c": np.arange(2)})
    assert json.loads(p.read_text()) == {"a": None, "b": [None, 2.5], "c": [0, 1]}
    assert "NaN" not in p.read_text() and "Infinity" not in p.read_text()


def test_eval_refuses_an_unwritable_json_path_before_running(tmp_path, capsys):
    from physai.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the JSON's folder would have to be
    rc = main(["eval", "--checkpoint", str(tmp_path / "nope"), "--env", "physai/car-highway", "--episodes", "1",
               "--json", str(blocker / "out.json")])
    assert rc == 2  # a ConfigError before the checkpoint (which does not exist) is even opened
    out = capsys.readouterr().out
    assert "cannot write" in out and "missing" not in out
    assert not (blocker / "out.json").exists()


def test_eval_inference_settings_are_parsed_by_type_and_refused_when_not_runtime(tmp_path, capsys):
    from physai.cli import main
    from physai.cli_run import inference_settings

    assert inference_settings(["n_action_steps=4", "temporal_ensemble=0.1"]) == {"n_action_steps": 4,
                                                                                "temporal_ensemble": 0.1}
    assert inference_settings(["n_action_steps=none"]) == {"n_action_steps": None}
    with pytest.raises(ConfigError, match="n_action_steps must be in"):
        inference_settings(["n_action_steps=0"])
    rc = main(["eval", "--checkpoint", str(tmp_path / "nope"), "--env", "physai/car-highway", "--episodes", "1",
               "--inference", "trunk.width=8"])
    assert rc == 2  # refused before the (missing) checkpoint is opened
    out = capsys.readouterr().out
    assert "not inference settings" in out and "missing" not in out


def test_episode_records_when_each_guard_rule_acted():
    from physai.embodiments import get_spec
    from physai.sim.drivers import StepDriver

    spec = get_spec("car")
    full = StepDriver(lambda o: np.array([5.0, 0.0], np.float32), spec=spec)  # full throttle from rest
    sc = [Scenario(env="physai/car-highway", seed=3, seconds=2.0)]
    ep = evaluate({"throttle": lambda e: full}, sc, show_progress=False, render_images=False)["throttle"][0]
    times = ep["safety_times"]
    assert set(times) == {k for k, v in ep["safety"].items() if v > 0}
    assert all(len(times[k]) == ep["safety"][k] and times[k] == sorted(times[k]) for k in times)
    assert all(0.0 <= t < 2.0 for v in times.values() for t in v)
    # the first step's +5 from the reset state (0) exceeds the 4 m/s² per-step rate limit; then it may pass
    assert times["accel_rate"][0] == 0.0 and 0.2 not in times["accel_rate"]
