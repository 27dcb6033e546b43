"""Trainer: the loss falls, schedules and EMA behave, checkpoints are atomic and pruned, and a
run killed with SIGKILL resumes to exactly the losses of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from physai.errors import ConfigError
from physai.overrides import apply_overrides
from physai.policy import Policy
from physai.testing import SyntheticSource, tiny_config
from physai.trainer import TrainConfig, Trainer, lr_factor

SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from physai.policy import Policy
    from physai.testing import SyntheticSource, tiny_config
    from physai.trainer import TrainConfig, Trainer
    out, steps, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("car", "g1"), head_types=(("g1", "flow"),)))
    src = SyntheticSource([pol.specs["car"], pol.specs["g1"]], batch_size=6, seed=3)
    src.fit_normalizer(pol)
    tr = Trainer(pol, src, TrainConfig(steps=steps, batch_size=6, lr=3e-3, warmup_steps=3, ckpt_every=4,
                                       log_every=1, keep_last=2, seed=5), out)
    tr.resume()
    if delay:
        orig = tr.train_step
        def slow():
            import time; time.sleep(delay); return orig()
        tr.train_step = slow
    tr.fit(show_progress=False)
""")


def _losses(out: Path) -> dict[int, float]:
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if "loss" in r}


def test_sigkill_resume_matches_uninterrupted(tmp_path):
    env = {**os.environ, "PHYSAI_ATTN": "sdpa", "OMP_NUM_THREADS": "1"}
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    full = tmp_path / "full"
    subprocess.run([sys.executable, str(script), str(full), "12", "0"], check=True, env=env, timeout=300)
    cut = tmp_path / "cut"
    p = subprocess.Popen([sys.executable, str(script), str(cut), "12", "0.3"], env=env)
    deadline = time.time() + 240
    while time.time() < deadline and not list((cut / "checkpoints").glob("step_0000008")):
        time.sleep(0.1)
    time.sleep(0.45)  # land somewhere inside step 9 or 10, after the step-8 checkpoint
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = max(_losses(cut))
    assert 8 <= killed_at < 12, killed_at
    subprocess.run([sys.executable, str(script), str(cut), "12", "0"], check=True, env=env, timeout=300)
    a, b = _losses(full), _losses(cut)
    for step in range(1, 13):
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-7), (step, a[step], b[step])
    ckpts = sorted(x.name for x in (cut / "checkpoints").iterdir())
    assert ckpts == ["step_0000008", "step_0000012"]  # keep_last=2, no temp dirs left
    assert (cut / "final" / "model.safetensors").exists() and (cut / "best" / "config.json").exists()
    Policy.from_pretrained(cut / "final")


def test_loss_falls_and_ema_lags(tmp_path):
    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("car",)))
    src = SyntheticSource([pol.specs["car"]], batch_size=4, seed=1).fit_normalizer(pol)
    src.sample = (lambda b: (lambda: b))(src.sample())  # one fixed batch: must be overfit
    tr = Trainer(pol, src, TrainConfig(steps=40, lr=3e-3, warmup_steps=5, ckpt_every=100, log_every=5, ema_decay=0.9), tmp_path)
    tr.fit(show_progress=False)
    hist = [h["loss"] for h in tr.history]
    assert hist[-1] < 0.8 * hist[0]
    ema, live = tr.ema.model.state_dict(), pol.state_dict()
    diff = [float((ema[k] - live[k]).abs().max()) for k in live if live[k].is_floating_point()]
    assert max(diff) > 0  # EMA lags the live weights
    rec = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"car/action_loss", "car/world_model_ce", "lr", "grad_norm", "samples_per_s"} <= set(rec)


def test_lr_schedule_shape():
    cfg = TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    f = [lr_factor(s, cfg) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] == pytest.approx(0.1, abs=1e-3)


