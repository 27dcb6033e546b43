"""Distillation: the student shares the teacher's bodies, tokens and normalization; the teacher
source relabels the requested share of rows with the teacher's chunk and carries its tokens; the
token term trains; a tiny end-to-end run with an on-policy round writes a loadable student."""

import json

import numpy as np
import pytest
import torch

from physai.distill import DistillConfig, TeacherSource, data_recipe_for, distill, student_for
from physai.embodiments import get_spec
from physai.errors import ConfigError
from physai.policy import Policy
from physai.testing import SyntheticSource, tiny_config


def _teacher(tmp_path=None):
    t = Policy.build(tiny_config(embodiments=("car",)), backend="math")
    SyntheticSource([get_spec("car")]).fit_normalizer(t)
    if tmp_path is not None:
        t.save_pretrained(tmp_path / "teacher")
    return t.eval()


def test_student_copies_the_contract_not_the_size():
    t = _teacher()
    s = student_for(t, DistillConfig())
    assert s.config.trunk.width == 64 and s.config.stem.patch_size == 16 and s.world_model is None
    assert s.config.n_readout == t.config.n_readout and s.config.fsq_levels == t.config.fsq_levels
    assert s.config.head.chunk_size == t.config.head.chunk_size and s.specs["car"] == t.specs["car"]
    assert np.array_equal(s.normalizer.stats["car"]["proprio"]["mean"], t.normalizer.stats["car"]["proprio"]["mean"])


def test_student_inherits_the_teachers_reflex_when_the_widths_match():
    t = _teacher()
    src = t.heads["car"].reflex.state_dict()
    s = student_for(t, DistillConfig())  # reflex width: the teacher's
    assert s.config.head.reflex_hidden == t.config.head.reflex_hidden
    assert all(torch.equal(src[k], v) for k, v in s.heads["car"].reflex.state_dict().items())
    fresh = student_for(t, DistillConfig(inherit_reflex=False))
    assert not torch.equal(fresh.heads["car"].reflex[0].weight, src["0.weight"])
    narrow = student_for(t, DistillConfig(reflex_hidden=8))  # other shape: trained from scratch
    assert narrow.heads["car"].reflex[0].weight.shape[0] == 8
    assert student_for(t, DistillConfig(reflex_hidden=0)).heads["car"].reflex is None
    with pytest.raises(ConfigError, match="reflex_hidden"):
        DistillConfig(reflex_hidden=-1)


def test_teacher_source_relabels_and_carries_tokens():
    t = _teacher()
    src = SyntheticSource([get_spec("car")], batch_size=16, chunk_size=t.config.head.chunk_size)
    all_teacher = TeacherSource(src, t, DistillConfig(teacher_fraction=1.0)).sample()["car"]
    with torch.no_grad():
        want = t.predict_action_chunk({k: all_teacher[k] for k in ("image", "proprio", "command")}, "car")
    assert torch.allclose(all_teacher["action"], want)
    assert all_teacher["teacher_quantized"].shape == (16, t.config.n_readout, len(t.config.fsq_levels))
    src.i = 0
    gt = src.sample()["car"]
    src.i = 0
    none = TeacherSource(src, t, DistillConfig(teacher_fraction=0.0)).sample()["car"]
    assert torch.equal(none["action"], torch.as_tensor(gt["action"]))  # ground truth kept
    s = student_for(t, DistillConfig())
    loss, m = s(all_teacher)
    assert "car/distill_token_mse" in m and torch.isfinite(loss)
    bad = {**all_teacher, "teacher_quantized": torch.zeros(16, 3, 2)}
    with pytest.raises(Exception, match="teacher_quantized"):
        s(bad)
    with pytest.raises(ConfigError, match="teacher_fraction"):
        DistillConfig(teacher_fraction=1.5)


def test_distill_end_to_end_tiny(tmp_path):
    _teacher(tmp_path)
    cfg = DistillConfig(steps=4, batch_size=8, rounds=1, episodes=1, data_recipe="car_only",
                        data_set=('data.datasets=[["physai/car-highway",1,1.0]]', "data.record.car.seconds=2"))
    res = distill(tmp_path / "teacher", tmp_path / "student", cfg, data_root=str(tmp_path / "data"), progress=False)
    assert res["onpolicy_frames"]["car"] > 0 and res["student_params"] > 0
    s = Policy.from_pretrained(res["student"])
    assert s.config.trunk.width == 64 and s.world_model is None
    out = s.predict_action_chunk({"image": np.zeros((3, 64, 64), np.uint8), "proprio": np.zeros(6, np.float32),
                                  "command": {"lane": "keep", "speed": 20.0}}, "car")
    assert torch.isfinite(out).all()
    saved = json.loads((tmp_path / "student" / "distill.json").read_text())
    # the student's card names its data, so distilling it again finds the same recordings
    assert data_recipe_for(res["student"], DistillConfig()) == "car_only"
    assert data_recipe_for(res["student"], DistillConfig(data_recipe="sft")) == "sft"
    assert data_recipe_for(tmp_path / "teacher", DistillConfig()) == "sft"  # saved outside `physai train`
    assert saved["ratio"] == pytest.approx(res["ratio"])
    rows = [json.loads(l) for l in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert any("car/distill_token_mse" in r for r in rows)


class _Const:
    in_slot, max_slots = False, None

    def __init__(self, v):
        self.v, self.resets = v, 0

    def reset(self, slot):
        self.resets += 1

    def act(self, obs, slots):
        return [np.full(2, self.v, np.float32) for _ in slots]


def test_mix_driver_executes_the_other_driver_with_probability_beta():
    from physai.sim.drivers import MixDriver

    for beta, lo, hi in ((0.0, 0, 0), (1.0, 1, 1), (0.25, 0.2, 0.3)):
        a, b = _Const(0.0), _Const(1.0)
        d = MixDriver(a, b, beta, seed=3)
        d.reset(0)
        picks = [out[0] for _ in range(1000) for out in d.act([{}, {}], [0, 1])]
        share = float(np.mean(picks))
        assert lo <= share <= hi and d.other_steps / d.steps == pytest.approx(share)
        assert a.resets == b.resets == 1  # both drivers follow every episode
    with pytest.raises(ValueError, match="beta"):
        MixDriver(_Const(0), _Const(1), 1.5)


def test_the_students_own_frames_always_carry_teacher_labels():
    t = _teacher()
    src = SyntheticSource([get_spec("car")], batch_size=16, chunk_size=t.config.head.chunk_size)
    gt = src.sample()["car"]
    src.i = 0
    ts = TeacherSource(src, t, DistillConfig(teacher_fraction=0.0, onpolicy_fraction=0.25))
    ts.add_frames("car", {k: np.asarray(gt[k])[:5] for k in ("image", "proprio", "command")})
    b = ts.sample()["car"]
    with torch.no_grad():
        want = t.predict_action_chunk({k: b[k] for k in ("image", "proprio", "command")}, "car")
    assert b["action"].shape[0] == 16
    assert torch.equal(b["action"][:12], torch.as_tensor(gt["action"])[:12])  # recorded rows: ground truth
    assert torch.allclose(b["action"][12:], want[12:])  # the student's 4 own rows: the teacher's chunk
    assert not b["action_is_pad"][12:].any()
