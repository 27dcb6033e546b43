"""Attention backends agree with the math reference; backend selection is explicit."""

from __future__ import annotations

import pytest
import torch

from physai.attention import attention, resolve_backend
from physai.errors import BackendUnavailableError, ConfigError
from physai.trunk import Trunk, TrunkConfig

SHAPES = [(2, 4, 8, 8, 32), (3, 4, 34, 34, 32), (2, 2, 16, 85, 64), (1, 6, 70, 70, 64)]  # incl. trunk-like lengths


def _qkv(B, H, Lq, Lk, D, dtype=torch.float32, device="cpu"):
    g = torch.Generator(device="cpu").manual_seed(B * 1000 + Lq + Lk)
    mk = lambda L: torch.randn(B, H, L, D, generator=g).to(device=device, dtype=dtype)
    return mk(Lq), mk(Lk), mk(Lk)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask_kind", ["none", "padding", "full_bool", "additive"])
def test_sdpa_matches_math(shape, mask_kind):
    B, H, Lq, Lk, D = shape
    q, k, v = _qkv(*shape)
    mask = None
    if mask_kind == "padding":
        mask = torch.ones(B, Lk, dtype=torch.bool)
        mask[0, Lk // 2:] = False
    elif mask_kind == "full_bool":
        mask = torch.rand(B, 1, Lq, Lk) > 0.3
        mask[..., 0] = True  # every query sees at least one key
    elif mask_kind == "additive":
        mask = torch.randn(B, H, Lq, Lk)
    ref = attention(q, k, v, mask, backend="math")
    out = attention(q, k, v, mask, backend="sdpa")
    diff = (out - ref).abs().max().item()
    print(f"sdpa vs math {shape} {mask_kind}: max abs diff {diff:.2e}")
    assert diff <= 1e-5


def test_masked_keys_are_ignored():
    q, k, v = _qkv(1, 2, 4, 6, 8)
    mask = torch.tensor([[True, True, True, False, False, False]])
    base = attention(q, k, v, mask, backend="math")
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 3:] = 100.0
    v2[:, :, 3:] = -100.0
    assert torch.allclose(base, attention(q, k2, v2, mask, backend="math"))
    assert torch.allclose(base, attention(q, k2, v2, mask, backend="sdpa"), atol=1e-6)


def test_trunk_outputs_agree_across_backends():
    torch.manual_seed(0)
    cfg = TrunkConfig(width=64, depth=2, heads=4)
    a, b = Trunk(cfg, "math"), Trunk(cfg, "sdpa")
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 40, 64)
    assert (a(x) - b(x)).abs().max() <= 1e-5


def test_backend_selection():
    assert resolve_backend("math") == ("math", "requested explicitly")
    name, why = resolve_backend("auto")
    assert name in ("sdpa", "xformers") and why.startswith("auto")
    if not torch.cuda.is_available():
        assert name == "sdpa"
        with pytest.raises(BackendUnavailableError, match="xformers"):
            resolve_backend("xformers")
    with pytest.raises(ConfigError, match="PHYSAI_ATTN"):
        resolve_backend("flash9")


def test_env_var_read_once(monkeypatch):
    import subprocess, sys

    code = "from physai.attention import default_backend as d; print(d()[0])"
    out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "PHYSAI_ATTN": "math"},
                         capture_output=True, text=True, cwd="/", check=True).stdout.strip()
    assert out == "math"


@pytest.mark.cuda
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masked", [False, True])
def test_xformers_matches_math(shape, masked):
    B, H, Lq, Lk, D = shape
    q, k, v = _qkv(*shape, device="cuda")
    mask = None
    if masked:
        mask = torch.ones(B, Lk, dtype=torch.bool, device="cuda")
        mask[0, Lk // 2:] = False
    ref = attention(q, k, v, mask, backend="math")
    out = attention(q, k, v, mask, backend="xformers")
    diff = (out - ref).abs().max().item()
    print(f"xformers vs math {shape} masked={masked}: max abs diff {diff:.2e}")
    assert diff <= 2e-3  # fp32 inputs run through TF32/fp32 kernels
