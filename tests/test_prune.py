"""Structured pruning: keep=1 changes nothing, the kept channels are the top-scored ones and the
pruned block computes exactly the sub-network they span, the pruned checkpoint round-trips,
bad shares are typed errors."""

import numpy as np
import pytest
import torch

from physai.embodiments import get_spec
from physai.errors import ConfigError
from physai.policy import Policy
from physai.prune import channel_scores, head_scores, prune_heads, prune_mlp
from physai.testing import SyntheticSource, make_obs, tiny_config
from physai.trunk import TrunkConfig


def _policy():
    p = Policy.build(tiny_config(embodiments=("car",)), backend="math")
    SyntheticSource([get_spec("car")]).fit_normalizer(p)
    return p.eval()


def test_keep_all_is_identity_and_pruning_keeps_the_top_channels(tmp_path):
    p = _policy()
    o = make_obs(p.specs["car"])
    ref = p.predict_action_chunk(o, "car")
    prune_mlp(p, 1.0)
    assert torch.allclose(ref, p.predict_action_chunk(o, "car"), atol=1e-6)
    mlp = p.trunk.blocks[0].mlp
    scores = channel_scores(mlp)
    top = set(scores.topk(64).indices.tolist())  # half of 4 x 32
    w1 = mlp[0].weight.clone()
    x = torch.randn(5, mlp[0].in_features)
    # the sub-network of the top channels, computed by hand
    idx = torch.tensor(sorted(top))
    want = torch.nn.functional.gelu(x @ w1[idx].T + mlp[0].bias[idx]) @ mlp[3].weight[:, idx].T + mlp[3].bias
    n0 = sum(t.numel() for t in p.parameters())
    prune_mlp(p, 0.5)
    assert p.config.trunk.mlp_hidden == (64, 64) and sum(t.numel() for t in p.parameters()) < n0
    assert torch.allclose(p.trunk.blocks[0].mlp(x), want, atol=1e-5)
    p.save_pretrained(tmp_path / "pruned")
    back = Policy.from_pretrained(tmp_path / "pruned")
    assert back.config.trunk.mlp_hidden == (64, 64)
    assert torch.allclose(back.predict_action_chunk(o, "car"), p.predict_action_chunk(o, "car"), atol=1e-6)


def test_bad_pruning_settings_are_typed():
    with pytest.raises(ConfigError, match="keep"):
        prune_mlp(_policy(), 0.0)
    with pytest.raises(ConfigError, match="mlp_hidden"):
        TrunkConfig(width=32, depth=2, heads=2, mlp_hidden=(16,))


def test_head_pruning_keeps_the_top_heads_and_equals_zeroing_the_others(tmp_path):
    p = _policy()
    o = make_obs(p.specs["car"])
    ref = p.predict_action_chunk(o, "car")
    prune_heads(p, 1.0)
    assert torch.allclose(ref, p.predict_action_chunk(o, "car"), atol=1e-6)
    attn = p.trunk.blocks[0].self_attn
    h, d = attn.heads, attn.q.out_features // attn.heads
    scores = head_scores(attn)
    keep = scores.topk(h // 2).indices.sort().values
    # by hand: the same layer with the dropped heads' output columns zeroed
    import copy
    masked = copy.deepcopy(attn)
    drop = [i for i in range(h) if i not in keep.tolist()]
    with torch.no_grad():
        for i in drop:
            masked.proj.weight[:, i * d:(i + 1) * d] = 0
    x = torch.randn(3, 5, attn.q.in_features)
    want = masked(x)
    n0 = sum(t.numel() for t in p.parameters())
    prune_heads(p, 0.5)
    depth = p.config.trunk.depth
    assert p.config.trunk.attn_heads == (h // 2,) * depth and sum(t.numel() for t in p.parameters()) < n0
    assert p.trunk.blocks[0].self_attn.q.out_features == (h // 2) * d  # kept heads keep their size
    assert torch.allclose(p.trunk.blocks[0].self_attn(x), want, atol=1e-5)
    p.save_pretrained(tmp_path / "pruned")
    back = Policy.from_pretrained(tmp_path / "pruned")
    assert back.config.trunk.attn_heads == (h // 2,) * depth
    assert torch.allclose(back.predict_action_chunk(o, "car"), p.predict_action_chunk(o, "car"), atol=1e-6)


def test_bad_head_pruning_settings_are_typed():
    with pytest.raises(ConfigError, match="keep_heads"):
        prune_heads(_policy(), 1.5)
    with pytest.raises(ConfigError, match="attn_heads"):
        TrunkConfig(width=32, depth=2, heads=2, attn_heads=(1, 3))
