"""DART recording: noisy execution changes the visited states, while the recorded labels stay the
expert's clean actions at those states."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from physai.data.collect import collect
from physai.data.frames import load_frames
from physai.errors import ConfigError


def test_action_noise_changes_states_not_labels(tmp_path):
    kw = dict(env_kwargs={"config": {"duration": 3}}, progress=False, max_steps=12)
    collect("physai/car-highway", 1, tmp_path / "clean", seed=4, **kw)
    collect("physai/car-highway", 1, tmp_path / "noisy", seed=4, action_noise=0.2, **kw)
    a, b = load_frames(tmp_path / "clean"), load_frames(tmp_path / "noisy")
    sa, sb = np.asarray(a.state), np.asarray(b.state)
    assert np.allclose(sa[0], sb[0])  # same seed, same start
    assert not np.allclose(sa[1:], sb[1:])  # noisy execution visits other states
    # labels are the clean expert: bounded, and not noisy (expert accel is smooth)
    acts = np.asarray(b.action)
    assert np.abs(np.diff(acts[:, 1])).max() < 0.2
    with pytest.raises(ConfigError, match="action_noise"):
        collect("physai/car-highway", 1, tmp_path / "bad", action_noise=2.0, **kw)