def test_head_only_training_keeps_trunk_fixed(tmp_path):
    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("car", "g1")))
    trunk0 = {k: v.clone() for k, v in pol.trunk.state_dict().items()}
    head0 = {k: v.clone() for k, v in pol.heads["g1"].state_dict().items()}
    SyntheticSource([pol.specs["car"], pol.specs["g1"]]).fit_normalizer(pol)  # (the pre-trained policy's stats)
    src = SyntheticSource([pol.specs["g1"]], batch_size=4)
    Trainer(pol, src, TrainConfig(steps=3, ckpt_every=10, train_head_only="g1", ema_decay=None), tmp_path).fit(show_progress=False)
    assert all(torch.equal(v, pol.trunk.state_dict()[k]) for k, v in trunk0.items())
    assert any(not torch.equal(v, pol.heads["g1"].state_dict()[k]) for k, v in head0.items())


def test_overrides_validated():
    cfg = TrainConfig()
    assert apply_overrides(cfg, ["steps=7", "ema_decay=none", "compile=true"]) == TrainConfig(steps=7, ema_decay=None, compile=True)
    with pytest.raises(ConfigError, match="valid keys: steps"):
        apply_overrides(cfg, ["stesp=3"])
    with pytest.raises(ConfigError, match="expected int"):
        apply_overrides(cfg, ["steps=many"])
    with pytest.raises(ConfigError, match="precision"):
        apply_overrides(cfg, ["precision=fp8"])


def test_overrides_parse_nested_lists_inside_fixed_tuples():
    from physai.config import PolicyConfig

    cfg = PolicyConfig(embodiments=("car",))
    out = apply_overrides(cfg, ['hidden_proprio=[["car", ["prev_accel", "prev_steer"]]]', 'head_types=[["car", "flow"]]'])
    assert out.hidden_proprio == (("car", ("prev_accel", "prev_steer")),)
    assert out.head_types == (("car", "flow"),)


def test_resume_refuses_a_checkpoint_of_another_policy_and_leaves_it_intact(tmp_path):
    from physai.errors import CheckpointError
    from physai.stems import StemConfig

    torch.manual_seed(0)
    cfg = TrainConfig(steps=2, batch_size=4, lr=1e-3, warmup_steps=1, ckpt_every=2, log_every=1)
    pol = Policy.build(tiny_config(embodiments=("car",)))
    Trainer(pol, SyntheticSource([pol.specs["car"]], batch_size=4, seed=1).fit_normalizer(pol), cfg, tmp_path).fit(show_progress=False)
    ckpt = Trainer.latest_in(tmp_path)
    before = {p.name: p.read_bytes() for p in (ckpt / "policy").iterdir()}
    other = Policy.build(tiny_config(embodiments=("car",), readout="pool", stem=StemConfig(patch_size=8, state_token=True)))
    tr = Trainer(other, SyntheticSource([other.specs["car"]], batch_size=4, seed=1).fit_normalizer(other), cfg, tmp_path)
    with pytest.raises(CheckpointError, match=r"policy\.readout='trunk' \(now 'pool'\).*--no-resume") as e:
        tr.resume()
    assert "policy.stem.state_token=False (now True)" in str(e.value)
    assert {p.name: p.read_bytes() for p in (ckpt / "policy").iterdir()} == before
    same = Policy.build(tiny_config(embodiments=("car",)))  # the same architecture resumes
    tr = Trainer(same, SyntheticSource([same.specs["car"]], batch_size=4, seed=1).fit_normalizer(same), cfg, tmp_path)
    assert tr.resume() and tr.step == 2


