"""The data flywheel: mining rules on hand-made episodes, segments, the uniform arm's frame count,
and a tiny end-to-end run (both arms, one round) that writes LeRobot data and retrains."""

import json

import numpy as np
import pytest

from physai.flywheel import FlywheelRecipe, MineConfig, hard_mask, run_flywheel, segments, uniform_segments
from physai.errors import ConfigError
from physai.sim.family import get_family


def _episode(n=20, crash_at=None, ttc=None, failed_at=None):
    trace = [{"t": 0.2 * (t + 1), "collision": t == crash_at, "ttc": (ttc or {}).get(t, 10.0)} for t in range(n)]
    instr = [{"kind": "lane_left", "at": 0.2 * failed_at, "success": False}] if failed_at is not None else []
    return {"frames": [None] * n, "trace": trace, "instructions": instr}


def test_mining_rules_mark_the_right_frames():
    car = get_family("car")
    cfg = MineConfig(before_s=1.0, risk_below=2.0, instruction_s=0.6)
    m = hard_mask(_episode(crash_at=15), car, 0.2, cfg, None)
    assert np.where(m["failure"])[0].tolist() == [10, 11, 12, 13, 14, 15]  # 1 s = 5 steps before, and the step
    m = hard_mask(_episode(ttc={4: 1.5, 9: 2.5}), car, 0.2, cfg, None)
    assert np.where(m["near_miss"])[0].tolist() == [5]  # trace entry 4 describes frame 5's observation
    m = hard_mask(_episode(failed_at=7), car, 0.2, cfg, np.arange(20) == 3)
    assert np.where(m["instruction"])[0].tolist() == [7, 8, 9] and np.where(m["surprise"])[0].tolist() == [3]
    assert not any(hard_mask(_episode(), car, 0.2, cfg, None)[k].any() for k in ("failure", "near_miss", "instruction"))
    with pytest.raises(ConfigError, match="surprise_share"):
        MineConfig(surprise_share=2.0)


def test_segments_extend_and_merge():
    mask = np.zeros(30, bool)
    mask[[2, 3, 10, 12, 28]] = True
    assert segments(mask, 2) == [(2, 6), (10, 15), (28, 30)]
    assert segments(np.zeros(5, bool), 4) == []


def test_dedup_compares_with_frames_kept_by_other_segments():
    from physai.flywheel import Deduper

    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 16))
    d = Deduper(MineConfig(dedup="embedding", dedup_cos=0.99))
    d.standardize_with(base)
    seg = base[:10]
    assert d.keep(np.zeros((10, 4), int), seg).all()  # nothing kept yet: a segment keeps its own neighbours
    again = d.keep(np.zeros((10, 4), int), seg + 1e-4)  # the same states again: all duplicates
    assert not again.any()
    assert d.keep(np.zeros((5, 4), int), base[20:25]).all()  # new states are kept
    c = Deduper(MineConfig(dedup="codes"))
    codes = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [5, 6, 7, 8]])
    assert c.keep(codes, None).tolist() == [True, True, True]
    assert c.keep(codes[:2], None).tolist() == [False, False]
    assert Deduper(MineConfig(dedup="none")).keep(codes, None).all()
    with pytest.raises(ConfigError, match="dedup"):
        MineConfig(dedup="yes")


def test_uniform_arm_adds_as_many_frames():
    rng = np.random.default_rng(0)
    segs = uniform_segments([150, 150, 40], 97, 8, rng)
    assert sum(e - s for ss in segs for s, e in ss) == 97
    assert all(0 <= s < e <= n for ss, n in zip(segs, [150, 150, 40]) for s, e in ss)


def test_flywheel_end_to_end_tiny(tmp_path):
    """One round of both arms from a tiny car checkpoint: mined frames are written as a LeRobot
    dataset and trained on, the uniform arm adds the same number of frames, results per round."""
    from physai.policy import Policy
    from physai.testing import SyntheticSource, tiny_config
    from physai.embodiments import get_spec

    ck = tmp_path / "ck"
    pol = Policy.build(tiny_config(embodiments=("car",)), backend="math")
    SyntheticSource([get_spec("car")]).fit_normalizer(pol)
    pol.save_pretrained(ck)
    (tmp_path / "eval.json").write_text(json.dumps([{"env": "physai/car-highway", "seed": 9100, "seconds": 2}]))
    fw = FlywheelRecipe("t", retrain="car_only", rounds=1, episodes=2, seconds=3.0, steps=2,
                        retrain_set=('data.datasets=[["physai/car-highway",1,1.0]]', "data.record.car.seconds=2",
                                     "train.batch_size=8"),
                        mine=MineConfig(surprise_share=0.3), eval_suite=str(tmp_path / "eval.json"))
    res = run_flywheel(ck, fw, tmp_path / "fw", data_root=str(tmp_path / "data"))
    rows = {(r["arm"], r["round"]): r for r in res["rows"]}
    mined, uniform = rows[("mined", 1)], rows[("uniform", 1)]
    assert mined["frames_added"] > 0 and uniform["frames_added"] == mined["frames_added"]
    assert mined["hard_frames"] > 0 and 0 <= mined["dup_share"] <= 1
    for arm in ("mined", "uniform"):
        info = json.loads((tmp_path / "fw" / arm / "round_1" / "meta" / "info.json").read_text())
        assert info["total_frames"] == rows[(arm, 1)]["frames_added"]
        assert (tmp_path / "fw" / arm / "train_1" / "final" / "model.safetensors").exists()
        assert "guard_off/collision" in rows[(arm, 1)] and "guard_on/progress_m" in rows[(arm, 0)]
        w = rows[(arm, 1)]["sampling"]  # the flywheel's frames get `share` of their recording's weight
        fly = sum(v for k, v in w.items() if "/fw/" in k)
        assert fly == pytest.approx(fw.share * sum(w.values()))
