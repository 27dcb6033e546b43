"""Bring your own robot: a dataset LeRobot wrote (no physai writer, no meta/physai.json) for a body
physai has never seen trains a new head on a co-trained trunk from the CLI, and the checkpoint
loads and acts in a fresh process where that body is not registered."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from physai.cli import main
from physai.data.format import dataset_spec
from physai.data.frames import load_frames
from physai.embodiments import EMBODIMENTS, get_spec
from physai.errors import ConfigError
from physai.policy import Policy
from physai.testing import SyntheticSource, tiny_config, write_lerobot_dataset


@pytest.fixture(scope="module")
def arm_dataset(tmp_path_factory):
    return write_lerobot_dataset(tmp_path_factory.mktemp("lerobot") / "myarm", episodes=5, frames=24)


def test_spec_comes_from_the_datasets_own_metadata(arm_dataset):
    spec, ours = dataset_spec(arm_dataset)
    assert not ours and spec.name == "myarm" and "myarm" not in EMBODIMENTS
    assert spec.action_names == ("j0", "j1", "j2") and spec.proprio_names == ("j0", "j1", "j2", "gripper")
    assert [(c.name, c.height, c.width) for c in spec.cameras] == [("wrist", 32, 32)]
    assert spec.control_hz == 10.0 and spec.command == () and spec.command_dim == 0
    f = load_frames(arm_dataset)
    assert f.images.shape == (120, 1, 3, 32, 32) and f.command.shape == (120, 0) and f.num_episodes == 5
    # the bounds hold every recorded action, with the margin on both sides
    assert (f.action.min(0) > spec.low).all() and (f.action.max(0) < spec.high).all()
    assert not (arm_dataset / "meta" / "physai_norm.safetensors").exists()  # nothing written into the user's data


def test_a_physai_recording_edited_by_lerobot_trains_with_its_bodys_spec(tmp_path):
    """LeRobot's own `delete_episodes` (what `lerobot-edit-dataset delete_episodes` runs) writes a new
    dataset without meta/physai.json; it is recognised by its robot_type and checked against the
    registered spec."""
    from lerobot.datasets.dataset_tools import delete_episodes
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from physai.data.writer import DatasetWriter
    from physai.testing import make_obs

    spec = get_spec("car")
    root = tmp_path / "car"
    with DatasetWriter(root, spec) as w:
        for ep in range(3):
            o = make_obs(spec, np.random.default_rng(ep))
            for _ in range(3 + ep):
                w.add_frame({"topdown": o["image"].transpose(1, 2, 0)}, o["proprio"],
                            spec.encode_command(o["command"]), np.full(2, ep, np.float32), 0.0, "drive")
            w.commit_episode()
    edited = tmp_path / "car_edited"
    delete_episodes(LeRobotDataset("physai/car", root=root), [1], output_dir=edited, repo_id="me/car_edited")
    assert not (edited / "meta" / "physai.json").exists()
    got, ours = dataset_spec(edited)
    assert got == spec and not ours
    f = load_frames(edited)
    assert f.num_episodes == 2 and len(f) == 3 + 5 and f.command.shape == (8, spec.command_dim)
    assert sorted(set(f.action[:, 0].tolist())) == [0.0, 2.0]  # episode 1 is gone, 0 and 2 remain


def test_a_path_that_is_not_a_dataset_is_a_clear_error(tmp_path):
    from physai.data.sources import resolve_dataset

    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a LeRobot dataset"):
        resolve_dataset(tmp_path / "empty")
    with pytest.raises(ConfigError, match="neither a physai env id"):
        resolve_dataset(str(tmp_path / "nowhere" / "deep"))


def test_a_hub_id_offline_says_the_hub_is_offline(tmp_path, monkeypatch):
    from physai.data.sources import resolve_dataset
    from physai.errors import DatasetError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match="Hub is offline"):
        resolve_dataset("someone/their_dataset", tmp_path / "data")


def _l1(policy, frames, emb):
    """Mean |chunk - recorded actions| (physical units) over every frame's first action."""
    obs = {"image": torch.from_numpy(frames.images[:, None]), "proprio": torch.from_numpy(frames.state[:, None]),
           "command": torch.from_numpy(frames.command)}
    with torch.no_grad():
        chunk = policy.predict_action_chunk(obs, emb)  # [N, H, A]
    return float(np.abs(np.asarray(chunk[:, 0]) - frames.action).mean())


