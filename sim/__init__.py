"""Simulators, experts and closed-loop evaluation.

Driving uses highway-env (`physai.sim.car`), humanoids use MuJoCo (`physai.sim.humanoid`). Both
are gymnasium environments registered under the `physai/` namespace (e.g. `physai/car-highway`,
`physai/g1-walk`) whose observations follow the embodiment spec: `image` uint8 [H, W, 3],
`proprio` float32 [proprio_dim], `command` a dict of the spec's command fields; actions are
float32 [action_dim] in the spec's physical units.
"""

from __future__ import annotations

_registered = False


def register_envs() -> None:
    """Register every physai gymnasium env (idempotent)."""
    global _registered
    if _registered:
        return
    from physai.sim.car import register_envs as _car
    from physai.sim.humanoid import register_envs as _humanoid

    _car()
    _humanoid()
    _registered = True
