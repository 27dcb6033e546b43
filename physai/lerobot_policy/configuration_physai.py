"""`PhysaiConfig`: the LeRobot policy config (a draccus choice "physai") of a physai model.

LeRobot fills `input_features` / `output_features` from the dataset; the body's spec is built from
them (`modeling_physai.spec_from_features`). LeRobot's processors normalize: state by mean/std, the
action by min/max into [-1, 1], which is then the body's action range (physai clamps into it);
images reach the model as floats in [0, 1], as physai's stems take them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs import NormalizationMode, PreTrainedConfig
from lerobot.configs.types import FeatureType
from lerobot.optim import AdamWConfig


@PreTrainedConfig.register_subclass("physai")
@dataclass
class PhysaiConfig(PreTrainedConfig):
    preset: str = "nano"  # physai trunk preset (physai info lists them) when not starting from a checkpoint
    head: str = "l1"  # physai action head: l1 | tokens | flow
    chunk_size: int = 8  # actions predicted per call
    n_action_steps: int = 8  # of which executed before the next call
    embodiment: str = "lerobot_robot"  # the body's name inside the physai model
    # a physai checkpoint whose trunk (physical-token space, world model) this body joins; its other
    # bodies stay in the model. Empty: a fresh model of `preset`
    init_from: str = ""
    freeze_trunk: bool = False  # with init_from: train only this body's stem and head
    # the physai model's architecture (PolicyConfig + every body's spec), filled when the policy is
    # built, so a saved LeRobot checkpoint rebuilds without `init_from` or the dataset
    physai_model: dict | None = None
    optimizer_lr: float = 1e-3
    optimizer_weight_decay: float = 1e-4
    normalization_mapping: dict[str, NormalizationMode] = field(default_factory=lambda: {
        "VISUAL": NormalizationMode.IDENTITY,
        "STATE": NormalizationMode.MEAN_STD,
        "ACTION": NormalizationMode.MIN_MAX,
    })

    def __post_init__(self):
        super().__post_init__()
        if self.n_obs_steps != 1:
            raise ValueError(f"physai: n_obs_steps must be 1 through LeRobot, got {self.n_obs_steps}")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(f"physai: n_action_steps must be in [1, chunk_size={self.chunk_size}], "
                             f"got {self.n_action_steps}")

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(lr=self.optimizer_lr, weight_decay=self.optimizer_weight_decay)

    def get_scheduler_preset(self) -> None:
        return None

    def validate_features(self) -> None:
        if not self.image_features:
            raise ValueError("physai needs at least one camera: an 'observation.images.*' input feature")
        if len({tuple(f.shape) for f in self.image_features.values()}) > 1:
            raise ValueError("physai: every camera must have the same shape")
        if self.action_feature is None or self.action_feature.type is not FeatureType.ACTION:
            raise ValueError("physai needs an 'action' output feature")

    @property
    def observation_delta_indices(self) -> None:
        return None

    @property
    def action_delta_indices(self) -> list:
        return list(range(self.chunk_size))

    @property
    def reward_delta_indices(self) -> None:
        return None
