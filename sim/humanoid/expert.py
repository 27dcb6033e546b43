"""`HumanoidExpert`: holosoma's pretrained ONNX walking policy, driven from a `HumanoidWalkEnv` state.

The policy's input `actor_obs` [1, 100] is holosoma's observation terms concatenated in
alphabetical order of their names, each times its config scale: `actions` (last raw action, 29),
`base_ang_vel` (3), `command_ang_vel` (1), `command_lin_vel` (2), `cos_phase` (2), `dof_pos` minus
the default pose (29), `dof_vel` (29), `projected_gravity` (3), `sin_phase` (2). Its output is a raw
action [29]; the joint target is `default + action_scale · action`. Everything is rebuilt from the
env's proprio vector and command (the env keeps phase and last target as state), so the expert
can label any state (DAgger). The last raw action is recovered from the last target; when that
target is the one this expert produced, its unclipped raw action is used, exactly as holosoma's
loop does. Policy joints the robot lacks (Booster T1's wrists and hands in the Menagerie model)
are fed their default pose and zero velocity, and their outputs are dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from physai.errors import ObservationError
from physai.sim.humanoid.robots import robot_setup


class HumanoidExpert:
    def __init__(self, robot: str):
        import onnxruntime as ort

        self.robot = robot
        self.setup = st = robot_setup(robot)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(st.onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._n = len(st.policy_names)  # 29 policy dofs
        A = st.action_dim
        # proprio layout (spec): q [A], dq [A], ang_vel [3], gravity [3], sin [2], cos [2], last target [A]
        self._sl = {
            "q": slice(0, A),
            "dq": slice(A, 2 * A),
            "ang": slice(2 * A, 2 * A + 3),
            "grav": slice(2 * A + 3, 2 * A + 6),
            "sin": slice(2 * A + 6, 2 * A + 8),
            "cos": slice(2 * A + 8, 2 * A + 10),
            "last": slice(2 * A + 10, 3 * A + 10),
        }
        self._P = 3 * A + 10
        lo, hi = (np.asarray(x, np.float64) for x in (self._spec().low, self._spec().high))
        self._low, self._high = lo, hi
        self.reset()

    def _spec(self) -> Any:
        from physai.embodiments import get_spec

        return get_spec(self.robot)

    def reset(self, env: Any = None) -> None:
        """Forget the remembered raw action (call at episode start)."""
        self._memo: tuple[np.ndarray, np.ndarray] | None = None  # (target it produced [A], raw action [29])

    def _raw_last(self, last_target: np.ndarray) -> np.ndarray:
        if self._memo is not None and np.allclose(self._memo[0], last_target, atol=1e-5):
            return self._memo[1]
        st = self.setup
        raw = np.zeros(self._n)  # [29]; joints the robot lacks: 0 (= default pose)
        raw[st.policy_index] = (last_target - st.default_pose) / st.action_scale
        return raw

    def policy_obs(self, proprio: np.ndarray, command: dict[str, Any]) -> np.ndarray:
        """The ONNX input [1, 100] for one state."""
        st, sl = self.setup, self._sl
        p = np.asarray(proprio, dtype=np.float64).reshape(-1)
        if p.shape[0] != self._P or not np.all(np.isfinite(p)):
            raise ObservationError("proprio", f"[{self._P}] finite floats", f"shape {p.shape} / non-finite")
        cmd = {k: float(np.asarray(command[k]).reshape(-1)[0]) for k in ("vx", "vy", "yaw_rate")}
        dof_pos = np.zeros(self._n)
        dof_pos[st.policy_index] = p[sl["q"]] - st.default_pose
        dof_vel = np.zeros(self._n)
        dof_vel[st.policy_index] = p[sl["dq"]]
        terms = {
            "actions": self._raw_last(p[sl["last"]]),
            "base_ang_vel": p[sl["ang"]],
            "command_ang_vel": np.array([cmd["yaw_rate"]]),
            "command_lin_vel": np.array([cmd["vx"], cmd["vy"]]),
            "cos_phase": p[sl["cos"]],
            "dof_pos": dof_pos,
            "dof_vel": dof_vel,
            "projected_gravity": p[sl["grav"]],
            "sin_phase": p[sl["sin"]],
        }
        obs = np.concatenate([terms[k] * st.obs_scales[k] for k in st.obs_terms])
        return obs.astype(np.float32)[None]  # [1, 100]

    def act_from_obs(self, proprio: np.ndarray, command: dict[str, Any]) -> np.ndarray:
        """Joint targets [A] float32 in rad (spec units, within bounds) for one state."""
        st = self.setup
        raw = self._session.run(None, {self._input: self.policy_obs(proprio, command)})[0][0]  # [29]
        raw = np.clip(raw.astype(np.float64), -100.0, 100.0)  # as holosoma's rl_inference
        target = np.clip(st.default_pose + st.action_scale * raw[st.policy_index], self._low, self._high)  # [A]
        target32 = target.astype(np.float32)
        self._memo = (target32.astype(np.float64), raw)
        return target32

    def act(self, env: Any) -> np.ndarray:
        """Joint targets [A] for the env's current state (env or any wrapper of a HumanoidWalkEnv)."""
        e = env.unwrapped
        return self.act_from_obs(e.proprio(), e.command)

    __call__ = act