def test_divergence_stops_at_the_step_with_a_typed_error_and_keeps_the_checkpoint(tmp_path):
    from physai.errors import TrainingError

    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("car",)))
    src = SyntheticSource([pol.specs["car"]], batch_size=4, seed=1).fit_normalizer(pol)
    tr = Trainer(pol, src, TrainConfig(steps=6, lr=1e-3, warmup_steps=1, ckpt_every=2, log_every=1), tmp_path)
    tr.fit(show_progress=False, until=2)  # a good checkpoint at step 2
    good = {k: v.clone() for k, v in pol.state_dict().items()}
    real = tr.forward
    tr.forward = lambda b: (lambda out: (out[0] * float("nan"), out[1]))(real(b))  # the loss turns NaN
    with pytest.raises(TrainingError, match="step 3: non-finite loss"):
        tr.fit(show_progress=False)
    assert all(torch.equal(good[k], v) for k, v in pol.state_dict().items())  # nothing stepped
    ckpt = Trainer.latest_in(tmp_path)
    assert ckpt is not None and Trainer.step_of(ckpt) == 2
    assert all(torch.isfinite(v).all() for v in Policy.from_pretrained(ckpt / "policy").state_dict().values() if v.is_floating_point())


@pytest.mark.parametrize("bad", ["min_lr_ratio=-10", "log_every=0", "ckpt_every=0", "lr=-1", "lr=nan", "seed=-1",
                                 "weight_decay=inf"])
def test_training_settings_are_range_checked(bad):
    key = bad.split("=")[0]
    with pytest.raises(ConfigError, match=f"train.{key}"):
        apply_overrides(TrainConfig(), [bad])


# ---- resume: changed settings, SIGKILL leftovers, metrics ----------------------------------------
def _short_run(tmp_path, until=5, **kw):
    torch.manual_seed(0)
    cfg = TrainConfig(**{**dict(steps=8, batch_size=4, lr=1e-3, warmup_steps=1, ckpt_every=2, log_every=1), **kw})
    pol = Policy.build(tiny_config(embodiments=("car",)))
    tr = Trainer(pol, SyntheticSource([pol.specs["car"]], batch_size=4, seed=1).fit_normalizer(pol), cfg, tmp_path)
    tr.fit(show_progress=False, until=until)
    return cfg


def _again(tmp_path, cfg):
    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("car",)))
    return Trainer(pol, SyntheticSource([pol.specs["car"]], batch_size=4, seed=1).fit_normalizer(pol), cfg, tmp_path)


@pytest.mark.parametrize("change,shown", [({"lr": 2e-3}, "train.lr=0.001 (now 0.002)"),
                                          ({"steps": 20}, "train.steps=8 (now 20)")])
def test_resume_refuses_changed_optimisation_settings(tmp_path, change, shown):
    from dataclasses import replace

    cfg = _short_run(tmp_path)
    tr = _again(tmp_path, replace(cfg, **change))
    with pytest.raises(ConfigError, match=shown.replace("(", r"\(").replace(")", r"\)") + ".*on_resume_change=apply"):
        tr.resume()
    assert _again(tmp_path, replace(cfg, log_every=2, keep_last=3)).resume()  # bookkeeping settings may change


def test_resume_applies_changed_settings_when_asked(tmp_path):
    from dataclasses import replace

    cfg = _short_run(tmp_path)
    new = replace(cfg, lr=2e-3, steps=20, on_resume_change="apply")
    tr = _again(tmp_path, new)
    with pytest.warns(UserWarning, match=r"train\.lr: 0\.001 -> 0\.002"):
        assert tr.resume()
    assert tr.step == 4 and tr.resume_changes == {"lr": (1e-3, 2e-3), "steps": (8, 20)}
    assert tr.opt.param_groups[0]["lr"] == pytest.approx(2e-3 * lr_factor(4, new))
    tr.fit(show_progress=False, until=6)
    recs = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("resume_changes") == {"lr": [1e-3, 2e-3], "steps": [8, 20]} for r in recs)
    lr5 = next(r["lr"] for r in recs if r["step"] == 5 and "loss" in r)
    assert lr5 == pytest.approx(2e-3 * lr_factor(5, new))  # the new schedule, from the resumed step
    state = json.loads((Trainer.latest_in(tmp_path) / "trainer_state.json").read_text())
    assert state["train"]["lr"] == 2e-3  # later checkpoints record what they were trained with


