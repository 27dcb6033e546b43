"""Planning with the world model: a value head on physical tokens and a planner that uses it.

`TokenValue` reads quantized physical tokens (+ the encoded command) and predicts the discounted
rule-based reward-to-go over the next `value_steps` control steps (the RL issue's reward model,
scored per step by the roll-out runner). It is fitted on roll-outs of the policy itself
(`fit_value`), on real encoder tokens, and then applied to imagined ones.

`Planner(policy, value, config)` re-plans like the policy: the head's chunk is candidate 0, and
`candidates - 1` more are the same chunk shifted by a constant offset (Gaussian, `noise` × each
action dimension's half-range, clipped to the bounds). Each candidate is imagined `horizon`
chunks ahead (the candidate, then its last action held) and scored by the mean value of its
imagined steps; the best one is executed when it beats the head's own by `margin`. It has the
interface `PolicyDriver` and `SafePolicy` use (`specs`, `config`, `predict_action_chunk`, ...), so
the guard still applies and the same roll-out runner evaluates it beside the plain policy.
A planner directory holds `planner.json` (config, value target stats) + `value.safetensors`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from physai.errors import CheckpointError, ConfigError
from physai.validate import Substitutions, bound_actions, prepare_observation


@dataclass(frozen=True)
class PlannerConfig:
    embodiment: str = "car"
    candidates: int = 16  # action chunks scored per re-plan (candidate 0 = the head's own)
    horizon: int = 1  # imagined chunks per candidate (the candidate, then its last action held)
    # std of a candidate's constant offset, fraction of each dim's half-range (car: 0.05 = 0.25 m/s²,
    # 0.04 rad; offsets of ~0.2 rad steering leave the road within a chunk)
    noise: float = 0.05
    margin: float = 0.0  # a candidate must beat the head's chunk by this much value to replace it
    gamma: float = 0.9  # per-control-step discount of the value target
    value_steps: int = 15  # control steps of reward-to-go the value head predicts (car: 3 s)
    hidden: int = 256  # value MLP width
    seed: int = 0  # candidate noise stream

    def __post_init__(self):
        for name, lo in (("candidates", 1), ("horizon", 1), ("value_steps", 1), ("hidden", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"planner.{name} must be an integer >= {lo}, got {v!r}")
        for name, lo, hi in (("noise", 0.0, 2.0), ("gamma", 0.0, 1.0), ("margin", 0.0, float("inf"))):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not lo <= float(v) <= hi:
                raise ConfigError(f"planner.{name} must be a number in [{lo}, {hi}], got {v!r}")


class TokenValue(nn.Module):
    """(quantized tokens [B, K, d], command [B, Dc]) -> predicted reward-to-go [B] (physical units)."""

    def __init__(self, n_tokens: int, code_dim: int, command_dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_tokens * code_dim + command_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def forward(self, quantized: torch.Tensor, command: torch.Tensor) -> torch.Tensor:
        x = torch.cat([quantized.flatten(-2), command.float()], -1)
        return self.net(x)[..., 0] * self.target_std + self.target_mean


def reward_to_go(rewards: np.ndarray, steps: int, gamma: float) -> np.ndarray:
    """G_t = sum_{i < steps} gamma^i r_{t+i}, truncated at the episode's end. [T] -> [T]"""
    r = np.asarray(rewards, np.float64)
    out = np.zeros_like(r)
    for i in range(min(steps, len(r))):
        out[: len(r) - i] += gamma ** i * r[i:]
    return out


