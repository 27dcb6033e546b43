"""physai inside LeRobot: the `lerobot_policy_physai` plugin makes `lerobot-train --policy.type=physai`
train on a LeRobot dataset, and the checkpoint it writes runs through LeRobot's own loading and
processors."""

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from physai.embodiments import get_spec
from physai.policy import Policy
from physai.testing import SyntheticSource, tiny_config, write_lerobot_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_lerobot_dataset(tmp_path_factory.mktemp("lr") / "myarm", episodes=3, frames=20)


def test_the_plugin_distribution_is_installed():
    assert md.version("lerobot_policy_physai"), "install it: pip install ./physai/lerobot_policy/plugin (README)"
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    assert "physai" in PreTrainedConfig.get_known_choices()


def test_lerobot_train_trains_physai_then_lerobot_loads_and_runs_it(dataset, tmp_path):
    out = tmp_path / "out"
    exe = Path(sys.executable).parent / "lerobot-train"
    cmd = [str(exe), "--dataset.repo_id=user/myarm", f"--dataset.root={dataset}", "--policy.type=physai",
           "--policy.push_to_hub=false", "--policy.preset=nano", "--policy.chunk_size=4", "--policy.n_action_steps=2",
           "--steps=4", "--batch_size=4", f"--output_dir={out}", "--policy.device=cpu", "--wandb.enable=false",
           "--num_workers=0", "--save_freq=4", "--log_freq=1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = out / "checkpoints" / "last" / "pretrained_model"
    assert json.loads((ckpt.parent / "training_state" / "training_step.json").read_text())["step"] == 4
    assert "loss:" in res.stderr + res.stdout

    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    policy = get_policy_class("physai").from_pretrained(ckpt)  # rebuilt from config.json alone
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(ckpt))
    ds = LeRobotDataset("user/myarm", root=dataset)
    frame = ds[0]
    batch = {k: frame[k][None] for k in ("observation.images.wrist", "observation.state")}
    policy.reset()
    actions = [post(policy.select_action(pre(dict(batch)))) for _ in range(3)]  # 2 queued per chunk
    a = torch.cat(actions).numpy()
    assert a.shape == (3, 3) and np.isfinite(a).all()
    st = ds.meta.stats["action"]  # the [-1, 1] action range unnormalizes into the recorded range
    assert (a >= np.asarray(st["min"]) - 1e-4).all() and (a <= np.asarray(st["max"]) + 1e-4).all()
    again = get_policy_class("physai").from_pretrained(ckpt)
    again.reset()
    assert torch.allclose(post(again.select_action(pre(dict(batch)))), actions[0], atol=1e-5)


def test_a_lerobot_physai_policy_can_join_a_pretrained_physai_trunk(tmp_path):
    from lerobot.configs.types import FeatureType, PolicyFeature

    from physai.lerobot_policy.configuration_physai import PhysaiConfig
    from physai.lerobot_policy.modeling_physai import PhysaiPolicy

    trunk = Policy.build(tiny_config(embodiments=("car",)))
    SyntheticSource([get_spec("car")]).fit_normalizer(trunk)
    trunk.save_pretrained(tmp_path / "trunk")
    cfg = PhysaiConfig(input_features={"observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
                                       "observation.state": PolicyFeature(FeatureType.STATE, (5,))},
                       output_features={"action": PolicyFeature(FeatureType.ACTION, (2,))},
                       init_from=str(tmp_path / "trunk"), freeze_trunk=True, chunk_size=4, n_action_steps=4,
                       device="cpu", push_to_hub=False)
    pol = PhysaiPolicy(cfg)
    assert set(pol.model.specs) == {"car", "lerobot_robot"}
    trainable = {id(p) for p in pol.get_optim_params()}
    assert trainable and not any(id(p) in trainable for p in pol.model.trunk.parameters())
    batch = {"observation.images.top": torch.rand(3, 3, 32, 32), "observation.state": torch.randn(3, 5),
             "action": torch.rand(3, 4, 2) * 2 - 1, "action_is_pad": torch.zeros(3, 4, dtype=torch.bool)}
    loss, _ = pol.forward(batch)
    assert torch.isfinite(loss)
    chunk = pol.predict_action_chunk(batch)
    assert chunk.shape == (3, 4, 2) and chunk.abs().max() <= 1.0


def test_lerobot_eval_runs_a_physai_policy_in_a_physai_env(tmp_path):
    """A physai car recording trains through `lerobot-train`, then `lerobot-eval --env.type=physai`
    drives the car env with it through LeRobot's own eval loop, processors and videos."""
    from physai.data.collect import collect

    ds = tmp_path / "car"
    collect("physai/car-highway", 2, ds, max_steps=16, progress=False)
    bin_dir, env = Path(sys.executable).parent, {**os.environ, "HF_HUB_OFFLINE": "1"}
    train = [str(bin_dir / "lerobot-train"), "--dataset.repo_id=physai/car", f"--dataset.root={ds}",
             "--policy.type=physai", "--policy.push_to_hub=false", "--policy.chunk_size=4", "--policy.n_action_steps=4",
             "--steps=2", "--batch_size=4", f"--output_dir={tmp_path / 'train'}", "--policy.device=cpu",
             "--wandb.enable=false", "--num_workers=0", "--save_freq=2"]
    res = subprocess.run(train, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = tmp_path / "train" / "checkpoints" / "last" / "pretrained_model"
    from lerobot.policies.factory import get_policy_class

    pol = get_policy_class("physai").from_pretrained(ckpt)  # the recording's command is an input
    assert pol.model.specs["lerobot_robot"].command_dim == get_spec("car").command_dim
    ev = [str(bin_dir / "lerobot-eval"), f"--policy.path={ckpt}", "--env.type=physai", "--env.task=car-highway",
          "--env.episode_seconds=2", "--eval.n_episodes=2", "--eval.batch_size=1", "--policy.device=cpu",
          f"--output_dir={tmp_path / 'eval'}"]
    res = subprocess.run(ev, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((tmp_path / "eval" / "eval_info.json").read_text())["overall"]
    assert info["n_episodes"] == 2 and np.isfinite(info["avg_sum_reward"])
    assert len(info["video_paths"]) >= 1 and all(Path(p).stat().st_size > 0 for p in info["video_paths"])


def test_the_lerobot_env_config_maps_physai_observations():
    from physai.lerobot_policy.env_physai import PhysaiEnvConfig

    cfg = PhysaiEnvConfig(task="g1-walk", episode_seconds=1.0)
    assert cfg.fps == 50 and cfg.gym_id == "physai/g1-walk"
    assert cfg.features_map["pixels/follow"] == "observation.images.follow"
    envs = cfg.create_envs(1)["physai"][0]
    try:
        obs, _ = envs.reset(seed=0, options={"lerobot_new_rollout": True})  # LeRobot's own reset option
        assert obs["pixels"]["follow"].shape == (1, 64, 64, 3) and obs["agent_pos"].shape[1] == get_spec("g1").proprio_dim
        assert envs.call("_max_episode_steps")[0] == 50 and envs.call("task")[0] == "physai/g1-walk"
        assert envs.call("task_description")[0].startswith("walk")
        assert envs.call("render")[0].shape == (256, 256, 3)
    finally:
        envs.close()
