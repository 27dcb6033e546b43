"""Shared pytest fixtures: offline hub, deterministic seeds, tiny policies and batches."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PHYSAI_ATTN", "sdpa")

import numpy as np
import pytest
import torch



def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)

# Tests use tiny models: one intra-op thread is fastest and avoids spin-waiting under load.
torch.set_num_threads(1)
