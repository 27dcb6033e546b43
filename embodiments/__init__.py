"""Embodiment specs (action/observation/command schema, bounds, rate) and their registry.

`get_spec("car" | "g1" | "t1")` returns a frozen `EmbodimentSpec`; `EMBODIMENTS` lists builders.
Safety layers for each embodiment live beside the specs (see `physai.embodiments.safety`).
"""

from physai.embodiments.registry import EMBODIMENTS, IMAGE_SIZE, get_spec
from physai.embodiments.spec import CameraSpec, CommandField, EmbodimentSpec

__all__ = ["EMBODIMENTS", "IMAGE_SIZE", "get_spec", "CameraSpec", "CommandField", "EmbodimentSpec"]
