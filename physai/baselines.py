"""LeRobot's own ACT and Diffusion policies as baselines, built for a physai embodiment spec.

Nothing is re-implemented: the models are `lerobot.policies.act.ACTPolicy` and
`lerobot.policies.diffusion.DiffusionPolicy`. `LeRobotBaseline` wraps one so it consumes the
same (validated, normalized with the same physai stats) observations and physical-unit actions
as a physai `Policy`: `forward(batch)`, `select_action(obs)`, `predict_action_chunk(obs)`,
`reset()`. The command vector is appended to the state, since LeRobot has no command input.
Backbones start from scratch (`pretrained_backbone_weights=None`): nothing is downloaded.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn

from physai.embodiments import EmbodimentSpec
from physai.errors import ConfigError
from physai.normalization import Normalizer
from physai.validate import bound_actions, check_actions, prepare_observation

IMG_KEY = "observation.images.cam"


def _features(spec: EmbodimentSpec):
    from lerobot.configs.types import FeatureType, PolicyFeature

    cam = spec.cameras[0]
    inputs = {
        IMG_KEY: PolicyFeature(type=FeatureType.VISUAL, shape=(3, cam.height, cam.width)),
        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(spec.proprio_dim + spec.command_dim,)),
    }
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(spec.action_dim,))}
    return inputs, outputs


def build_lerobot_policy(kind: str, spec: EmbodimentSpec, chunk_size: int, n_action_steps: int, **overrides) -> nn.Module:
    inputs, outputs = _features(spec)
    if kind == "act":
        from lerobot.policies.act.configuration_act import ACTConfig
        from lerobot.policies.act.modeling_act import ACTPolicy

        cfg = ACTConfig(input_features=inputs, output_features=outputs, chunk_size=chunk_size,
                        n_action_steps=n_action_steps, pretrained_backbone_weights=None, device="cpu", **overrides)
        return ACTPolicy(cfg)
    if kind == "diffusion":
        from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
        from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

        h = max(8, chunk_size)  # horizon must be a multiple of 2**len(down_dims) (8 for the default 3 levels)
        h = ((h + 7) // 8) * 8
        cam = spec.cameras[0]
        kw = dict(input_features=inputs, output_features=outputs, horizon=h, n_action_steps=n_action_steps,
                  n_obs_steps=1, pretrained_backbone_weights=None, crop_shape=(cam.height - 4, cam.width - 4),
                  device="cpu", use_group_norm=True, num_inference_steps=overrides.pop("num_inference_steps", 10))
        kw.update(overrides)
        return DiffusionPolicy(DiffusionConfig(**kw))
    raise ConfigError(f"unknown LeRobot baseline '{kind}' (act, diffusion)")


class LeRobotBaseline(nn.Module):
    """A LeRobot policy driving one physai embodiment with physai's data contract."""

    def __init__(self, kind: str, spec: EmbodimentSpec, chunk_size: int, n_action_steps: int,
                 normalizer: Normalizer | None = None, **overrides):
        super().__init__()
        self.kind, self.spec, self.chunk_size = kind, spec, chunk_size
        self.policy = build_lerobot_policy(kind, spec, chunk_size, n_action_steps, **overrides)
        self.normalizer = normalizer or Normalizer()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _inputs(self, o: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        e = self.spec.name
        img = o["image"][:, -1, 0]  # [B, 3, H, W]
        img = img.float() / 255.0 if img.dtype == torch.uint8 else img
        prop = self.normalizer.normalize(e, "proprio", o["proprio"][:, -1])
        state = torch.cat([prop, o["command"]], dim=-1)  # [B, Dp + Dc]
        if self.kind == "diffusion":  # diffusion wants an observation-history axis
            return {IMG_KEY: img[:, None], "observation.state": state[:, None]}
        return {IMG_KEY: img, "observation.state": state}

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        o, _ = prepare_observation({k: batch[k] for k in ("image", "proprio", "command")}, self.spec, self.device)
        B = o["proprio"].shape[0]
        act = check_actions("action", batch["action"], B, self.chunk_size, self.spec.action_dim).to(self.device)
        inp = self._inputs(o)
        act = self.normalizer.normalize(self.spec.name, "action", act)
        pad = batch.get("action_is_pad")
        pad = torch.zeros(B, self.chunk_size, dtype=torch.bool) if pad is None else torch.as_tensor(pad).bool()
        if self.kind == "diffusion":
            h = self.policy.config.horizon
            if h > self.chunk_size:  # pad the horizon by repeating the last action, marked as padding
                act = torch.cat([act, act[:, -1:].expand(B, h - self.chunk_size, -1)], dim=1)
                pad = torch.cat([pad, torch.ones(B, h - self.chunk_size, dtype=torch.bool)], dim=1)
            inp = {k: v.expand(B, self.policy.config.n_obs_steps, *v.shape[2:]) for k, v in inp.items()}
        loss, info = self.policy.forward({**inp, "action": act, "action_is_pad": pad.to(self.device)})
        extra = {k: float(v) for k, v in (info or {}).items() if isinstance(v, (int, float))}
        return loss, {"loss": float(loss.detach()), **extra}

    def _bounded(self, a: torch.Tensor) -> torch.Tensor:
        return bound_actions(self.normalizer.unnormalize(self.spec.name, "action", a.float().cpu()), self.spec)

    @torch.no_grad()
    def predict_action_chunk(self, obs: Mapping[str, Any]) -> torch.Tensor:
        o, batched = prepare_observation(obs, self.spec, self.device)
        inp = self._inputs(o)
        if self.kind == "diffusion":
            self.policy.reset()
            inp = {k: v.expand(-1, self.policy.config.n_obs_steps, *v.shape[2:]) for k, v in inp.items()}
            inp["observation.images"] = torch.stack([inp[IMG_KEY]], dim=-4)  # [B, S, n_cams, 3, H, W]
            chunk = self.policy.diffusion.generate_actions(inp)  # [B, n_action_steps, A]
        else:
            chunk = self.policy.predict_action_chunk(inp)
        out = self._bounded(chunk)
        return out if batched else out[0]

    @torch.no_grad()
    def select_action(self, obs: Mapping[str, Any]) -> torch.Tensor:
        o, batched = prepare_observation(obs, self.spec, self.device)
        inp = self._inputs(o)
        if self.kind == "diffusion":
            inp = {k: v[:, 0] for k, v in inp.items()}  # select_action keeps its own history queue
        out = self._bounded(self.policy.select_action(inp))
        return out if batched else out[0]

    def reset(self) -> None:
        self.policy.reset()
