"""Normalization modes and persistence; the `physai info` command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from physai.errors import CheckpointError, ConfigError, SpecMismatchError
from physai.normalization import Normalizer


@pytest.mark.parametrize("mode", ["mean_std", "min_max", "quantile"])
def test_modes_roundtrip_and_ranges(mode, tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal([1.0, -3.0, 10.0], [0.1, 2.0, 5.0], (2000, 3)).astype(np.float32)
    n = Normalizer(modes={"action": mode})
    n.fit("car", "action", data)
    x = torch.as_tensor(data)
    y = n.normalize("car", "action", x)
    if mode == "mean_std":
        assert torch.allclose(y.mean(0), torch.zeros(3), atol=1e-3) and torch.allclose(y.std(0), torch.ones(3), atol=1e-2)
    elif mode == "min_max":
        assert torch.allclose(y.min(0).values, -torch.ones(3), atol=1e-5) and torch.allclose(y.max(0).values, torch.ones(3), atol=1e-5)
    else:
        q = torch.quantile(y, torch.tensor([0.01, 0.99]), dim=0)
        assert torch.allclose(q, torch.tensor([[-1.0] * 3, [1.0] * 3]), atol=2e-2)
    assert torch.allclose(n.unnormalize("car", "action", y), x, atol=1e-4)
    n.save(tmp_path / "n.safetensors")
    m = Normalizer.load(tmp_path / "n.safetensors")
    assert m.modes == n.modes and torch.equal(m.normalize("car", "action", x), y)
    with pytest.raises(SpecMismatchError):
        m.check_dims("car", {"action": 2})


def test_constant_dimension_does_not_divide_by_zero():
    n = Normalizer()
    n.fit("g1", "proprio", np.ones((10, 2)))
    assert torch.isfinite(n.normalize("g1", "proprio", torch.ones(3, 2))).all()


def test_bad_inputs():
    with pytest.raises(ConfigError):
        Normalizer(modes={"action": "zscore"})
    with pytest.raises(ConfigError):
        Normalizer().fit("car", "action", np.array([[np.nan, 1.0]]))


def test_load_rejects_foreign_file(tmp_path):
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(2, np.float32)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(CheckpointError):
        Normalizer.load(tmp_path / "x.safetensors")


def test_physai_info_prints_table():
    out = subprocess.run([sys.executable, "-m", "physai.cli", "info"], capture_output=True, text=True, cwd="/",
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needle in ("physai info", "torch", "lerobot", "mujoco", "attention backend", "nano", "large",
                   "car", "g1", "t1", "l1", "flow", "tokens", "bins", "fast", "longlat"):
        assert needle in text, needle
    assert "sdpa" in text or "xformers" in text
