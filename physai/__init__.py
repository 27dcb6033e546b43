"""physai: one vision-to-action transformer for cars and humanoids, through a learned discrete
physical-token space, with a world-model objective and pluggable embodiment heads.

Import-light on purpose: `from physai import Policy` pulls torch; simulators and datasets are
imported from `physai.sim` / `physai.data` only when used.
"""

__version__ = "0.1.0"


def __getattr__(name):  # lazy exports keep `import physai` cheap
    if name == "Policy":
        from physai.policy import Policy

        return Policy
    if name in ("PolicyConfig", "policy_config"):
        from physai import config

        return getattr(config, name)
    raise AttributeError(f"module 'physai' has no attribute {name!r}")
