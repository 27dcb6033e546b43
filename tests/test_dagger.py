"""DAgger rounds inside a recipe, and the world-model loss on a share of the batch."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from physai.data import format as F
from physai.embodiments import get_spec
from physai.errors import ConfigError
from physai.overrides import apply_overrides
from physai.pipeline import dagger_boundaries, train_recipe
from physai.policy import Policy
from physai.recipes import get_recipe
from physai.testing import make_batch, tiny_config


def _wm_ce(pol, batch) -> float:
    torch.manual_seed(0)
    _, m = pol(batch)
    return m["car/world_model_ce"]


def test_world_model_fraction_uses_a_prefix_of_the_batch_in_training():
    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("car",), world_model_fraction=0.5))
    b = make_batch(pol.specs["car"], B=4, H=pol.config.head.chunk_size, seed=1)
    b["embodiment"] = "car"
    tail = dict(b, next_image=b["next_image"].clone(), next_proprio=b["next_proprio"].clone())
    tail["next_image"][2:] = 255 - tail["next_image"][2:]
    tail["next_proprio"][2:] += 5.0
    head = dict(b, next_image=b["next_image"].clone(), next_proprio=b["next_proprio"].clone())
    head["next_image"][:2] = 255 - head["next_image"][:2]
    head["next_proprio"][:2] += 5.0
    pol.train()
    assert _wm_ce(pol, tail) == pytest.approx(_wm_ce(pol, b))  # samples 2, 3 are not used
    assert _wm_ce(pol, head) != pytest.approx(_wm_ce(pol, b))
    pol.eval()  # evaluation scores the whole batch
    assert _wm_ce(pol, tail) != pytest.approx(_wm_ce(pol, b))
    with pytest.raises(ConfigError, match="world_model_fraction"):
        tiny_config(world_model_fraction=0.0)


def test_dagger_boundaries_split_training_into_equal_phases():
    r = apply_overrides(get_recipe("cotrain")(), ["train.steps=100", "data.dagger_rounds=3"])
    assert dagger_boundaries(r) == [25, 50, 75]
    assert dagger_boundaries(apply_overrides(r, ["data.dagger_rounds=0"])) == []
    with pytest.raises(ConfigError, match="dagger"):
        apply_overrides(r, ["data.dagger_rounds=-1"])


def test_dagger_round_adds_expert_labelled_policy_rollouts_and_resumes(tmp_path):
    torch.set_num_threads(1)
    recipe = apply_overrides(get_recipe("car_only")(), [
        "train.steps=6", "train.batch_size=8", "train.ckpt_every=3", "train.warmup_steps=1",
        'data.datasets=[["physai/car-highway",1,1.0]]', "data.record.car.seconds=3", f"data.root={tmp_path / 'data'}",
        "data.dagger_rounds=1", "data.dagger_episodes=2",
    ])
    out = tmp_path / "run"
    res = train_recipe(recipe, out, resume=False, progress=False)
    assert res["steps"] == 6 and res["dagger_rounds"] == 1
    rd = out / "dagger" / "round_1"
    done = json.loads((rd / "done.json").read_text())
    (ds,) = done["datasets"]
    info = F.read_info(ds)
    assert info["total_episodes"] == 2
    session = json.loads((Path(ds) / F.META_FILE).read_text())["sessions"][0]
    assert session["dagger"] == str(rd / "policy") and session["seed"] >= recipe.data.dagger_seed
    # the recording's weight is shared with its DAgger data in proportion to frames
    weights = res["datasets"]
    rec = next(p for p in weights if p != ds)
    n_rec, n_dag = F.read_info(rec)["total_frames"], info["total_frames"]
    assert weights[ds] == pytest.approx(n_dag / (n_rec + n_dag))
    assert sum(weights.values()) == pytest.approx(1.0)
    # resuming a finished run reuses the round's data: nothing is collected again
    stamp = (rd / "done.json").stat().st_mtime_ns
    res2 = train_recipe(recipe, out, resume=True, progress=False)
    assert res2["resumed"] and res2["dagger_rounds"] == 1 and (rd / "done.json").stat().st_mtime_ns == stamp
    assert F.read_info(ds)["total_episodes"] == 2
    assert (out / "final" / "model.safetensors").exists()


def test_humanoid_recordings_carry_their_stand_probability(tmp_path):
    from physai.data.frames import load_frames
    from physai.pipeline import ensure_dataset
    from physai.sim.family import get_family

    fam = get_family("humanoid")
    assert "stand_prob" not in fam.record_config(stand_prob=0.1).env_options()  # the env's default
    always = fam.record_config(seconds=0.1, stand_prob=1.0)
    path = ensure_dataset("physai/g1-walk", 1, tmp_path, seed=0, record=always, progress=False)
    assert path.name == f"g1-walk-seed0-0.1s-stand1-spec{get_spec('g1').digest()}"  # its own cache folder: never mixed with other data
    session = json.loads((path / F.META_FILE).read_text())["sessions"][0]
    assert session["env_kwargs"]["stand_prob"] == "1.0"
    fr = load_frames(path)
    assert len(fr) == 5 and abs(fr.command).max() == 0.0  # every command was "stand still"
    default = ensure_dataset("physai/g1-walk", 1, tmp_path, seed=0, record=fam.record_config(seconds=0.1, stand_prob=0.1),
                             progress=False)
    assert default.name == f"g1-walk-seed0-0.1s-spec{get_spec('g1').digest()}"  # the env's default: no stand tag
    with pytest.raises(ConfigError, match="stand_prob"):
        apply_overrides(get_recipe("cotrain")(), ["data.record.humanoid.stand_prob=1.5"])
    with pytest.raises(ConfigError, match="data.record.humanoid.stand_prob"):  # a typo lists the valid keys
        apply_overrides(get_recipe("cotrain")(), ["data.record.humanoid.stand_probb=0.5"])


def test_recipe_loader_weights_humanoid_command_switches(tmp_path):
    from physai.pipeline import _make_loader, ensure_dataset
    from physai.sim.family import get_family

    g1 = ensure_dataset("physai/g1-walk", 1, tmp_path, seed=0, record=get_family("humanoid").record_config(seconds=0.1),
                        progress=False)
    recipe = apply_overrides(get_recipe("g1_only")(), ["data.record.humanoid.transition_weight=2.5",
                                                       "data.record.humanoid.transition_seconds=0.5",
                                                       "train.batch_size=4"])
    loader = _make_loader(recipe, {g1: 1.0}, [], {})
    assert loader.transition_weight == {"g1": 2.5} and loader.transition_seconds == 0.5
    plain = _make_loader(apply_overrides(recipe, ["data.record.humanoid.transition_weight=1"]), {g1: 1.0}, [], {})
    assert plain.transition_weight == {}
    with pytest.raises(ConfigError, match="transition_weight"):
        apply_overrides(recipe, ["data.record.humanoid.transition_weight=0.5"])