class Planner:
    """Sample-and-score planning around a `Policy` for one embodiment (see the module docstring)."""

    def __init__(self, policy, value: TokenValue, config: PlannerConfig):
        if policy.world_model is None:
            raise ConfigError("planning needs a policy with a world model")
        if config.embodiment not in policy.specs:
            raise ConfigError(f"planner.embodiment '{config.embodiment}' is not in the policy ({sorted(policy.specs)})")
        self.policy, self.value, self.cfg = policy, value.to(policy.device).eval(), config
        self.specs, self.config = policy.specs, policy.config
        self._rng = torch.Generator().manual_seed(config.seed)
        self._subs = Substitutions(f"Planner[{config.embodiment}]")
        self.replaced = 0  # re-plans where a candidate beat the head's chunk
        self.plans = 0
        self._times: list[float] = []  # seconds per predict_action_chunk call

    # the interface PolicyDriver uses
    def eval(self) -> "Planner":
        self.policy.eval()
        return self

    def optimize_for_inference(self, enabled: bool = True) -> "Planner":
        return self

    @property
    def device(self) -> torch.device:
        return self.policy.device

    def candidates(self, chunk: torch.Tensor) -> torch.Tensor:
        """[B, H, A] head chunks -> [B, N, H, A] candidates (index 0 = the chunk itself), in bounds."""
        spec = self.specs[self.cfg.embodiment]
        lo, hi = (torch.as_tensor(x, dtype=chunk.dtype) for x in (spec.low, spec.high))
        B, H, A = chunk.shape
        N = self.cfg.candidates
        off = torch.randn(B, N, 1, A, generator=self._rng) * self.cfg.noise * (hi - lo) / 2
        off[:, 0] = 0.0
        return torch.minimum(torch.maximum(chunk[:, None].cpu() + off, lo), hi).to(chunk.device)

    @torch.no_grad()
    def score(self, obs: Mapping[str, Any], cands: torch.Tensor) -> torch.Tensor:
        """Mean predicted value of each candidate's imagined steps. cands [B, N, H, A] -> [B, N]"""
        emb, k = self.cfg.embodiment, self.cfg.horizon
        B, N, H, A = cands.shape
        rep = {key: torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v).repeat_interleave(N, 0)
               for key, v in obs.items()}
        seq = cands.reshape(B * N, H, A)
        if k > 1:
            seq = torch.cat([seq, seq[:, -1:].expand(-1, (k - 1) * H, -1)], 1)  # hold the last action
        out = self.policy.imagine(rep, seq, emb)
        cmd = rep["command"].float().to(self.device)
        vals = torch.stack([self.value(out.quantized[:, h], cmd) for h in range(k)], 1).mean(1)  # [B·N]
        return vals.reshape(B, N)

    @torch.no_grad()
    def predict_action_chunk(self, obs: Mapping[str, Any], embodiment: str, substitute: bool = True) -> torch.Tensor:
        if embodiment != self.cfg.embodiment:
            raise ConfigError(f"this planner plans for '{self.cfg.embodiment}', not '{embodiment}'")
        t0 = time.perf_counter()
        spec = self.specs[embodiment]
        o, batched = prepare_observation(obs, spec, self.device, self.config.stem.n_obs_steps)
        chunk = self.policy._predict(o, embodiment)  # [B, H, A] bounded (NaN kept)
        chunk = torch.nan_to_num(chunk, nan=0.0)
        chunk = bound_actions(chunk, spec, substitute=False)
        cands = self.candidates(chunk)
        raw = {k: (obs[k] if batched else np.asarray(obs[k])[None]) for k in ("image", "proprio", "command")}
        scores = self.score(raw, cands)  # [B, N]
        best = scores.argmax(1)
        use = scores.gather(1, best[:, None])[:, 0] > scores[:, 0] + self.cfg.margin
        pick = torch.where(use, best, torch.zeros_like(best))
        self.plans += int(pick.numel())
        self.replaced += int(use.sum())
        out = cands[torch.arange(cands.shape[0]), pick]  # [B, H, A]
        if substitute:
            out = self._subs(out, spec)
        self._times.append(time.perf_counter() - t0)
        return out if batched else out[0]

    def latency_ms(self) -> dict[str, float]:
        """p50/p99 of a re-plan (all slots' batch at once) against the body's control period."""
        t = np.asarray(self._times) * 1e3
        budget = 1e3 / self.specs[self.cfg.embodiment].control_hz
        if not len(t):
            return {"calls": 0, "budget_ms": budget}
        return {"calls": int(len(t)), "p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)),
                "budget_ms": budget}

    def reset(self) -> None:
        self.policy.reset()
        self._subs.reset()

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, directory: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        v = self.value
        meta = {"format": "physai-planner", "config": asdict(self.cfg), "n_tokens": v.net[0].in_features,
                "value_in": v.net[0].in_features, **(dict(extra) if extra else {})}
        tmp = d / "value.safetensors.tmp"
        save_file({k: t.detach().cpu().contiguous() for k, t in v.state_dict().items()}, str(tmp))
        tmp.replace(d / "value.safetensors")
        (d / "planner.json.tmp").write_text(json.dumps(meta, indent=1))
        (d / "planner.json.tmp").replace(d / "planner.json")
        return d

    @classmethod
    def load(cls, directory: str | Path, policy, **overrides) -> "Planner":
        d = Path(directory)
        try:
            meta = json.loads((d / "planner.json").read_text())
            cfg = PlannerConfig(**{**meta["config"], **overrides})
            state = load_file(str(d / "value.safetensors"))
        except FileNotFoundError as e:
            raise CheckpointError(f"'{d}' is not a planner directory (planner.json + value.safetensors): {e}") from None
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"'{d}/planner.json' is malformed ({type(e).__name__}: {e})") from None
        if meta.get("format") != "physai-planner":
            raise CheckpointError(f"'{d}/planner.json' is not a physai planner")
        spec = policy.specs.get(cfg.embodiment)
        if spec is None:
            raise CheckpointError(f"planner for '{cfg.embodiment}' but the policy has {sorted(policy.specs)}")
        value = TokenValue(policy.config.n_readout, policy.bottleneck.fsq.dim, spec.command_dim, cfg.hidden)
        try:
            value.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"'{d}/value.safetensors' does not fit this policy's tokens: {e}") from None
        return cls(policy, value, cfg)
