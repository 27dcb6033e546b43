"""`PhysaiPolicy`: a physai model behind LeRobot's `PreTrainedPolicy` interface.

LeRobot's batches map onto physai's layout: every `observation.images.*` becomes one camera of
`image` [B, 1, C, 3, H, W] (floats in [0, 1]), `observation.state` the proprio [B, 1, D],
`observation.command` (a physai recording's encoded command, when the dataset has it) the command
[B, Dc], and `action` / `action_is_pad` are the chunk targets. Values arrive normalized by
LeRobot's processors, so the body's spec works in that space (actions in [-1, 1], LeRobot's
min/max mode) and physai's own normalizer leaves this body alone (it has no stats for it).
"""

from __future__ import annotations

from collections import deque

import torch
from lerobot.policies.pretrained import PreTrainedPolicy

from physai.config import PolicyConfig, policy_config
from physai.embodiments.spec import CameraSpec, CommandField, EmbodimentSpec
from physai.heads.base import HeadConfig
from physai.lerobot_policy.configuration_physai import PhysaiConfig
from physai.policy import Policy

STATE, COMMAND, ACTION = "observation.state", "observation.command", "action"


def spec_from_features(config: PhysaiConfig) -> EmbodimentSpec:
    """The body's spec from LeRobot's policy features (shapes only: names are generic)."""
    cams = config.image_features
    C, H, W = next(iter(cams.values())).shape
    state = config.robot_state_feature
    command = config.input_features.get(COMMAND)
    A = int(config.action_feature.shape[0])
    return EmbodimentSpec(
        name=config.embodiment, action_names=tuple(f"action_{i}" for i in range(A)), action_units=("",) * A,
        action_low=(-1.0,) * A, action_high=(1.0,) * A, control_hz=10.0,
        cameras=tuple(CameraSpec(k.split(".")[-1], int(H), int(W)) for k in cams),
        proprio_names=tuple(f"state_{i}" for i in range(int(state.shape[0]))) if state is not None else (),
        command=tuple(CommandField(f"command_{i}", "continuous", low=-1.0, high=1.0, default=0.0)
                      for i in range(int(command.shape[0]))) if command is not None else (),
        default_head=config.head, description="a LeRobot policy's body (normalized units)")


def _build_model(config: PhysaiConfig) -> Policy:
    if config.physai_model is not None:  # a saved LeRobot checkpoint: the stored architecture
        cfg = PolicyConfig.from_dict(config.physai_model["config"])
        specs = {e: EmbodimentSpec.from_dict(s) for e, s in config.physai_model["specs"].items()}
        return Policy.build(cfg, specs=specs)
    spec = spec_from_features(config)
    if config.init_from:
        model = Policy.from_pretrained(config.init_from)
        model.add_embodiment(spec, head=config.head)
        return model
    head = HeadConfig(chunk_size=config.chunk_size)
    return Policy.build(policy_config(config.preset, embodiments=(spec.name,), head=head), specs={spec.name: spec})


class PhysaiPolicy(PreTrainedPolicy):
    config_class = PhysaiConfig
    name = "physai"

    def __init__(self, config: PhysaiConfig, **kwargs):
        super().__init__(config)  # (sets self.config)
        config.validate_features()
        self.model = _build_model(config)
        if self.model.config.head.chunk_size != config.chunk_size:
            raise ValueError(f"physai: chunk_size {config.chunk_size} differs from the model's "
                             f"{self.model.config.head.chunk_size} (set --policy.chunk_size)")
        config.physai_model = {"config": self.model.config.to_dict(),
                               "specs": {e: s.to_dict() for e, s in self.model.specs.items()}}
        self._queue: deque[torch.Tensor] = deque(maxlen=config.n_action_steps)

    @property
    def embodiment(self) -> str:
        return self.config.embodiment

    def get_optim_params(self):
        if self.config.freeze_trunk:
            return self.model.finetune_head(self.embodiment, train_stem=True)
        return [p for p in self.parameters() if p.requires_grad]

    def reset(self):
        self._queue.clear()

    def _obs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        imgs = torch.stack([batch[k] for k in self.config.image_features], dim=1)  # [B, C, 3, H, W]
        B = imgs.shape[0]
        state = batch.get(STATE)
        state = state if state is not None and self.config.robot_state_feature is not None else imgs.new_zeros(B, 0)
        if state.dim() == 3:  # [B, T, D] with T = n_obs_steps = 1
            state = state[:, -1]
        dc = self.model.specs[self.embodiment].command_dim
        command = batch.get(COMMAND)  # (normalized by LeRobot like a state; absent: the mean command, 0)
        command = command.float().reshape(B, -1) if command is not None and dc else imgs.new_zeros(B, dc)
        return {"image": imgs[:, None].clamp(0.0, 1.0), "proprio": state[:, None].float(), "command": command}

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        b = {"embodiment": self.embodiment, **self._obs(batch), "action": batch[ACTION]}
        if "action_is_pad" in batch:
            b["action_is_pad"] = batch["action_is_pad"]
        loss, metrics = self.model(b)
        return loss, metrics

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
        self.eval()
        return self.model.predict_action_chunk(self._obs(batch), self.embodiment)  # [B, H, A]

    @torch.no_grad()
    def select_action(self, batch: dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
        if not self._queue:
            chunk = self.predict_action_chunk(batch)[:, : self.config.n_action_steps]  # [B, n, A]
            self._queue.extend(chunk.transpose(0, 1))
        return self._queue.popleft()
