"""LeRobot plugin entry: importing it registers the "physai" policy type (see physai.lerobot_policy)."""

from physai.lerobot_policy import PhysaiConfig  # noqa: F401  (registers the draccus choice "physai")
