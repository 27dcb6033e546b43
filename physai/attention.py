"""Attention backends behind one switch: `PHYSAI_ATTN=auto|xformers|sdpa|math`.

* `xformers` - `xformers.ops.memory_efficient_attention`, CUDA only (fused kernel).
* `sdpa`     - `torch.nn.functional.scaled_dot_product_attention` (fused where torch has it).
* `math`     - explicit softmax(QK^T/sqrt(d))V, the reference the others are tested against.

The variable is read once (first call of `default_backend()`), `auto` picks xformers when CUDA and
xformers' kernels are usable, else SDPA. Asking explicitly for xformers where it cannot run raises
`BackendUnavailableError` instead of falling back silently. Modules receive the backend name at
construction and never read the environment inside `forward`.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F

from physai.errors import BackendUnavailableError, ConfigError

BACKENDS = ("xformers", "sdpa", "math")


@functools.lru_cache(maxsize=1)
def xformers_status() -> tuple[bool, str]:
    """(usable, why). Imports xformers only when CUDA is available."""
    if not torch.cuda.is_available():
        return False, "CUDA is not available"
    try:
        import xformers.ops as xops  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the machine
        return False, f"xformers does not import: {e}"
    try:  # a tiny real call proves the kernels were built for this GPU/torch
        q = torch.zeros(1, 4, 1, 32, device="cuda", dtype=torch.float16)
        xops.memory_efficient_attention(q, q, q)
    except Exception as e:  # pragma: no cover
        return False, f"xformers kernels unusable: {e}"
    return True, "CUDA and xformers kernels are usable"


def resolve_backend(name: str) -> tuple[str, str]:
    """Map a requested backend (incl. `auto`) to a concrete one, with the reason."""
    name = name.strip().lower()
    if name == "auto":
        ok, why = xformers_status()
        if ok:
            return "xformers", f"auto: {why}"
        return "sdpa", f"auto: xformers not used ({why}); torch SDPA"
    if name not in BACKENDS:
        raise ConfigError(f"PHYSAI_ATTN must be one of auto|{'|'.join(BACKENDS)}, got '{name}'")
    if name == "xformers":
        ok, why = xformers_status()
        if not ok:
            raise BackendUnavailableError(f"PHYSAI_ATTN=xformers requested but {why}")
    return name, "requested explicitly"


@functools.lru_cache(maxsize=1)
def default_backend() -> tuple[str, str]:
    """The backend chosen by PHYSAI_ATTN (read once per process) and why."""
    return resolve_backend(os.environ.get("PHYSAI_ATTN", "auto"))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              backend: str = "sdpa", dropout_p: float = 0.0) -> torch.Tensor:
    """Multi-head attention core.

    q: [B, H, Lq, D], k/v: [B, H, Lk, D]; mask: bool [B, Lk] (True = attend) or bool/float
    [B|1, H|1, Lq, Lk] (bool True = attend, float = additive). Returns [B, H, Lq, D].
    """
    attn_mask = _expand_mask(mask, q) if mask is not None else None
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    if backend == "math":
        scale = q.shape[-1] ** -0.5
        scores = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) * scale  # [B, H, Lq, Lk]
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            else:
                scores = scores + attn_mask.float()
        probs = scores.softmax(dim=-1)
        if dropout_p > 0:
            probs = F.dropout(probs, p=dropout_p)
        return torch.einsum("bhqk,bhkd->bhqd", probs, v.float()).to(q.dtype)
    if backend == "xformers":
        import xformers.ops as xops

        bias = None
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                bias = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(~attn_mask, float("-inf"))
            else:
                bias = attn_mask.to(q.dtype)
            bias = _xformers_bias(bias, q, k)
        # xformers wants [B, L, H, D]
        out = xops.memory_efficient_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias, p=dropout_p
        )
        return out.transpose(1, 2)
    raise ConfigError(f"unknown attention backend '{backend}'")


def _expand_mask(mask: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    if mask.dim() == 2:  # [B, Lk] key padding -> [B, 1, 1, Lk]
        return mask[:, None, None, :]
    if mask.dim() == 4:
        return mask
    raise ConfigError(f"attention mask must be [B, Lk] or [B, H, Lq, Lk], got {tuple(mask.shape)}")


def _xformers_bias(bias: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Materialise a [B, H, Lq, Lk] bias with the 8-aligned storage xformers requires."""
    B, H, Lq, _ = q.shape
    Lk = k.shape[2]
    pad = (8 - Lk % 8) % 8
    full = torch.zeros(B, H, Lq, Lk + pad, dtype=q.dtype, device=q.device)
    full[..., :Lk] = bias.expand(B, H, Lq, Lk)
    return full[..., :Lk]
