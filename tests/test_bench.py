"""`physai bench train`: FLOPs counted in training mode, ACT sized to physai's parameter count;
`bench train` and `bench latency` advance a progress bar once per model they time."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from physai.embodiments import get_spec
from physai.bench import common, train as B
from physai.testing import make_batch


def test_train_flops_are_counted_in_training_mode():
    spec = get_spec("car")
    pol = common._physai_policy(["car"], "nano", chunk=4)
    assert not pol.training  # the bench builds policies in eval mode ...
    batch = make_batch(spec, B=8, H=4, seed=0)
    flops = B._train_flops_per_sample(pol, batch)
    assert not pol.training and all(p.grad is None for p in pol.parameters())  # ... and gets them back untouched
    # in eval mode the world model would run on the whole batch, in training on a quarter of it
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        loss, _ = pol(batch)
        loss.backward()
    assert flops < fc.get_total_flops() / 8
    pol.train()
    assert B._train_flops_per_sample(pol, batch) == pytest.approx(flops)


def test_bench_train_rows_and_act_size_match(monkeypatch):
    from physai.baselines import LeRobotBaseline

    monkeypatch.setattr(B, "matmul_peak_flops", lambda threads, device="cpu": 1e11)
    spec = get_spec("car")
    threads = torch.get_num_threads()
    try:
        res = B.bench_train(threads=1, batch_size=2, steps=1, preset="nano", chunk=4)
    finally:
        torch.set_num_threads(threads)
    rows = {r["policy"]: r for r in res["rows"]}
    pool, p32, p16 = rows["physai nano"], rows["physai nano p32 registers"], rows["physai nano p16 registers"]
    act = rows[f"lerobot ACT d{res['act_dim_model']}"]
    assert pool["tokens"] == 1 + 4  # the recipes' layout: a state token + 2x2 patches, physical tokens pooled after
    assert p32["tokens"] == 2 + 1 + 4 + 4 and p16["tokens"] == 2 + 1 + 16 + 8  # body + patches + registers
    assert pool["GFLOP_per_sample"] < p32["GFLOP_per_sample"] < p16["GFLOP_per_sample"]
    assert pool["params_M"] == pytest.approx(p32["params_M"], rel=0.01)  # same weights, fewer tokens
    for r in (p16, p32, pool, act):
        assert r["samples_per_s"] > 0
        assert r["ratio_vs_ACT"] == pytest.approx(r["samples_per_s"] / act["samples_per_s"])
        assert r["fraction_of_matmul_peak"] == pytest.approx(r["achieved_GFLOPs"] * 1e9 / 1e11)
    # the ACT chosen is the closest in parameters among the sizes tried
    want = (p16["params_M"] + p32["params_M"] + pool["params_M"]) / 3 * 1e6
    sizes = {d: common.n_params(LeRobotBaseline("act", spec, chunk_size=4, n_action_steps=4, dim_model=d,
                                                 dim_feedforward=4 * d)) for d in (64, 128)}
    assert res["act_dim_model"] == min(sizes, key=lambda d: abs(sizes[d] - want)) == 64


class _Bar:
    """Stands in for rich's Progress: records the task's total, each advance and the descriptions."""

    def __init__(self, **kw):
        self.kw, self.total, self.advanced, self.descriptions = kw, None, 0, []

    def __enter__(self):
        _Bar.last = self
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, description, total=None, **kw):
        self.total = total
        self.descriptions.append(description)
        return 0

    def update(self, task, description=None, advance=0, **kw):
        if description is not None:
            self.descriptions.append(description)
        self.advanced += advance

    def advance(self, task, advance=1):
        self.advanced += advance


def test_bench_train_advances_its_progress_once_per_model(monkeypatch):
    monkeypatch.setattr(B, "matmul_peak_flops", lambda threads, device="cpu": 1e11)
    monkeypatch.setattr(B, "Progress", _Bar)
    threads = torch.get_num_threads()
    try:
        res = B.bench_train(threads=1, batch_size=2, steps=1, preset="nano", chunk=4, act_dim_model=64,
                            variants=(("", {}), ("p32 registers", B.TRAIN_VARIANTS[1][1])))
    finally:
        torch.set_num_threads(threads)
    bar = _Bar.last
    assert bar.kw.get("transient") is True and bar.kw.get("console") is not None
    assert bar.total == bar.advanced == len(res["rows"]) == 3  # two physai layouts and ACT
    assert any("physai nano p32 registers" in d for d in bar.descriptions)


def test_bench_latency_advances_its_progress_once_per_model(monkeypatch):
    from physai.bench import latency as L

    monkeypatch.setattr(L, "Progress", _Bar)
    threads = torch.get_num_threads()
    try:
        res = L.bench_latency(threads=1, calls=2, chunk=4, preset="nano", variants=True)
    finally:
        torch.set_num_threads(threads)
    timed = [r for r in res["rows"] if not r["policy"].startswith("ratio")]
    bar = _Bar.last
    assert bar.total == bar.advanced == len(timed) == 12  # eager, traced, ACT and 3 deployment variants, per body
    assert {"bench latency car", "bench latency g1"} <= set(bar.descriptions)


@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_lerobot_baselines_train_and_act_in_physai_units(kind):
    """LeRobot's own ACT and Diffusion (the baselines of bench policies) build, train a step and act
    within the spec's bounds on physai's data contract."""
    from physai.baselines import LeRobotBaseline
    from physai.testing import make_batch, make_obs

    spec = get_spec("car")
    kw = {"dim_model": 64, "dim_feedforward": 128} if kind == "act" else {"down_dims": (16, 32, 64)}
    m = LeRobotBaseline(kind, spec, chunk_size=8, n_action_steps=8, **kw)
    b = make_batch(spec, B=2, H=8, next_obs=False)
    b["action_is_pad"] = torch.zeros(2, 8, dtype=torch.bool)
    loss, _ = m(b)
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in m.parameters())
    m.eval()
    a = np.asarray(m.select_action(make_obs(spec)))
    assert a.shape == (2,) and (a >= spec.low - 1e-6).all() and (a <= spec.high + 1e-6).all()


def test_bench_latency_pruned_rows_measure_what_pruning_changed(tmp_path):
    from physai.bench import latency as L
    from physai.embodiments import get_spec
    from physai.errors import ConfigError
    from physai.policy import Policy
    from physai.prune import prune_heads, prune_mlp
    from physai.testing import SyntheticSource, tiny_config

    p = Policy.build(tiny_config(embodiments=("car",)), backend="math")
    SyntheticSource([get_spec("car")]).fit_normalizer(p)
    p.save_pretrained(tmp_path / "full")
    prune_mlp(p, 1.0)
    p.save_pretrained(tmp_path / "same")  # keep everything: the same function
    prune_heads(prune_mlp(p, 0.25), 0.5)
    p.save_pretrained(tmp_path / "small")
    threads = torch.get_num_threads()
    try:
        same = L.bench_latency(threads=1, calls=2, checkpoint=str(tmp_path / "full"), variants=False,
                               progress=False, pruned=str(tmp_path / "same"))
        small = L.bench_latency(threads=1, calls=2, checkpoint=str(tmp_path / "full"), variants=False,
                                progress=False, pruned=str(tmp_path / "small"))
    finally:
        torch.set_num_threads(threads)
    for res, identical in ((same, True), (small, False)):
        rows = {r["policy"]: r for r in res["rows"]}
        for label in ("eager", "traced"):
            r = rows[f"physai pruned ({label})"]
            assert r["p50_ms"] > 0 and r["budget_ms"] == pytest.approx(200.0)
            assert (r["max_abs_diff"] < 1e-5) == identical
        full = next(r for k, r in rows.items() if k.endswith("(eager)") and "pruned" not in k)
        assert rows["physai pruned (eager)"]["params_M"] <= full["params_M"]
    assert small["rows"][-1]["params_M"] < same["rows"][-1]["params_M"]
    with pytest.raises(ConfigError, match="--checkpoint"):
        L.bench_latency(threads=1, calls=2, variants=False, progress=False, pruned=str(tmp_path / "small"))