def test_resume_leaves_no_duplicate_metric_steps(tmp_path):
    cfg = _short_run(tmp_path, until=5)  # checkpoint at 4, metrics up to step 5
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # a line a kill cut short
    tr = _again(tmp_path, cfg)
    assert tr.resume() and tr.step == 4
    tr.fit(show_progress=False)
    steps = [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(l)]
    assert steps == list(range(1, 9))


def test_leftovers_of_killed_saves_are_cleaned(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    _short_run(tmp_path, until=4)
    ck = tmp_path / "checkpoints"
    (ck / f".step_0000006.tmp-{dead.pid}-x1y2").mkdir()  # killed while writing
    (tmp_path / f".best.tmp-{dead.pid}-abcd").mkdir()
    (tmp_path / f".best.old-{dead.pid}").mkdir()  # killed after the new best was in place
    os.rename(tmp_path / "best", tmp_path / f".final.old-{dead.pid}")  # killed between the two renames
    live = tmp_path / f".best.tmp-{os.getpid()}-live"  # a save in progress (this process) is left alone
    live.mkdir()
    _again(tmp_path, TrainConfig(steps=8, batch_size=4, lr=1e-3, warmup_steps=1, ckpt_every=2, log_every=1))
    left = sorted(p.name for p in [*tmp_path.iterdir(), *ck.iterdir()] if p.name.startswith("."))
    assert left == [live.name]
    assert (tmp_path / "final" / "config.json").is_file()  # the moved-aside directory was put back


def test_training_refuses_a_policy_without_normalization_stats(tmp_path):
    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("car",)))
    with pytest.raises(ConfigError, match=r"no normalization stats for car\.proprio.*proprio_norm='identity'"):
        Trainer(pol, SyntheticSource([pol.specs["car"]]), TrainConfig(steps=2), tmp_path)
    raw = Policy.build(tiny_config(embodiments=("car",), proprio_norm="identity", action_norm="identity"))
    Trainer(raw, SyntheticSource([raw.specs["car"]]), TrainConfig(steps=2, ema_decay=None), tmp_path / "raw").fit(show_progress=False)
    Policy.from_pretrained(tmp_path / "raw" / "final")  # says it has no stats: trains, saves and loads


def test_training_curve_marks_dagger_rounds_and_keeps_the_legend_off_the_curves(tmp_path):
    from physai.pipeline import dagger_boundaries
    from physai.recipes import get_recipe
    from physai.report import curve_figure, plot_curves

    recipe = apply_overrides(get_recipe("cotrain")(), ["train.steps=300", "data.dagger_rounds=2"])
    marks = dagger_boundaries(recipe)
    assert marks == [100, 200]
    hist = [{"step": s, "loss": 1 / s, "car/action_loss": 2 / s} for s in range(1, 301, 5)]
    hist += [{"step": s, "val_loss": 1.5 / s} for s in (50, 150, 250, 300)]
    png = plot_curves(hist, tmp_path / "curve.png", title="t", marks=marks)
    assert png == tmp_path / "curve.png" and png.stat().st_size > 0
    fig = curve_figure(hist, title="t", marks=marks)
    fig.canvas.draw()
    (ax,) = fig.axes
    assert ax.get_ylabel() == "loss (symlog)"
    vertical = [l for l in ax.get_lines() if len(set(l.get_xdata())) == 1 and l.get_linestyle() == "--"]
    assert sorted(l.get_xdata()[0] for l in vertical) == marks
    assert [t.get_text().strip() for t in ax.texts] == ["DAgger round 1", "DAgger round 2"]
    (val,) = [l for l in ax.get_lines() if l.get_label() == "val_loss"]
    assert list(val.get_xdata()) == [50, 150, 250, 300] and val.get_marker() not in (None, "None", "", " ")
    assert {"loss", "car/action_loss"} <= {l.get_label() for l in ax.get_lines()}
    legend, box = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= box.x1  # to the right of the axes, not over the curves
    assert legend.x1 <= fig.bbox.x1 + 1  # and still inside the saved figure
