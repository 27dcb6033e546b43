"""The roll-out runner: N environments in parallel, batched policy inference across them.

Collection, DAgger, closed-loop evaluation and RL all play episodes through `run_episodes`. Each
`Episode` names a scenario (env id, seed, length, options, command timeline) and what to bring
back: the expert's label at every visited state, the frames for a dataset, a video. Envs live in
`EnvSlot`s, in this process (`workers=0`) or one per worker process (`workers=N`, spawn); every
control step the runner gathers the observations of all slots that wait for an action, asks the
driver (`physai.sim.drivers`) for all of them in one batch, and steps the slots (worker processes step
in parallel).
Each episode is reset with its own seed (envs are cached per slot and reset), and the safety guard (`family.make_guard`)
sits between the driver and the env inside the slot, reading the env's documented
`info["sensors"]`, so the same seeds give the same episodes however many slots run them.
Results come back in episode order.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from physai.errors import ConfigError
from physai.sim.drivers import Driver, ExpertDriver, PolicyDriver, StepDriver  # noqa: F401  (re-exported)
from physai.sim.family import family_for_env
from physai.sim.suite import Scenario


@dataclass(frozen=True)
class Episode:
    """One episode to play and what to bring back from it."""

    scenario: Scenario  # env, seed, length, options, command timeline
    index: int = 0  # position in the caller's list (results are returned in this order)
    safety: bool = True  # put the family's guard between the driver and the env
    images: bool = True  # render camera images (humanoids can skip them when nothing looks)
    label: bool = False  # also compute the expert's action at every visited state (DAgger, collection)
    # bring back every frame (images, proprio, command, label, reward, task), the executed actions
    # (after the guard), the trace and, with a `reward`, each step's rule-based reward (`step_rewards`)
    record: bool = False
    action_noise: float = 0.0  # expert driving only: DART noise, fraction of each dimension's half-range
    noise_key: tuple[int, ...] = ()  # seeds the DART noise generator (collection passes (seed, episode))
    video: str | None = None  # write a real-time MP4 roll-out here
    video_size: int = 192
    video_label: str = ""  # drawn on every video frame (the agent's name), beside the time and command
    video_overlay: bool = True  # caption each frame (label, simulated time, command); small frames upscaled
    max_steps: int | None = None  # stop after this many steps (None = the env's episode length)
    score: bool = True  # compute the family's metrics, trace and instruction scores
    env_kwargs: dict | None = None  # exact gym.make kwargs (None: the family builds them from the scenario)
    # a `physai.rl.reward.REWARDS` model scored every step inside the slot (from the env's info, the
    # executed action and the guard's interventions): per-step rewards go to the driver's `feedback`,
    # episode totals (per term too) into the metrics as `reward` and `reward/<term>`
    reward: str | None = None
    reward_weights: tuple[tuple[str, float], ...] = ()  # term weight overrides


# ---- one env, one episode at a time ---------------------------------------------------------
class EnvSlot:
    """Holds envs (cached per settings), experts and guards, and plays one episode at a time."""

    def __init__(self, expert: Any = None):
        self._envs: dict[tuple, Any] = {}
        self._expert = expert  # used for every embodiment instead of the family's (in-process only)
        self._experts: dict[str, Any] = {}
        self.ep: Episode | None = None

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    def _env(self, ep: Episode):
        import gymnasium as gym

        sc = ep.scenario
        fam = family_for_env(sc.env)
        kw = ep.env_kwargs if ep.env_kwargs is not None else fam.env_kwargs(sc.env, sc.seconds, sc.options,
                                                                                  images=ep.images)
        key = (sc.env, repr(sorted(kw.items())))
        if key not in self._envs:
            if sc.env not in gym.registry:
                fam.register_envs()
            self._envs[key] = gym.make(sc.env, **kw)
        return self._envs[key]

    def start(self, ep: Episode) -> dict:
        """Reset for `ep`; returns the first observation (when the expert drives, call `step(None)`)."""
        from physai.embodiments import get_spec

        sc = ep.scenario
        self.ep, self.fam = ep, family_for_env(sc.env)
        self.emb = self.fam.embodiment_of(sc.env)
        self.spec = get_spec(self.emb)
        self.env = self._env(ep)
        self.obs, info = self.env.reset(seed=sc.seed)
        self.pending = deque(sc.commands)
        self.t = 0
        self.dt = 1.0 / self.spec.control_hz
        self.metrics = self.fam.make_metrics(self.env) if ep.score else None
        if self.metrics is not None:
            self.metrics.reset(info)
        self.trace: list[dict] = []
        self.frames: list[tuple] = []
        self.actions: list[np.ndarray] = []  # executed (after the guard), with `record`
        self.video: list[np.ndarray] = []
        self.guard = self.fam.make_guard(self.spec) if ep.safety else None
        self.guard_times: dict[str, list[float]] = {}  # rule -> simulated times (s) of the steps it acted
        if self.guard is not None:
            self.guard.reset(info.get("sensors"))
        self.sensors = info.get("sensors")
        self.reward_model, self.reward_sum, self.reward_terms, self.step_rewards = None, 0.0, {}, []
        if ep.reward is not None:
            from physai.rl.reward import get_reward

            self.reward_model = get_reward(ep.reward, dict(ep.reward_weights))
            self.reward_model.reset(info)
            self.reward_terms = dict.fromkeys(self.reward_model.term_names, 0.0)
        self.feedback = None
        self.expert = None
        if ep.label or ep.record or ep.action_noise > 0 or self.driver_in_slot:
            if self._expert is not None:
                self.expert = self._expert
            elif self.emb not in self._experts:
                self.expert = self._experts[self.emb] = self.fam.make_expert(self.emb)
            else:
                self.expert = self._experts[self.emb]
            self.expert.reset(self.env)
        self.noise_rng = np.random.default_rng(list(ep.noise_key) or [sc.seed, 7])
        # one frame every `video_stride` control steps, played at the rate they were captured in
        # simulated time (real time), whatever rate the family asked for
        self.video_stride = max(1, int(round(self.spec.control_hz / self.fam.video_fps(self.spec))))
        self.video_fps = self.spec.control_hz / self.video_stride
        self._apply_commands()
        return self.obs

    driver_in_slot = False

    def _apply_commands(self) -> None:
        """Command changes due at the current time, applied before the agent sees the observation."""
        now, changed = self.t * self.dt, False
        while self.pending and self.pending[0][0] <= now + 1e-9:
            self.env.unwrapped.set_command(self.pending.popleft()[1])
            changed = True
        if changed:
            self.obs = {**self.obs, "command": getattr(self.env.unwrapped, "command", self.obs["command"])}

    def step(self, action: np.ndarray | None) -> tuple[dict | None, dict | None, dict | None]:
        """Play one control step with `action` (None: the expert's). Returns (next obs, None, feedback)
        while the episode runs and (None, episode result, feedback) when it ended; feedback is the
        step's reward (see `Driver`), None without an episode `reward`."""
        ep, spec = self.ep, self.spec
        label = np.asarray(self.expert.act(self.env), dtype=np.float32) if self.expert is not None else None
        if action is None:
            act = label
            if ep.action_noise > 0:
                half = (spec.high - spec.low) / 2
                act = spec.clip_action(label + self.noise_rng.normal(0.0, ep.action_noise, label.shape) * half)
        else:
            act = np.asarray(action, dtype=np.float32)
        counts0 = dict(self.guard.counts) if self.guard is not None else {}
        if self.guard is not None:
            act = self.guard.filter(act, self.sensors)
            for k, v in self.guard.counts.items():
                if v > counts0.get(k, 0):
                    self.guard_times.setdefault(k, []).append(round(self.t * self.dt, 3))
        if ep.video is not None and self.t % self.video_stride == 0:
            self.video.append(self._video_frame())
        frame = self._frame(label) if ep.record else None  # the observation this step acted on
        obs, reward, term, trunc, info = self.env.step(act)
        ended = term or trunc or (ep.max_steps is not None and self.t + 1 >= ep.max_steps)
        if self.reward_model is not None:
            fired = {k: v - counts0.get(k, 0) for k, v in self.guard.counts.items()} if self.guard is not None else {}
            r, parts = self.reward_model.step(info, act, self.dt, fired)
            self.reward_sum += r
            self.step_rewards.append(float(r))
            for k, v in parts.items():
                self.reward_terms[k] += v
            self.feedback = {"reward": r, "terms": parts, "done": bool(ended), "terminated": bool(term),
                             "final_obs": obs if ended and not term else None}
        if self.metrics is not None:
            self.metrics.update(obs, act, info, reward)
            self.trace.append(self.fam.trace_step(info))
        if frame is not None:
            self.actions.append(np.array(act, np.float32))
            self.frames.append((*frame, float(reward), self.fam.task_string(self.spec, self.obs["command"])))
        self.obs, self.sensors, self.t = obs, info.get("sensors"), self.t + 1
        if term or trunc or (ep.max_steps is not None and self.t >= ep.max_steps):
            return None, self._finish(), self.feedback
        self._apply_commands()
        return self.obs, None, self.feedback

    def _video_frame(self) -> np.ndarray:
        """The env's video frame now (before this step's action), captioned unless `video_overlay` is off."""
        from physai.sim.video import annotate, render_frame

        frame = render_frame(self.env, self.ep.video_size)
        if not self.ep.video_overlay:
            return frame
        cmd = self.obs.get("command") if isinstance(self.obs, dict) else None
        return annotate(frame, [self.ep.video_label, f"t {self.t * self.dt:.2f} s",
                                self.fam.task_string(self.spec, cmd) if cmd is not None else ""])

    def _frame(self, label) -> tuple:
        """(images, proprio, encoded command, label) of the current observation, copied now: an env may
        reuse its observation buffers."""
        from physai.data.collect import camera_images

        return ({k: v.copy() for k, v in camera_images(self.obs, self.spec).items()},
                np.array(self.obs["proprio"], np.float32), self.spec.encode_command(self.obs["command"]), label)

    def _finish(self) -> dict:
        ep, sc = self.ep, self.ep.scenario
        counts = dict(self.guard.counts) if self.guard is not None else {}
        res: dict[str, Any] = {"index": ep.index, "env": sc.env, "seed": sc.seed, "scenario": sc.name,
                               "commands": [{"at": at, **cmd} for at, cmd in sc.commands], "steps": self.t,
                               "safety": {k: int(v) for k, v in counts.items()},
                               "safety_times": {k: list(v) for k, v in self.guard_times.items()}}
        if self.metrics is not None:
            m = dict(self.metrics.result())
            m.update(self.fam.trace_metrics(self.trace, self.dt))
            m["safety_interventions"] = float(sum(counts.values()))
            m.update({f"guard_{k}": float(v) for k, v in counts.items()})  # per rule, averaged by summaries
            seconds = sc.seconds if sc.seconds is not None else self.fam.episode_seconds(self.env)
            seconds = seconds if seconds is not None else self.t * self.dt
            if self.reward_model is not None:
                m["reward"] = self.reward_sum
                m.update({f"reward/{k}": v for k, v in self.reward_terms.items()})
            res["metrics"] = m
            res["instructions"] = self.fam.score_instructions(sc.commands, self.trace, seconds)
        if ep.record:
            res["frames"], res["actions"] = self.frames, self.actions
            if self.metrics is not None:
                res["trace"] = list(self.trace)  # the family's per-step trace, entry t after step t
            if self.reward_model is not None:
                res["step_rewards"] = list(self.step_rewards)  # the rule-based reward of step t
        if ep.video is not None and self.video:
            from physai.sim.video import write_mp4

            res["video"] = str(write_mp4(self.video, ep.video, fps=self.video_fps))
        self.ep = None
        return res


# ---- worker processes -------------------------------------------------------------------------
def _worker(conn) -> None:
    import importlib
    import traceback

    try:
        import torch

        torch.set_num_threads(1)  # a worker steps one env; the driver's batched inference has the cores
    except ImportError:
        pass
    slot = EnvSlot()
    try:
        while True:
            cmd, arg = conn.recv()
            if cmd == "close":
                break
            try:
                if cmd == "start":
                    ep, in_slot, module = arg
                    importlib.import_module(module)  # registers the episode's body family here
                    slot.driver_in_slot = in_slot
                    out = slot.start(ep)
                else:
                    out = slot.step(arg)
                conn.send(("ok", out))
            except Exception as e:  # sent back with its type; the runner re-raises it
                tb = traceback.format_exc()
                try:
                    conn.send(("error", (e, tb)))
                except Exception:  # an exception that does not pickle
                    conn.send(("error", (RuntimeError(f"{type(e).__name__}: {e}"), tb)))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass  # the runner went away or was interrupted: stop
    finally:
        slot.close()


class _ProcSlot:
    """An `EnvSlot` in a worker process (same methods, sent through a pipe)."""

    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.episode = ""

    def send(self, cmd: str, arg: Any) -> None:
        if cmd == "start":
            self.episode = f"{arg[0].scenario.env} seed {arg[0].scenario.seed}"
        self.conn.send((cmd, arg))

    def recv(self) -> Any:
        try:
            status, out = self.conn.recv()
        except EOFError:
            from physai.errors import PhysaiError

            raise PhysaiError(f"roll-out worker for {self.episode} died (exit code {self.proc.exitcode})") from None
        if status == "error":
            err, tb = out
            if hasattr(err, "add_note"):
                err.add_note(f"in the roll-out worker for {self.episode}:\n{tb}")
            raise err
        return out

    def close(self) -> None:
        try:
            self.conn.send(("close", None))
        except (BrokenPipeError, OSError):
            pass

    def join(self) -> None:
        self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join()
        self.conn.close()


class _LocalSlot:
    """An `EnvSlot` in this process, behind the same send/recv calls."""

    def __init__(self, expert: Any = None):
        self.slot, self._out = EnvSlot(expert), None

    def send(self, cmd, arg):
        if cmd == "start":
            self.slot.driver_in_slot = arg[1]
            self._out = self.slot.start(arg[0])
        else:
            self._out = self.slot.step(arg)

    def recv(self):
        return self._out

    def close(self):
        self.slot.close()

    def join(self):
        pass


def run_episodes(driver: Driver, episodes: Sequence[Episode], slots: int = 1, workers: bool = False,
                 on_done: Callable[[dict], None] | None = None, progress: Any = None,
                 expert: Any = None) -> list[dict]:
    """Play `episodes` with `driver` in `slots` envs at once; results in the episodes' order.

    `workers=True` puts each slot's env in its own process when every episode's family is
    `spawnable` (built-in families are; others play in this process). `on_done(result)` is called as each episode ends (in the order
    they end); `progress` is a callable `advance()` per finished episode; `expert` replaces the
    families' experts (in-process slots only)."""
    if workers and expert is not None:
        raise ConfigError("run_episodes: a custom expert cannot be sent to worker processes")
    eps = [replace(ep, index=i) if ep.index != i else ep for i, ep in enumerate(episodes)]
    if not eps:
        return []
    n = max(1, min(int(slots), len(eps), driver.max_slots or len(eps)))
    workers = workers and all(family_for_env(ep.scenario.env).spawnable for ep in eps)
    if expert is not None and n > 1:
        raise ConfigError("run_episodes: a custom expert object serves one env at a time (slots=1)")
    ctx = mp.get_context("spawn") if workers else None
    pool: list[Any] = []
    todo = deque(eps)
    results: dict[int, dict] = {}
    waiting: dict[int, dict | None] = {}  # slot -> obs awaiting an action (None: the expert drives)
    running: dict[int, Episode] = {}

    def start(k: int) -> None:
        while todo:
            ep = todo.popleft()
            running[k] = ep
            pool[k].send("start", (ep, driver.in_slot, type(family_for_env(ep.scenario.env)).__module__))
            driver.reset(k)
            return
        running.pop(k, None)

    try:
        for _ in range(n):
            pool.append(_ProcSlot(ctx) if workers else _LocalSlot(expert))
        for k in range(n):
            start(k)
        for k in list(running):
            waiting[k] = pool[k].recv()
        while running:
            ks = [k for k in running]
            if driver.in_slot:
                actions = [None] * len(ks)
            else:
                actions = driver.act([waiting[k] for k in ks], ks)
            for k, a in zip(ks, actions):
                pool[k].send("step", a)
            for k in ks:
                obs, done, fb = pool[k].recv()
                if fb is not None and hasattr(driver, "feedback"):
                    driver.feedback(k, fb)
                if done is None:
                    waiting[k] = obs
                    continue
                stats = getattr(driver, "episode_stats", None)
                if stats is not None and "metrics" in done:
                    done["metrics"].update(stats(k))
                results[done["index"]] = done
                if on_done is not None:
                    on_done(done)
                if progress is not None:
                    progress()
                start(k)
                if k in running:
                    waiting[k] = pool[k].recv()
    finally:  # every worker is told to stop, then joined; one failing cannot skip the others
        for p in pool:
            try:
                p.close()
            except Exception:
                pass
        for p in pool:
            try:
                p.join()
            except BaseException:
                pass
    return [results[i] for i in range(len(eps))]
