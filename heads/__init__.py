"""Embodiment heads: how an action chunk is decoded from the physical-language features.

`HEADS` holds builders `l1` (regression), `tokens` (discrete tokens, classification) and `flow`
(flow matching). Each outputs normalized chunks [B, H, action_dim] for any spec.
"""

from physai.heads.base import HEADS, ChunkDecoder, Head, HeadConfig
from physai.heads import flow, l1, tokens  # noqa: F401  (registers)

__all__ = ["HEADS", "ChunkDecoder", "Head", "HeadConfig"]
