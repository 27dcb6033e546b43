"""Imagination: roll the world model forward in physical-token space.

The world model was trained to predict the codes of the observation one action chunk ahead
(`chunk_size` control periods: the loader's `next_image` is frame t+H) from the current quantized
tokens and the chunk a_t..a_{t+H-1}. `imagine` chains it: the predicted codes of step h become the
input of step h+1 (autoregressive on its own predictions, greedy), so an action sequence of k·H
control steps gives k imagined steps. Actions are in the spec's physical units and are normalized
the way the world model was trained (for residual bodies relative to the action applied just
before each chunk: the proprio's `last_action_*` for the first chunk, the sequence's own last
action for later ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from physai.errors import ConfigError, ObservationError
from physai.validate import prepare_observation


@dataclass(frozen=True)
class Imagined:
    """What `imagine` returns (B = batch, k = imagined steps, K = physical tokens, V = vocabulary)."""

    start: torch.Tensor  # [B, K] codes the encoder gives the observation itself
    codes: torch.Tensor  # [B, k, K] predicted codes, one world-model step (one chunk) apart
    logits: torch.Tensor  # [B, k, K, V] the world model's logits behind them
    quantized: torch.Tensor  # [B, k, K, d] the predicted codes as FSQ values (what the heads read)


def chunk_actions(policy, actions: torch.Tensor, obs: Mapping[str, torch.Tensor], embodiment: str) -> torch.Tensor:
    """Physical actions [B, k·H, A] -> the world model's normalized inputs [B, k, H, A]."""
    B, T, A = actions.shape
    H = policy.config.head.chunk_size
    chunks = actions.reshape(B, T // H, H, A)
    base = policy.residual_base(obs, embodiment)  # [B, A] or None
    if base is None:
        return policy.normalizer.normalize(embodiment, "action", chunks)
    prev = torch.cat([base[:, None], chunks[:, :-1, -1]], dim=1)  # [B, k, A] the action before each chunk
    return policy.normalizer.normalize(embodiment, "action_delta", chunks - prev[:, :, None])


@torch.no_grad()
def imagine(policy, obs: Mapping[str, Any], actions: Any, embodiment: str) -> Imagined:
    """obs as for `select_action` (batched, B), actions [B, k·H, A] physical units -> `Imagined`
    with k steps. Step h's codes depend on actions[:, :(h+1)·H] only (causal)."""
    if policy.world_model is None:
        raise ConfigError("this policy has no world model (PolicyConfig.world_model=False)")
    spec = policy._spec(embodiment)
    o, batched = prepare_observation(obs, spec, policy.device, policy.config.stem.n_obs_steps)
    if not batched:
        raise ObservationError("obs", "a batched observation (leading batch dimension)", "unbatched")
    H, B = policy.config.head.chunk_size, o["proprio"].shape[0]
    a = torch.as_tensor(actions, dtype=torch.float32, device=policy.device)
    if a.dim() != 3 or a.shape[0] != B or a.shape[2] != spec.action_dim or a.shape[1] < H or a.shape[1] % H:
        raise ObservationError("actions", f"[{B}, k*{H}, {spec.action_dim}] (k >= 1 chunks of {H} steps)",
                               f"shape {tuple(a.shape)}")
    if not torch.isfinite(a).all():
        raise ObservationError("actions", "finite numbers", "NaN/inf")
    was_training = policy.training
    policy.eval()
    try:
        feats = policy.encode(policy._norm_obs(o, embodiment), embodiment)
        inputs = chunk_actions(policy, a, o, embodiment)  # [B, k, H, A]
        fsq = policy.bottleneck.fsq
        q, codes, logits, quant = feats["quantized"], [], [], []
        for h in range(inputs.shape[1]):
            lg = policy.world_model(q, inputs[:, h], embodiment)  # [B, K, V]
            c = lg.argmax(-1)  # [B, K]
            q = fsq.quantized_from_codes(c).to(q.dtype)  # [B, K, d]
            codes.append(c), logits.append(lg), quant.append(q)
    finally:
        if was_training:
            policy.train(True)
    return Imagined(start=feats["codes"], codes=torch.stack(codes, 1), logits=torch.stack(logits, 1),
                    quantized=torch.stack(quant, 1))


@torch.no_grad()
def encode_frames(policy, ep: Mapping[str, Any], embodiment: str, batch: int = 256) -> dict[str, Any]:
    """Every frame of a recorded episode (`physai.data.collect.episode_arrays`) through the encoder:
    codes [N, K], quantized [N, K, d] and the mean-pooled trunk embedding [N, W] (numpy)."""
    import numpy as np

    spec = policy.specs[embodiment]
    out: dict[str, list] = {"codes": [], "quantized": [], "embedding": []}
    for i in range(0, len(ep["proprio"]), batch):
        o, _ = prepare_observation({k: ep[k][i:i + batch] for k in ("image", "proprio", "command")}, spec,
                                   policy.device, policy.config.stem.n_obs_steps)
        f = policy.encode(policy._norm_obs(o, embodiment), embodiment)
        out["codes"].append(f["codes"].cpu().numpy())
        out["quantized"].append(f["quantized"].float().cpu().numpy())
        out["embedding"].append(f.get("trunk", f["tokens"]).mean(1).float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


@torch.no_grad()
def imagine_next_chunk(policy, ep: Mapping[str, Any], embodiment: str, batch: int = 128) -> Imagined | None:
    """One imagined step from every frame t with a whole chunk after it, on the actions really
    taken (frames t..t+H-1): `Imagined` with k = 1 for the N - H frames (None when there are none)."""
    import numpy as np

    H, n = policy.config.head.chunk_size, len(ep["proprio"]) - policy.config.head.chunk_size
    parts = []
    for i in range(0, max(0, n), batch):
        j = np.arange(i, min(i + batch, n))
        parts.append(policy.imagine({k: ep[k][j] for k in ("image", "proprio", "command")},
                                    torch.as_tensor(ep["action"][j[:, None] + np.arange(H)[None]]), embodiment))
    if not parts:
        return None
    return Imagined(*(torch.cat([getattr(p, f) for p in parts]) for f in ("start", "codes", "logits", "quantized")))
