"""Simulators, experts, the roll-out runner and closed-loop evaluation.

Each kind of body is a registered body family (`physai.sim.family`): driving (highway-env,
`physai.sim.car`) and humanoids (MuJoCo, `physai.sim.humanoid`) are built in, and a user's family
registers the same way. Their gymnasium envs' observations follow the embodiment spec: `image`
uint8 [H, W, 3], `proprio` float32 [proprio_dim], `command` a dict of the spec's command fields;
actions are float32 [action_dim] in the spec's physical units; `info["sensors"]` is what the
family's safety guard reads. `physai.sim.rollout` plays episodes in parallel,
`physai.sim.evaluate` scores them, `physai.sim.suite` reads scenario files and shipped suites.
"""

from __future__ import annotations


def register_envs() -> None:
    """Register every body family's gymnasium envs (idempotent)."""
    from physai.sim.family import register_envs as _register

    _register()


from physai.sim import car as _car, humanoid as _humanoid  # noqa: E402,F401  (their import registers the envs)