def test_finetune_a_new_body_from_a_lerobot_dataset_then_load_it_in_a_fresh_process(arm_dataset, tmp_path):
    trunk = Policy.build(tiny_config(embodiments=("car",)))
    SyntheticSource([get_spec("car")]).fit_normalizer(trunk)
    trunk.save_pretrained(tmp_path / "trunk")
    out = tmp_path / "run"
    rc = main(["train", "--recipe", "finetune", "--set", f"init_from={tmp_path / 'trunk'}",
               "--set", f'data.datasets=[["{arm_dataset}", 1.0]]', "--set", "train.steps=80",
               "--set", "train.batch_size=32", "--set", "train.ckpt_every=80", "--set", "train.lr=3e-3",
               "--out", str(out)])
    assert rc == 0
    tuned = Policy.from_pretrained(out / "final")
    assert set(tuned.specs) == {"car", "myarm"}
    for k, v in trunk.trunk.state_dict().items():  # the co-trained trunk stayed frozen
        assert torch.equal(v, tuned.trunk.state_dict()[k]), k
    held = load_frames(arm_dataset).hold_out(1)[1]  # the episode the run validated on, never trained on
    mean = float(np.abs(held.action - load_frames(arm_dataset).action.mean(0)).mean())
    assert _l1(tuned, held, "myarm") < 0.8 * mean  # it learned the arm, not just its mean action

    script = textwrap.dedent(f"""
        import json, numpy as np
        from physai.embodiments import EMBODIMENTS
        from physai.policy import Policy
        assert "myarm" not in EMBODIMENTS
        p = Policy.from_pretrained({str(out / 'final')!r})
        s = p.specs["myarm"]
        rng = np.random.default_rng(0)
        acts = [np.asarray(p.select_action({{"image": rng.integers(0, 256, (3, 32, 32), dtype=np.uint8),
                                             "proprio": rng.uniform(-1, 1, 4).astype(np.float32), "command": {{}}}},
                                           "myarm")).tolist() for _ in range(6)]
        print(json.dumps({{"actions": acts, "low": s.low.tolist(), "high": s.high.tolist()}}))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    a = np.asarray(got["actions"])
    assert a.shape == (6, 3) and np.isfinite(a).all()
    assert (a >= np.asarray(got["low"]) - 1e-6).all() and (a <= np.asarray(got["high"]) + 1e-6).all()


class _Loader:
    """The loader surface `build_policy` reads (normalizer, specs, frames, batches) over random batches."""

    def __init__(self, spec):
        self.specs = {spec.name: spec}

    def num_frames(self):
        return {e: 256 for e in self.specs}

    def batch_for(self, emb, idx):
        from physai.testing import make_batch

        b = make_batch(self.specs[emb], B=len(idx), H=4, seed=len(idx))
        return {**b, "action_is_pad": torch.zeros(b["action"].shape[:2], dtype=torch.bool)}

    def normalizer(self, modes):
        from physai.normalization import Normalizer

        norm = Normalizer(modes=dict(modes))
        for e, s in self.specs.items():
            b = self.batch_for(e, list(range(64)))
            norm.fit(e, "proprio", b["proprio"].reshape(-1, s.proprio_dim).numpy())
            norm.fit(e, "action", b["action"].reshape(-1, s.action_dim).numpy())
        return norm


def test_a_fine_tune_adds_a_residual_body_to_a_checkpoint_without_it(tmp_path):
    """finetune_t1 (T1 predicts residual actions) on a car-only checkpoint: the new body is added
    before the config names it among the residual bodies."""
    from physai.pipeline import build_policy
    from physai.recipes import get_recipe

    trunk = Policy.build(tiny_config(embodiments=("car",)))
    SyntheticSource([get_spec("car")]).fit_normalizer(trunk)
    trunk.save_pretrained(tmp_path / "trunk")
    import dataclasses

    recipe = dataclasses.replace(get_recipe("finetune_t1")(), init_from=str(tmp_path / "trunk"))
    pol = build_policy(recipe, _Loader(get_spec("t1")))
    assert set(pol.specs) == {"car", "t1"} and pol.config.residual_actions == ("t1",)
    assert pol.normalizer.has("t1", "action_delta")
