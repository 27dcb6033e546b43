"""End to end: `physai demo --quick` records, co-trains, evaluates both sims beside the expert and
writes the curve PNG, MP4 roll-outs and a JSON summary."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_quick_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from physai.cli import main

    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    out = tmp_path / "demo"
    summary = json.loads((out / "demo_summary.json").read_text())
    envs = {(r["agent"], r["env"]) for r in summary["eval"]["summary"]}
    assert envs == {(a, e) for a in ("physai", "expert") for e in ("physai/car-highway", "physai/g1-walk")}
    assert (out / "training_curve.png").stat().st_size > 1000
    assert summary["videos"] and all(os.path.getsize(v) > 1000 for v in summary["videos"])
    assert (out / "train" / "final" / "model.safetensors").exists()
    expert_g1 = next(r for r in summary["eval"]["summary"] if r["agent"] == "expert" and r["env"] == "physai/g1-walk")
    assert expert_g1["fell"] == 0.0
