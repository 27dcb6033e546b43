"""Scenario files and shipped suites: every defect is a ConfigError naming the entry and field,
the whole file is checked before anything runs, `seconds` works for every registered env, and the
shipped suites load, validate and use held-out seeds."""

from __future__ import annotations

import json
import math

import pytest

from physai.errors import ConfigError
from physai.sim.family import families
from physai.sim.suite import MAX_SECONDS, Scenario, list_suites, load_scenarios, load_suite, parse_scenarios

CAR = {"env": "physai/car-highway", "seed": 1}
G1 = {"env": "physai/g1-walk", "seed": 1}


def _error(entry: dict, index: int = 1) -> str:
    """The message of parsing [ok, ..., entry] (entry at `index`), which must fail."""
    data = [dict(CAR)] * index + [entry]
    with pytest.raises(ConfigError) as e:
        parse_scenarios(data, "suite.json")
    return str(e.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, 0, -5, "30", None, [30], MAX_SECONDS + 1])
def test_bad_seconds_are_errors(value):
    entry = {**CAR, "seconds": value}
    if value is None:  # an explicit null is "the env's default", as if absent
        assert parse_scenarios([entry])[0].seconds is None
        return
    msg = _error(entry, index=2)
    assert msg.startswith("suite.json[2].seconds: expected a finite number")


def test_seconds_up_to_the_maximum_is_kept_exactly():
    assert parse_scenarios([{**CAR, "seconds": MAX_SECONDS}])[0].seconds == MAX_SECONDS
    assert parse_scenarios([{**CAR, "seconds": 300}])[0].seconds == 300.0  # no silent cap at 200


@pytest.mark.parametrize("at", [math.nan, -1, "soon", True, math.inf, None])
def test_bad_command_times_are_errors(at):
    msg = _error({**CAR, "commands": [{"at": 0, "lane": "keep"}, {"at": at, "lane": "left"}]}, index=3)
    assert msg.startswith("suite.json[3].commands[1].at: expected a finite number >= 0")
    assert repr(at) in msg


def test_command_at_or_after_the_end_and_repeated_times_are_errors():
    msg = _error({**CAR, "seconds": 10, "commands": [{"at": 10, "speed": 20}]})
    assert msg.startswith("suite.json[1].commands[0].at:") and "seconds = 10" in msg
    msg = _error({**CAR, "commands": [{"at": 2, "speed": 20}, {"at": 2.0, "lane": "left"}]})
    assert msg.startswith("suite.json[1].commands[1].at:") and "repeats commands[0]" in msg
    msg = _error({**CAR, "commands": {"at": 2, "speed": 20}})
    assert msg.startswith("suite.json[1].commands: expected a list")
    msg = _error({**CAR, "commands": [{"at": 2}]})
    assert msg.startswith("suite.json[1].commands[0]: a command needs")


@pytest.mark.parametrize("env,hint", [(5, "expected a gymnasium id string, got int 5"),
                                      ("physai/car-higway", "did you mean ['physai/car-highway'"),
                                      ("physai/g1-wlak", "did you mean ['physai/g1-walk'"),
                                      ("physai/boat-lake", "unknown env 'physai/boat-lake'"),
                                      (None, "expected a gymnasium id string")])
def test_bad_envs_name_the_index_and_close_ids(env, hint):
    msg = _error({"env": env, "seed": 0}, index=4)
    assert msg.startswith("suite.json[4].env: ") and hint in msg


@pytest.mark.parametrize("entry,field", [
    ({**G1, "options": {"init_nosie": 0.1}}, "options.init_nosie"),  # unknown G1 option
    ({**G1, "options": {"episode_seconds": 5}}, "options.episode_seconds"),  # set by physai, via `seconds`
    ({**CAR, "options": {"duration": 50}}, "options.duration"),  # the length is `seconds`
    ({**CAR, "options": {"vehicles_densty": 2}}, "options.vehicles_densty"),
    ({"env": "physai/car-merge", "seed": 0, "options": {"vehicles_density": 2}}, "options.vehicles_density"),
    ({**CAR, "options": {"action": {}}}, "options.action"),  # defines the car contract
    ({**CAR, "options": [1]}, "options"),
])
def test_unknown_options_are_errors(entry, field):
    assert _error(entry).startswith(f"suite.json[1].{field}:")


@pytest.mark.parametrize("seed", [-1, True, 1.5, "3", None])
def test_bad_seeds_are_errors(seed):
    msg = _error({"env": "physai/car-highway", "seed": seed})
    assert msg.startswith("suite.json[1].seed: expected an integer >= 0")


@pytest.mark.parametrize("entry,field,text", [
    ({**G1, "commands": [{"at": 0, "vx": 5.0}]}, "commands[0].vx", "command.vx"),
    ({**G1, "commands": [{"at": 0, "yaw_rate": math.nan}]}, "commands[0].yaw_rate", "finite"),
    ({**G1, "commands": [{"at": 0, "vx": "fast"}]}, "commands[0].vx", "expects a number"),
    ({**CAR, "commands": [{"at": 0, "lane": "up"}]}, "commands[0].lane", "one of ['keep', 'left', 'right']"),
    ({**CAR, "commands": [{"at": 0, "speed": True}]}, "commands[0].speed", "expects a number"),
    ({**CAR, "commands": [{"at": 0, "speed": 41}]}, "commands[0].speed", "[0.0, 40.0]"),
    ({**CAR, "commands": [{"at": 0, "vx": 0.3}]}, "commands[0]", "unknown command field(s) ['vx'] for car"),
    ({**CAR, "name": 3}, "name", "expected a string"),
    ({**CAR, "sedd": 3}, "", "unknown field(s) ['sedd']"),
])
def test_bad_entries_name_the_field(entry, field, text):
    msg = _error(entry)
    assert msg.startswith(f"suite.json[1]{'.' if field else ''}{field}:") and text in msg


