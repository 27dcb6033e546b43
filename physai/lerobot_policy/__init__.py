"""physai as a LeRobot policy: `lerobot-train --policy.type=physai ...`.

LeRobot finds third-party policies by installed distributions named `lerobot_policy_*`
(`lerobot.utils.import_utils.register_third_party_plugins`); the tiny distribution in `plugin/`
(`pip install ./physai/lerobot_policy/plugin`) is that name and imports this package, whose
`configuration_physai` registers `PhysaiConfig` as the choice "physai". LeRobot then finds
`PhysaiPolicy` in the sibling `modeling_physai` and `make_physai_pre_post_processors` in
`processor_physai` by its naming convention.
"""

from physai.lerobot_policy.configuration_physai import PhysaiConfig

__all__ = ["PhysaiConfig"]
