"""physai as a LeRobot policy and its envs as a LeRobot env: `lerobot-train --policy.type=physai`,
`lerobot-eval --env.type=physai --env.task=car-highway`.

LeRobot finds third-party plugins by installed distributions named `lerobot_policy_*`
(`lerobot.utils.import_utils.register_third_party_plugins`); the tiny distribution in `plugin/`
(`pip install ./physai/lerobot_policy/plugin`) is that name and imports this package, whose
`configuration_physai` registers `PhysaiConfig` as the policy choice "physai" and `env_physai`
registers `PhysaiEnvConfig` as the env choice "physai". LeRobot then finds `PhysaiPolicy` in the
sibling `modeling_physai` and `make_physai_pre_post_processors` in `processor_physai` by its
naming convention.
"""

from physai.lerobot_policy.configuration_physai import PhysaiConfig
from physai.lerobot_policy.env_physai import PhysaiEnvConfig

__all__ = ["PhysaiConfig", "PhysaiEnvConfig"]
