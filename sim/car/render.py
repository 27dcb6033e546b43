"""Headless ego-centred top-down renderer for highway-env roads.

Draws highway-env's own road/vehicle graphics (`RoadGraphics`) onto an off-screen pygame surface
that follows the ego vehicle, at `supersample`× the requested size, and box-filters it down to
[H, W, 3] uint8 (cheap anti-aliasing: lane stripes and 5 m cars stay visible at 64×64). It never
opens a window or initialises a pygame display, so it needs no X server and no SDL video driver
(highway-env's own `EnvViewer` draws nothing when `SDL_VIDEODRIVER=dummy`). The view is world
aligned (north up, like highway-env's viewer), centred on the ego at `centering` (fractions of the
width/height) and `view_m` metres wide; rendering is deterministic.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np  # noqa: E402
import pygame  # noqa: E402
from highway_env.road.graphics import RoadGraphics, WorldSurface  # noqa: E402

from physai.errors import ConfigError  # noqa: E402


class TopDownRenderer:
    def __init__(
        self,
        height: int,
        width: int,
        view_m: float = 50.0,
        centering: tuple[float, float] = (0.5, 0.5),
        supersample: int = 2,
    ):
        if height <= 0 or width <= 0 or supersample <= 0 or view_m <= 0:
            raise ConfigError(
                f"renderer: height/width/supersample/view_m must be > 0, got {height}, {width}, {supersample}, {view_m}"
            )
        self.height, self.width, self.ss = int(height), int(width), int(supersample)
        size = (self.width * self.ss, self.height * self.ss)
        self.surface = WorldSurface(size, 0, pygame.Surface(size))
        self.surface.scaling = size[0] / float(view_m)  # px per metre
        self.surface.centering_position = [float(centering[0]), float(centering[1])]

    def render(self, road, ego) -> np.ndarray:
        """[H, W, 3] uint8 picture of `road` around `ego`."""
        s = self.surface
        s.move_display_window_to(ego.position)
        RoadGraphics.display(road, s)
        RoadGraphics.display_road_objects(road, s, offscreen=True)
        RoadGraphics.display_traffic(road, s, offscreen=True)
        img = pygame.surfarray.array3d(s)  # [W*ss, H*ss, 3]
        img = img.transpose(1, 0, 2)  # [H*ss, W*ss, 3]
        if self.ss > 1:
            img = img.reshape(self.height, self.ss, self.width, self.ss, 3).mean(axis=(1, 3))
            img = np.rint(img)
        return np.ascontiguousarray(img, dtype=np.uint8)  # [H, W, 3]
