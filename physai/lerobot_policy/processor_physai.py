"""LeRobot's default pre/post-processors for physai (normalize in, unnormalize out, device moves)."""

from __future__ import annotations

from typing import Any

import torch
from lerobot.processor import PolicyAction, PolicyProcessorPipeline, make_default_pre_post_processors

from physai.lerobot_policy.configuration_physai import PhysaiConfig


def make_physai_pre_post_processors(
    config: PhysaiConfig, dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[PolicyProcessorPipeline[dict[str, Any], dict[str, Any]], PolicyProcessorPipeline[PolicyAction, PolicyAction]]:
    return make_default_pre_post_processors(config, dataset_stats, normalizer_device=config.device)
