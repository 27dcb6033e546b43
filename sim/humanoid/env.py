"""`HumanoidWalkEnv`: a MuJoCo humanoid (Unitree G1 or Booster T1) told to walk at a commanded velocity.

Observation (per the embodiment spec): `image` [H, W, 3] uint8 from a camera that follows the robot
(zeros when `render_images=False`, which needs no GL), `proprio` [P] float32 = joint positions, joint
velocities, base angular velocity (body frame), projected gravity, gait phase (sin l/r, cos l/r)
and the last applied joint targets, and `command` = {vx, vy, yaw_rate} in [-1, 1]. Action: absolute
joint position targets in rad (actuator order), clipped to the joint ranges; a non-finite or
mis-shaped action raises `ObservationError`. Each 50 Hz step runs 10 physics steps of 2 ms with a
PD loop `kp·(target − q) − kd·q̇` (gains of the robot's walking policy). The gait phase and last
action are env state (as in holosoma's deployment loop), so an expert can be queried from any state.
`info` (of `reset` and every `step`) also holds `sensors`, the documented input of the safety guard
(`physai.embodiments.safety.HumanoidGuard`), what the robot's IMU and joint encoders measure:
{"gravity": float32 [3] projected gravity in the base frame (≈ (0, 0, −1) upright), "base_height":
m above the floor, "stand_height": m (the robot's standing base height), "joint_pos": float32 [A]
rad and "joint_vel": float32 [A] rad/s in actuator order}; a guard fed by it runs unchanged on a
real robot. Episodes end on a fall (root below `fall_height` × standing height or tilted more than
`max_tilt_deg`) or after `episode_seconds`. Reward: exp(−tracking_error) per step survived.
Without a schedule, commands are random (see `commands.random_schedule`); `stand_prob` (default
0.1, what evaluation uses) is the chance a command is "stand still". Recordings may raise it: the
walk-to-stand transition is where learned policies fall, and at 0.1 it is rare in the data.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from physai.sim.render import import_mujoco

mujoco = import_mujoco()  # a bad MUJOCO_GL is a BackendUnavailableError, not an error deep in PyOpenGL

from physai.embodiments import get_spec  # noqa: E402
from physai.errors import ConfigError, ObservationError  # noqa: E402
from physai.sim.humanoid import commands as C  # noqa: E402
from physai.sim.humanoid.robots import CONTROL_HZ, SUBSTEPS, TIMESTEP, build_model, robot_setup  # noqa: E402

CAMERA = {"distance": 2.4, "elevation": -18.0, "azimuth_offset": 35.0, "lookat_z": 0.75}  # x stand height
CAM_YAW_SMOOTHING = 0.1  # per step; the chase camera ignores the gait's yaw wobble


class HumanoidWalkEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": int(CONTROL_HZ)}

    def __init__(
        self,
        robot: str = "g1",
        image_size: int | None = None,
        render_images: bool = True,
        episode_seconds: float = 20.0,
        command_schedule: Any = None,
        render_mode: str | None = None,
        render_size: int = 256,
        init_noise: float = 0.02,
        fall_height: float = 0.6,
        max_tilt_deg: float = 50.0,
        stand_prob: float = C.P_STAND,
    ):
        self.spec_ = get_spec(robot)  # EmbodimentSpec ("spec" is gymnasium's EnvSpec)
        cam = self.spec_.cameras[0]
        self.image_size = int(image_size or cam.height)
        if self.image_size <= 0 or episode_seconds <= 0:
            raise ConfigError("image_size and episode_seconds must be > 0")
        if not 0.0 <= stand_prob <= 1.0:
            raise ConfigError(f"stand_prob must be in [0, 1] (chance a random command is 'stand still'), got {stand_prob}")
        self.stand_prob = float(stand_prob)
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.robot, self.render_images, self.render_mode = robot, bool(render_images), render_mode
        self.render_size, self.init_noise = int(render_size), float(init_noise)
        self.fall_height, self.min_up = float(fall_height), math.cos(math.radians(max_tilt_deg))
        self.max_steps = int(round(episode_seconds * CONTROL_HZ))
        self.setup = robot_setup(robot)
        self.model = build_model(robot)
        self.data = mujoco.MjData(self.model)
        self._user_schedule = None if command_schedule is None else C.normalize_schedule(self.spec_, command_schedule)
        A, P, S = self.spec_.action_dim, self.spec_.proprio_dim, self.image_size
        self._low, self._high = self.spec_.low.astype(np.float64), self.spec_.high.astype(np.float64)
        self.action_space = spaces.Box(self.spec_.low, self.spec_.high, (A,), np.float32)
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (S, S, 3), np.uint8),
                "proprio": spaces.Box(-np.inf, np.inf, (P,), np.float32),
                "command": spaces.Dict({k: spaces.Box(-1.0, 1.0, (1,), np.float32) for k in C.FIELDS}),
            }
        )
        self._phase_dt = 2 * math.pi / (CONTROL_HZ * self.setup.gait_period)
        self._renderers: dict[int, Any] = {}
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._cam_yaw, self._options_schedule = 0.0, False
        self._reset_state(C.normalize_schedule(self.spec_, [(0.0, {})]))

    # ---- state ---------------------------------------------------------------------------------
    def _reset_state(self, schedule: C.Schedule) -> None:
        self.steps = 0
        self.schedule, self._sched_pos = schedule, 1
        self.command: C.Command = dict(schedule[0][1])
        self.phase = np.array([0.0, math.pi])  # [2] left, right (holosoma's start)
        self._standing = False
        self.last_action = self.setup.default_pose.astype(np.float32)  # [A] rad
        self._advance_phase()

    def _advance_phase(self) -> None:
        """holosoma's update_phase_time: advance, hold both legs at π while the command is ~0."""
        self.phase = np.fmod(self.phase + self._phase_dt + math.pi, 2 * math.pi) - math.pi
        c = self.command
        if math.hypot(c["vx"], c["vy"]) < 0.01 and abs(c["yaw_rate"]) < 0.01:
            self.phase[:] = math.pi
            self._standing = True
        elif self._standing:
            self.phase = np.array([0.0, math.pi])
            self._standing = False

    @property
    def control_dt(self) -> float:
        return 1.0 / CONTROL_HZ

    @property
    def time_s(self) -> float:
        return self.steps / CONTROL_HZ

    def set_command(self, command: Mapping[str, Any]) -> None:
        """Change the command now (missing fields = 0). Stops the random schedule for this episode."""
        self.command = C.make_command(self.spec_, command)
        if self._user_schedule is None and not self._options_schedule:
            self.schedule = self.schedule[: self._sched_pos]

    def _root_frame(self) -> tuple[np.ndarray, float]:
        R = np.empty(9)
        mujoco.mju_quat2Mat(R, self.data.qpos[3:7])
        R = R.reshape(3, 3)  # body -> world
        return R, math.atan2(R[1, 0], R[0, 0])

    def base_velocity(self) -> tuple[np.ndarray, float]:
        """(xy velocity [2] in the heading frame in m/s, yaw rate in rad/s)."""
        R, yaw = self._root_frame()
        v = self.data.qvel[0:2]
        c, s = math.cos(yaw), math.sin(yaw)
        v_h = np.array([c * v[0] + s * v[1], -s * v[0] + c * v[1]])
        return v_h, float((R @ self.data.qvel[3:6])[2])

    def proprio(self) -> np.ndarray:
        """[P] float32 in the spec's proprio order."""
        st, d = self.setup, self.data
        R, _ = self._root_frame()
        gravity = -R[2, :]  # R^T · (0, 0, -1)
        parts = [d.qpos[st.qpos_adr], d.qvel[st.qvel_adr], d.qvel[3:6], gravity]  # [A], [A], [3], [3]
        parts += [np.sin(self.phase), np.cos(self.phase), self.last_action]  # [2], [2], [A]
        return np.concatenate(parts).astype(np.float32)

    def _obs(self) -> dict[str, Any]:
        S = self.image_size
        image = self._render(S) if self.render_images else np.zeros((S, S, 3), np.uint8)  # [S, S, 3]
        return {
            "image": image,
            "proprio": self.proprio(),
            "command": {k: np.array([self.command[k]], np.float32) for k in C.FIELDS},
        }

    def _fell(self) -> bool:
        R, _ = self._root_frame()
        return bool(self.data.qpos[2] < self.fall_height * self.setup.stand_height or R[2, 2] < self.min_up)

    def _info(self, command: C.Command, energy: float) -> dict[str, Any]:
        v, wz = self.base_velocity()
        err = math.hypot(command["vx"] - v[0], command["vy"] - v[1]) + abs(command["yaw_rate"] - wz)
        return {
            "fell": self._fell(),
            "base_lin_vel": v.astype(np.float32),  # [2] heading frame, m/s
            "yaw_rate": wz,
            "command": dict(command),  # the command this step was taken under
            "tracking_error": err,  # |v_xy cmd − v_xy| (m/s) + |yaw cmd − yaw rate| (rad/s)
            "energy": energy,  # J: Σ |τ·q̇|·dt over the step's physics steps
            "time_s": self.time_s,
            "sensors": self.sensors(),
        }

    def sensors(self) -> dict[str, Any]:
        """The guard's IMU/encoder input now (see the module docstring); also `info["sensors"]`."""
        st, d = self.setup, self.data
        R, _ = self._root_frame()
        return {
            "gravity": (-R[2, :]).astype(np.float32),  # [3] R^T · (0, 0, -1)
            "base_height": float(d.qpos[2]),
            "stand_height": float(st.stand_height),
            "joint_pos": d.qpos[st.qpos_adr].astype(np.float32),  # [A] rad
            "joint_vel": d.qvel[st.qvel_adr].astype(np.float32),  # [A] rad/s
        }

    # ---- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        self._options_schedule = False
        if options.get("command_schedule") is not None:
            schedule, self._options_schedule = C.normalize_schedule(self.spec_, options["command_schedule"]), True
        elif options.get("command") is not None:
            schedule, self._options_schedule = [(0.0, C.make_command(self.spec_, options["command"]))], True
        elif self._user_schedule is not None:
            schedule = list(self._user_schedule)
        else:
            schedule = C.random_schedule(self.np_random, self.max_steps / CONTROL_HZ, self.stand_prob)
        st, d = self.setup, self.data
        mujoco.mj_resetData(self.model, d)
        d.qpos[:] = st.stand_qpos
        noise = self.np_random.uniform(-self.init_noise, self.init_noise, st.action_dim)
        d.qpos[st.qpos_adr] = np.clip(st.default_pose + noise, self._low, self._high)
        d.ctrl[:] = st.default_pose
        mujoco.mj_forward(self.model, d)
        self._reset_state(schedule)
        self._cam_yaw = self._root_frame()[1]
        return self._obs(), self._info(self.command, 0.0)

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        A = self.spec_.action_dim
        if a.shape != (A,):
            raise ObservationError("action", f"shape ({A},) joint targets in rad", f"shape {a.shape}")
        if not np.all(np.isfinite(a)):
            bad = np.flatnonzero(~np.isfinite(a)).tolist()
            raise ObservationError("action", "finite joint targets in rad", f"non-finite entries at indices {bad}")
        target = np.clip(a, self._low, self._high)  # [A] rad
        m, d, vadr = self.model, self.data, self.setup.qvel_adr
        d.ctrl[:] = target
        energy = 0.0
        for _ in range(SUBSTEPS):
            mujoco.mj_step(m, d)
            energy += float(np.abs(d.qfrc_actuator[vadr] * d.qvel[vadr]).sum()) * TIMESTEP
        self.last_action = target.astype(np.float32)
        self.steps += 1
        command = dict(self.command)
        while self._sched_pos < len(self.schedule) and self.schedule[self._sched_pos][0] <= self.time_s + 1e-9:
            self.command = dict(self.schedule[self._sched_pos][1])
            self._sched_pos += 1
        self._advance_phase()
        yaw = self._root_frame()[1]
        self._cam_yaw += CAM_YAW_SMOOTHING * math.remainder(yaw - self._cam_yaw, 2 * math.pi)
        info = self._info(command, energy)
        if not np.all(np.isfinite(d.qpos)):
            raise ObservationError("physics state", "finite qpos", "NaN/inf (simulation diverged)")
        terminated = info["fell"]
        truncated = self.steps >= self.max_steps and not terminated
        reward = 0.0 if terminated else math.exp(-info["tracking_error"])
        return self._obs(), reward, terminated, truncated, info

    # ---- rendering -----------------------------------------------------------------------------
    def _render(self, size: int) -> np.ndarray:
        if size not in self._renderers:
            from physai.sim.render import OffscreenRenderer

            self._renderers[size] = OffscreenRenderer(self.model, size, size)
        cam, h = self._camera, self.setup.stand_height
        cam.lookat[:] = (self.data.qpos[0], self.data.qpos[1], CAMERA["lookat_z"] * h)
        cam.distance = CAMERA["distance"] * h
        cam.elevation = CAMERA["elevation"]
        cam.azimuth = math.degrees(self._cam_yaw) + CAMERA["azimuth_offset"]
        return self._renderers[size].render(self.data, cam)

    def render_frame(self, size: int = 256) -> np.ndarray:
        """A [size, size, 3] uint8 frame from the follow camera (for videos; needs GL)."""
        return self._render(int(size))

    def render(self):
        return self.render_frame(self.render_size) if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()
