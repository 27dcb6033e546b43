"""Model cards in every checkpoint, Hub repo ids in from_pretrained (offline: a clear error), push."""

import json

import pytest

from physai.card import add_results, read_card
from physai.embodiments import get_spec
from physai.errors import CheckpointError
from physai.policy import Policy
from physai.testing import SyntheticSource, tiny_config


@pytest.fixture
def ckpt(tmp_path):
    p = Policy.build(tiny_config(embodiments=("car", "g1")))
    SyntheticSource([get_spec("car"), get_spec("g1")]).fit_normalizer(p)
    p.save_pretrained(tmp_path / "ckpt", training={"recipe": "cotrain", "datasets": [
        {"path": "data/car", "body": "car", "weight": 0.4, "episodes": 3, "frames": 90}]})
    return tmp_path / "ckpt"


def test_every_checkpoint_has_a_model_card_with_bodies_and_training(ckpt):
    card = read_card(ckpt)
    assert [b["name"] for b in card["bodies"]] == ["car", "g1"]
    assert card["training"]["recipe"] == "cotrain" and card["model"]["params"] > 0
    md = (ckpt / "README.md").read_text()
    assert md.startswith("---\nlibrary_name: physai") and "| car | 2 (accel, steer)" in md and "data/car" in md
    Policy.from_pretrained(ckpt)  # the card files do not disturb loading


def test_eval_results_are_appended_to_the_card(ckpt):
    rows = [{"agent": "physai", "env": "physai/car-highway", "episodes": 2, "collision": 0.5, "skip": [1, 2]},
            {"agent": "expert", "env": "physai/car-highway", "episodes": 2, "collision": 0.0}]
    assert add_results(ckpt, "suite car-dense", rows, ["collision"], safety=False)
    card = read_card(ckpt)
    assert card["results"][-1]["what"] == "suite car-dense" and card["results"][-1]["rows"][0]["collision"] == 0.5
    assert "skip" not in card["results"][-1]["rows"][0]  # only scalars go into a card
    md = (ckpt / "README.md").read_text()
    assert "### suite car-dense (safety off" in md and "| physai | physai/car-highway | 2 | 0.5 |" in md


def test_a_hub_repo_id_offline_is_a_clear_error_distinct_from_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="Hub is offline"):
        Policy.from_pretrained("someone/physai-car")
    (tmp_path / "local").mkdir()
    with pytest.raises(CheckpointError, match="missing config.json"):
        Policy.from_pretrained(tmp_path / "local")


def test_push_uploads_the_checkpoint_folder_with_huggingface_hub(ckpt, monkeypatch):
    import huggingface_hub

    from physai.hub import push_checkpoint

    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kw):
            calls["create"] = (repo_id, kw)
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, repo_id, folder_path, **kw):
            from pathlib import Path

            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["upload"] = (repo_id, kw)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = push_checkpoint(ckpt, "me/physai-car", private=True)
    assert url.endswith("me/physai-car") and calls["create"][1]["private"] is True
    assert {"config.json", "model.safetensors", "normalization.safetensors", "README.md", "card.json"} <= set(calls["files"])
    with pytest.raises(CheckpointError, match="owner/name"):
        push_checkpoint(ckpt, "not a repo")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="offline"):
        push_checkpoint(ckpt, "me/physai-car")
    assert json.loads((ckpt / "card.json").read_text())["bodies"]  # pushing changes nothing locally