def test_the_whole_file_is_checked_before_anything_runs(tmp_path):
    """A bad last entry fails the load (nothing is returned for the good ones), and the message
    starts with the file's path."""
    f = tmp_path / "suite.json"
    f.write_text(json.dumps([CAR, G1, {**G1, "seed": -3}]))
    with pytest.raises(ConfigError, match=r"^" + str(f).replace("\\", "\\\\") + r"\[2\]\.seed:"):
        load_scenarios(f)
    f.write_text("[{]")
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_scenarios(f)
    f.write_text(json.dumps([CAR, {**G1, "seconds": math.nan}]))  # json writes NaN, and reads it back
    with pytest.raises(ConfigError, match=r"\[1\]\.seconds"):
        load_scenarios(f)


def test_scenarios_made_in_code_are_checked_too():
    with pytest.raises(ConfigError, match="seed"):
        Scenario(env="physai/car-highway", seed=-1)
    with pytest.raises(ConfigError, match="seconds"):
        Scenario(env="physai/car-highway", seed=1, seconds=math.nan)
    with pytest.raises(ConfigError, match="unknown env"):
        Scenario(env="physai/car-higway", seed=1)
    with pytest.raises(ConfigError, match="sorted"):
        Scenario(env="physai/g1-walk", seed=1, commands=((2.0, {"vx": 0.1}), (1.0, {"vx": 0.2})))
    sc = Scenario(env="physai/g1-walk", seed=1, seconds=0.4, commands=((0.0, {"vx": 0.3}),))
    assert sc.embodiment == "g1"


def test_embodiment_of_is_still_importable_from_suite():
    from physai.sim import family, suite

    assert suite.embodiment_of is family.embodiment_of
    assert suite.embodiment_of("physai/car-merge") == "car"


ENV_IDS = [(fam.name, env) for fam in families() for env in fam.env_ids]


@pytest.mark.parametrize("fam_name,env_id", ENV_IDS, ids=[e for _, e in ENV_IDS])
def test_seconds_works_for_every_registered_env(fam_name, env_id):
    """A scenario with `seconds` parses, and the family's env kwargs make an env whose episodes
    end at that time (the defect: car-merge rejected the injected highway-env `duration`)."""
    import gymnasium as gym

    from physai.embodiments import get_spec
    from physai.sim.family import get_family

    sc = parse_scenarios([{"env": env_id, "seed": 5000, "seconds": 0.4}])[0]
    fam = get_family(fam_name)
    fam.register_envs()
    env = gym.make(env_id, **fam.env_kwargs(env_id, sc.seconds, sc.options, images=False))
    try:
        emb = fam.embodiment_of(env_id)
        expert = fam.make_expert(emb)
        env.reset(seed=sc.seed)
        expert.reset(env)
        steps, term, trunc = 0, False, False
        while not (term or trunc) and steps < 1000:
            _, _, term, trunc, info = env.step(expert.act(env))
            steps += 1
        assert trunc and not term
        assert info["time_s"] == pytest.approx(0.4, abs=0.5 / get_spec(emb).control_hz)
    finally:
        env.close()


def test_shipped_suites_load_and_use_held_out_seeds():
    names = list_suites()
    assert {"car-instructions", "car-dense", "g1-instructions"} <= set(names)
    known = {env for fam in families() for env in fam.env_ids}
    all_seeds = []
    for name in names:
        scs = load_suite(name)
        assert 1 <= len(scs) <= 16
        for sc in scs:
            assert sc.env in known and sc.seed >= 5000 and "held out" in sc.name
            assert sc.seconds is not None and sc.seconds <= 30 and sc.commands
        all_seeds += [(sc.env, sc.seed) for sc in scs]
    assert len(all_seeds) == len(set(all_seeds))


def test_shipped_suites_cover_the_instruction_kinds():
    from physai.sim.humanoid.instructions import command_kind

    g1 = {command_kind({"vx": 0.0, "vy": 0.0, "yaw_rate": 0.0, **c}) for sc in load_suite("g1-instructions")
          for _, c in sc.commands}
    assert {"stand", "forward", "backward", "strafe", "turn", "walk_turn"} <= g1
    car = [c for sc in load_suite("car-instructions") for _, c in sc.commands]
    assert {c.get("lane") for c in car} >= {"left", "right"} and any("speed" in c for c in car)
    assert any(c.get("stop", 300) < 300 for c in car)  # "stop within D m"
    densities = [sc.options.get("vehicles_density", 1) for sc in load_suite("car-dense")]
    assert min(densities) >= 2


def test_unknown_suite_names_close_ones():
    with pytest.raises(ConfigError, match=r"unknown suite 'car-instruction'; did you mean \['car-instructions'"):
        load_suite("car-instruction")
