"""`CarEnv`: a highway-env scenario as a gymnasium env in the `car` spec's physical units.

Actions are float32 [accel m/s², steer rad], clipped to the spec bounds and mapped exactly onto
highway-env's normalised `ContinuousAction` (whose ranges are configured to equal the bounds); a
NaN/inf action raises `ObservationError` (field "action") rather than being silently replaced — call
`spec.clip_action` first if replacement is wanted. Sign convention (highway-env's, also CARLA's):
world x is forward along the road and y points to the right, so positive `steer` turns right
(towards higher lane ids), positive `heading` points right of the lane direction and positive
`lateral_offset` is right of the lane centre; `lane_index` counts from the leftmost lane (0).
Observations: `image` (ego-centred top-down render, uint8 [H, W, 3]), `proprio` (the spec's 6
floats) and `command` ({"lane": 0|1|2 for keep|left|right, "speed": [m/s], "stop": [m]}). A lane command is a
one-lane request relative to the lane the ego was in when it was given; once the ego is centred
in the requested lane the env sets `lane` back to "keep" (`lane_command_autoclear`), and it does so at
once for a request for a lane that does not exist (as a navigation system refuses a turn that is not
there: a command the car can never follow must not stay in its observation; without autoclear it
stays pending and the expert keeps its lane). A `stop` command D < `STOP_NONE_M` asks the car to
come to a standstill within D metres along the road; the observation then counts the metres left
down to 0 (the car stays stopped until a command with `stop` = `STOP_NONE_M`, "none"). The image is world-aligned like
highway-env's viewer, centred on the ego. `info` holds `collision`, `offroad`, `speed` (m/s),
`progress_m` (distance along the road since reset), `lane_error` (|lateral offset| m), `lane_id`,
`speed_limit`, `blocked` (a vehicle within 25 m ahead, a ~0 speed command, or a stop requested), `time_s`, the
applied `action`, the `command` and `sensors`, the documented input of the safety guard
(`physai.embodiments.safety.CarGuard`), like a radar track list: {"ego_speed": m/s, "ego_lane": lane
id, "lane_width": m, "ego_length": m, "objects": float32 [N, 5] = (dx, dy, dvx, dvy, length) for
every vehicle/object whose centre is within `SENSOR_RANGE_M` of the ego's (N may be 0)}. dx/dy are
the object's centre relative to the ego's centre in the ego lane's frame (dx along the lane, dy
lateral, positive right like `lateral_offset`; on a circular lane dx is the arc length and dy the
radial offset), dvx/dvy its velocity minus the ego's, each resolved along the lane direction at
its own position. `sensors` is in the `info` of `reset` and of every `step`; it is what a car
would measure, so a guard fed by it runs unchanged outside the simulator.
`reset(options={"config": {...}})` applies highway-env config overrides for that episode only
(unknown keys and the keys that define the contract are a `ConfigError`); `options={"command":
{...}}` or `set_command` set the command. `episode_seconds` truncates every episode at that time
without touching the highway-env config, so it works for scenarios whose upstream env has no
`duration` option (None: the config's `duration`, if any). The same seed gives
identical observations, rewards and infos for the same actions.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from highway_env.road.lane import CircularLane
from highway_env.vehicle.graphics import VehicleGraphics

from physai.embodiments import get_spec
from physai.errors import ConfigError, ObservationError
from physai.sim.car import STOP_NONE_M
from physai.sim.car.render import TopDownRenderer
from physai.sim.car.scenarios import base_config, get_scenario

LANE_CHOICES = ("keep", "left", "right")
_LOCKED_KEYS = ("action", "observation", "policy_frequency", "offscreen_rendering")  # define the contract
_BLOCK_RADIUS_M = 25.0  # a vehicle this close ahead counts as "blocking" (stall metric)
SENSOR_RANGE_M = 100.0  # objects whose centre is this close to the ego's appear in info["sensors"]


class CarEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}

    def __init__(
        self,
        scenario: str = "highway",
        image_size: int | tuple[int, int] | None = None,  # default: the spec camera (64×64)
        command: Mapping[str, Any] | None = None,  # initial command; default keep + scenario speed
        config: Mapping[str, Any] | None = None,  # highway-env config overrides
        render_mode: str | None = None,
        supersample: int = 2,  # render at k× then box-filter (anti-aliasing)
        view_m: float | None = None,  # metres across the image; default per scenario
        lane_command_autoclear: bool = True,
        render_size: int = 256,  # side of `render()` frames (videos), not of observations
        episode_seconds: float | None = None,  # truncate at this time; None: the config's `duration`
    ):
        super().__init__()
        self.scenario = get_scenario(scenario)
        self.car_spec = get_spec("car")
        cam = self.car_spec.cameras[0]
        if image_size is None:
            image_size = (cam.height, cam.width)
        elif isinstance(image_size, (int, np.integer)):
            image_size = (int(image_size), int(image_size))
        if len(tuple(image_size)) != 2 or min(image_size) <= 0:
            raise ConfigError(f"image_size must be a positive int or (H, W), got {image_size!r}")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        if episode_seconds is not None:
            ok = isinstance(episode_seconds, (int, float, np.integer, np.floating)) and not isinstance(episode_seconds, bool)
            if not (ok and math.isfinite(float(episode_seconds)) and float(episode_seconds) > 0):
                raise ConfigError(f"episode_seconds must be a finite number of seconds > 0 (or None), got {episode_seconds!r}")
            episode_seconds = float(episode_seconds)
        self.episode_seconds = episode_seconds
        self.lane_command_autoclear = bool(lane_command_autoclear)
        self.dt = 1.0 / self.car_spec.control_hz

        cfg = base_config()
        cfg.update(copy.deepcopy(self.scenario.config))
        self.sim = self.scenario.cls(config=cfg)  # upstream env (builds and resets once, unseeded)
        self._check_overrides(config or {})
        full = self.scenario.cls.default_config()
        full.update(cfg)
        full.update(copy.deepcopy(dict(config or {})))
        self._base_config = full  # complete highway-env config every reset starts from

        view = float(view_m) if view_m is not None else self.scenario.view_m
        self._renderer = TopDownRenderer(*self.image_size, view_m=view, centering=self.scenario.centering,
                                         supersample=supersample)
        self._video_renderer: TopDownRenderer | None = None
        self._video_renderer_size = 0
        self._render_size, self._view_m = int(render_size), view

        H, W = self.image_size
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (H, W, 3), np.uint8),
            "proprio": spaces.Box(-np.inf, np.inf, (self.car_spec.proprio_dim,), np.float32),
            "command": spaces.Dict({
                "lane": spaces.Discrete(len(LANE_CHOICES)),
                "speed": spaces.Box(0.0, 40.0, (1,), np.float32),
                "stop": spaces.Box(0.0, STOP_NONE_M, (1,), np.float32),
            }),
        })
        self.action_space = spaces.Box(self.car_spec.low, self.car_spec.high, (2,), np.float32)

        self.command: dict[str, Any] = self._default_command()
        if command is not None:  # validate now, apply at every reset
            if not isinstance(command, Mapping):
                raise ConfigError(f"command must be a mapping like {{'lane': 'keep', 'speed': 20.0}}, got {command!r}")
            self.car_spec.encode_command({**self.command, **dict(command)})
        self._initial_command = dict(command) if command is not None else None
        self.destination = self.scenario.destination  # road-network node the ego heads for, if any
        self.lane_origin: int | None = None  # lane id when the current lane command was given
        self.lane_target: int | None = None  # lane id the current lane command asks for
        self.stop_at: float | None = None  # progress_m of the requested stop point, if any
        self._prev_action = np.zeros(2, dtype=np.float32)
        self._progress = 0.0

    # ---- config / command ---------------------------------------------------------------------
    def _check_overrides(self, overrides: Mapping[str, Any]) -> None:
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"highway-env config overrides must be a mapping, got {type(overrides).__name__}")
        known = self.sim.default_config()
        for k in overrides:
            if k in _LOCKED_KEYS:
                raise ConfigError(f"config key '{k}' is fixed by physai (it defines the car spec contract)")
            if k not in known:
                raise ConfigError(
                    f"config key '{k}' is not a {self.scenario.upstream_id} option; known: {sorted(known)}"
                )

    def _default_command(self) -> dict[str, Any]:
        return {"lane": "keep", "speed": self.scenario.default_speed, "stop": STOP_NONE_M}

    def stop_remaining(self) -> float | None:
        """Metres left to the requested stop point (>= 0), or None when no stop is requested."""
        return None if self.stop_at is None else max(0.0, self.stop_at - self._progress)

    def set_command(self, command: Mapping[str, Any]) -> None:
        """Update (part of) the command, e.g. {"lane": "left"}, {"speed": 20.0} or {"stop": 80.0}
        (standstill within 80 m; `STOP_NONE_M` clears it)."""
        if not isinstance(command, Mapping):
            raise ObservationError("command", "a mapping with keys lane/speed/stop", type(command).__name__)
        new = {**self.command, **dict(command)}
        lane = new["lane"]
        if isinstance(lane, np.ndarray) and lane.size == 1:
            lane = lane.reshape(-1)[0]
        if isinstance(lane, (int, np.integer)) and not isinstance(lane, bool) and 0 <= int(lane) < len(LANE_CHOICES):
            lane = LANE_CHOICES[int(lane)]
        speed, stop = (float(np.asarray(x, dtype=np.float64).reshape(-1)[0]) if np.size(x) == 1 else x
                       for x in (new["speed"], new["stop"]))  # gymnasium Box samples are [1] arrays
        new = {"lane": lane, "speed": speed, "stop": stop}
        self.car_spec.encode_command(new)  # validates: lane choice, speed in [0, 40] m/s, stop in [0, 300] m
        if lane != self.command.get("lane") or self.lane_target is None:
            if not self._start_lane_command(lane):
                new = {**new, "lane": "keep"}  # no such lane: refused at once
        # the stop point, fixed along the road (re-sending the remaining distance keeps it)
        self.stop_at = None if stop >= STOP_NONE_M else self._progress + stop
        self.command = new

    def _start_lane_command(self, lane: str) -> bool:
        """Set the lane origin/target for a new lane command; False when it is refused (autoclear and
        no such lane next to the ego)."""
        if lane == "keep" or self.sim.vehicle is None:
            self.lane_origin = self.lane_target = None
            return True
        index = self.sim.vehicle.lane_index
        self.lane_origin = int(index[2])
        self.lane_target = self.lane_origin + (-1 if lane == "left" else 1)
        if self.lane_command_autoclear and not 0 <= self.lane_target < len(self.sim.road.network.graph[index[0]][index[1]]):
            self.lane_origin = self.lane_target = None
            return False
        return True

    def _maybe_clear_lane_command(self, lateral: float) -> None:
        ego = self.sim.vehicle
        if self.lane_target is not None and ego.lane_index[2] == self.lane_target and abs(lateral) < 0.5:
            if self.lane_command_autoclear:
                self.command = {**self.command, "lane": "keep"}
                self.lane_origin = self.lane_target = None

    # ---- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"config", "command"}
        if unknown:
            raise ConfigError(f"reset options: unknown keys {sorted(unknown)}; expected 'config' and/or 'command'")
        overrides = options.get("config") or {}
        self._check_overrides(overrides)
        self.sim.config = copy.deepcopy(self._base_config)  # per-reset overrides do not leak into later resets
        self.sim.config.update(copy.deepcopy(dict(overrides)))
        self.sim.reset(seed=seed)
        self.sim.vehicle.color = VehicleGraphics.EGO_COLOR
        dest = self.sim.config.get("destination")
        self.destination = dest if isinstance(dest, str) else self.scenario.destination
        self._prev_action = np.zeros(2, dtype=np.float32)
        self._progress = 0.0
        self.command = self._default_command()
        self.lane_origin = self.lane_target = None
        self.stop_at = None
        cmd = options.get("command", self._initial_command)
        if cmd is not None:
            self.set_command(cmd)
        obs, lateral = self._observe()
        return obs, self._info(lateral, collision=False)

    def step(self, action):
        a = np.asarray(action, dtype=np.float32)
        if a.shape != (2,) and a.size == 2:
            a = a.reshape(2)
        if a.shape != (2,):
            raise ObservationError("action", "float32 [2] = (accel m/s^2, steer rad)", f"shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ObservationError("action", "finite values", f"{a.tolist()} (use spec.clip_action to replace NaN)")
        a = np.clip(a, self.car_spec.low, self.car_spec.high)
        low, high = self.car_spec.low.astype(np.float64), self.car_spec.high.astype(np.float64)
        normalized = 2.0 * (a.astype(np.float64) - low) / (high - low) - 1.0  # exact inverse of highway-env lmap

        ego = self.sim.vehicle
        pos0 = ego.position.copy()
        lane = ego.lane
        direction = np.array([math.cos(h := lane.heading_at(lane.local_coordinates(pos0)[0])), math.sin(h)])
        _, reward, terminated, truncated, _ = self.sim.step(normalized)
        self._progress += float(np.dot(self.sim.vehicle.position - pos0, direction))
        self._prev_action = a
        ego = self.sim.vehicle
        if ego.crashed:
            ego.color = VehicleGraphics.RED
        if self.episode_seconds is not None:  # upstream truncation is time-only (`duration`): replaced
            truncated = self.sim.time >= self.episode_seconds - 1e-9
        else:
            truncated = bool(truncated) or self.sim.time >= self.sim.config.get("duration", math.inf) - 1e-9
        _, lateral = ego.lane.local_coordinates(ego.position)
        self._maybe_clear_lane_command(lateral)
        left = self.stop_remaining()
        self.command = {**self.command, "stop": STOP_NONE_M if left is None else left}
        obs, lateral = self._observe()
        info = self._info(lateral, collision=bool(ego.crashed))
        return obs, float(reward), bool(terminated), truncated, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self.render_frame(self._render_size)

    def render_frame(self, size: int = 256) -> np.ndarray:
        """A larger ego-centred top-down frame [size, size, 3] uint8 for videos (any render_mode)."""
        if self._video_renderer is None or self._video_renderer_size != int(size):
            self._video_renderer = TopDownRenderer(int(size), int(size), view_m=self._view_m,
                                                   centering=self.scenario.centering, supersample=1)
            self._video_renderer_size = int(size)
        return self._video_renderer.render(self.sim.road, self.sim.vehicle)

    def close(self):
        self.sim.close()

    # ---- observation / info -------------------------------------------------------------------
    def lane_frame(self) -> tuple[float, float, float]:
        """(longitudinal m, lateral m, heading rad) of the ego in its closest lane."""
        ego = self.sim.vehicle
        long, lat = ego.lane.local_coordinates(ego.position)
        return float(long), float(lat), float(ego.lane.local_angle(ego.heading, long))

    def _observe(self) -> tuple[dict[str, Any], float]:
        ego = self.sim.vehicle
        _, lat, heading = self.lane_frame()
        proprio = np.array(
            [ego.speed, heading, lat, float(ego.lane_index[2]), *self._prev_action], dtype=np.float32
        )  # [6] in spec.proprio_names order
        obs = {
            "image": self._renderer.render(self.sim.road, ego),  # [H, W, 3] uint8
            "proprio": proprio,
            "command": {
                "lane": LANE_CHOICES.index(self.command["lane"]),
                "speed": np.array([self.command["speed"]], dtype=np.float32),
                "stop": np.array([self.command["stop"]], dtype=np.float32),
            },
        }
        return obs, lat

    def _blocked(self) -> bool:
        if self.command["speed"] < 1.0 or self.stop_at is not None:
            return True  # told to stand still: not a stall
        ego = self.sim.vehicle
        for v in self.sim.road.vehicles + self.sim.road.objects:
            if v is ego:
                continue
            d = v.position - ego.position
            if float(d @ d) < _BLOCK_RADIUS_M**2 and ego.front_distance_to(v) > 0:
                return True
        return False

    def _info(self, lateral: float, collision: bool) -> dict[str, Any]:
        ego = self.sim.vehicle
        limit = ego.lane.speed_limit
        return {
            "collision": collision,
            "offroad": not bool(ego.on_road),
            "speed": float(ego.speed),
            "progress_m": float(self._progress),
            "lane_error": abs(float(lateral)),
            "lane_id": int(ego.lane_index[2]),
            "speed_limit": float(limit) if limit is not None else math.inf,
            "blocked": self._blocked(),
            "time_s": float(self.sim.time),
            "action": self._prev_action.copy(),
            "command": {"lane": self.command["lane"], "speed": float(self.command["speed"]),
                        "stop": float(self.command["stop"])},
            "sensors": self.sensors(),
        }

    def sensors(self) -> dict[str, Any]:
        """The guard's radar-like input now (see the module docstring); also `info["sensors"]`."""
        ego = self.sim.vehicle
        lane = ego.lane
        s_e, d_e = self._lane_coords(lane, ego.position, None)
        v_e = self._lane_velocity(lane, ego, s_e)
        rows = []
        for v in self.sim.road.vehicles + self.sim.road.objects:
            if v is ego:
                continue
            delta = v.position - ego.position
            if float(delta @ delta) >= SENSOR_RANGE_M**2:
                continue
            s_o, d_o = self._lane_coords(lane, v.position, s_e)
            dv = self._lane_velocity(lane, v, s_o) - v_e
            rows.append((s_o - s_e, d_o - d_e, dv[0], dv[1], float(getattr(v, "LENGTH", 0.0))))
        return {
            "ego_speed": float(ego.speed),
            "ego_lane": int(ego.lane_index[2]),
            "lane_width": float(lane.width_at(s_e)),
            "ego_length": float(ego.LENGTH),
            "objects": np.asarray(rows, dtype=np.float32).reshape(-1, 5),  # [N, 5]
        }

    @staticmethod
    def _lane_coords(lane, position: np.ndarray, s_ref: float | None) -> tuple[float, float]:
        """(longitudinal, lateral) of `position` on `lane`; on a circular lane the angle is taken
        within ±π of `s_ref` (the ego's), so objects ahead around the circle have dx > 0."""
        if isinstance(lane, CircularLane) and s_ref is not None:
            delta = position - lane.center
            phi_ref = lane.start_phase + lane.direction * s_ref / lane.radius
            dphi = math.remainder(math.atan2(delta[1], delta[0]) - phi_ref, 2 * math.pi)
            return s_ref + lane.direction * dphi * lane.radius, lane.direction * (lane.radius - float(np.linalg.norm(delta)))
        long, lat = lane.local_coordinates(position)
        return float(long), float(lat)

    @staticmethod
    def _lane_velocity(lane, obj, s: float) -> np.ndarray:
        """[2] (along, lateral) velocity of `obj` in the lane's frame at longitudinal `s`."""
        h = lane.heading_at(s)
        c, sn = math.cos(h), math.sin(h)
        vel = np.asarray(obj.velocity, dtype=np.float64)
        return np.array([c * vel[0] + sn * vel[1], -sn * vel[0] + c * vel[1]])
