"""Closed-loop evaluation: run agents (a physai policy, the expert, LeRobot baselines) on the
same scenarios (same seeds, same command changes) and collect the per-episode metrics of each
env family. Every agent acts through the same safety layer unless `safety=False`; a roll-out
video can be written per episode. Returns plain dicts; the CLI renders tables and JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
from rich.progress import Progress

from physai.embodiments import get_spec
from physai.embodiments.safety import make_safety
from physai.sim.suite import Scenario, embodiment_of
from physai.validate import obs_from_env


class Agent(Protocol):
    def reset(self) -> None: ...

    def act(self, obs: dict, env: Any) -> np.ndarray: ...


class PolicyAgent:
    """A physai Policy (or a LeRobot baseline wrapper) acting through `select_action`."""

    def __init__(self, policy, embodiment: str, lerobot: bool = False):
        self.policy, self.emb, self.lerobot = policy, embodiment, lerobot
        self.spec = policy.spec if lerobot else policy.specs[embodiment]
        if not lerobot:
            policy.eval().optimize_for_inference()

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs, env):
        o = obs_from_env(obs, self.spec)
        a = self.policy.select_action(o) if self.lerobot else self.policy.select_action(o, self.emb)
        return a.detach().cpu().numpy()


class ExpertAgent:
    def __init__(self, env_id: str):
        emb = embodiment_of(env_id)
        if emb == "car":
            from physai.sim.car.expert import CarExpert

            self.expert = CarExpert()
        else:
            from physai.sim.humanoid.expert import HumanoidExpert

            self.expert = HumanoidExpert(emb)
        self._env = None

    def reset(self) -> None:
        self._env = None

    def act(self, obs, env):
        if self._env is not env:
            self.expert.reset(env)
            self._env = env
        return self.expert.act(env)


def make_env(sc: Scenario, render_images: bool = True, render_mode: str | None = None):
    import gymnasium as gym

    import physai.sim

    physai.sim.register_envs()
    kw: dict[str, Any] = {}
    if sc.embodiment == "car":
        cfg = dict(sc.options)
        if sc.seconds is not None:
            cfg["duration"] = sc.seconds
        kw["config"] = cfg
    else:
        kw.update(sc.options)
        kw["render_images"] = render_images
        if sc.seconds is not None:
            kw["episode_seconds"] = sc.seconds
    if render_mode:
        kw["render_mode"] = render_mode
    return gym.make(sc.env, **kw)


def _run_episode_fn(embodiment: str) -> Callable:
    if embodiment == "car":
        from physai.sim.car.metrics import run_episode
    else:
        from physai.sim.humanoid.metrics import run_episode
    return run_episode


def run_scenario(agent: Agent, sc: Scenario, safety: bool = True, video: str | Path | None = None,
                 render_images: bool = True) -> dict[str, float]:
    """One episode of `agent` on `sc`; returns the env family's metrics (+ safety interventions)."""
    env = make_env(sc, render_images=render_images)
    spec = get_spec(sc.embodiment)
    guard = make_safety(spec) if safety else None
    dt = 1.0 / spec.control_hz
    pending = list(sc.commands)
    frames: list[np.ndarray] = []
    state = {"t": 0}
    agent.reset()
    if guard is not None:
        guard.reset()

    def act(obs, e):
        t = state["t"] * dt
        changed = False
        while pending and pending[0][0] <= t + 1e-9:
            e.unwrapped.set_command(pending.pop(0)[1])
            changed = True
        if changed:  # the observation's command must reflect the change the agent is asked to follow
            obs = {**obs, "command": e.unwrapped.command if hasattr(e.unwrapped, "command") else obs["command"]}
        a = np.asarray(agent.act(obs, e), dtype=np.float32)
        if guard is not None:
            a = guard.filter(a, e)
        state["t"] += 1
        if video is not None:
            from physai.sim.video import render_frame

            frames.append(render_frame(e, 192))
        return a

    try:
        m = _run_episode_fn(sc.embodiment)(env, act, seed=sc.seed)
    finally:
        env.close()
    m = dict(m)
    m["safety_interventions"] = float(guard.interventions if guard is not None else 0)
    if video is not None and frames:
        from physai.sim.video import write_mp4

        write_mp4(frames, video, fps=min(spec.control_hz, 25.0) if spec.name != "car" else spec.control_hz * 2)
    return m


def evaluate(agents: dict[str, Callable[[str], Agent]], scenarios: list[Scenario], safety: bool = True,
             video_dir: str | Path | None = None, show_progress: bool = True,
             render_images: bool = True) -> dict[str, dict[str, list[dict[str, float]]]]:
    """results[agent][env] = list of per-episode metric dicts (in scenario order)."""
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    total = len(agents) * len(scenarios)
    with Progress(disable=not show_progress) as prog:
        task = prog.add_task("closed-loop eval", total=total)
        for name, factory in agents.items():
            per_env: dict[str, list] = {}
            cache: dict[str, Agent] = {}
            for i, sc in enumerate(scenarios):
                agent = cache.setdefault(sc.env, factory(sc.env))
                video = None
                if video_dir is not None and i < 2:
                    Path(video_dir).mkdir(parents=True, exist_ok=True)
                    video = Path(video_dir) / f"{name}_{sc.env.split('/')[-1]}_seed{sc.seed}.mp4"
                prog.update(task, description=f"{name} {sc.env} seed {sc.seed}")
                per_env.setdefault(sc.env, []).append(run_scenario(agent, sc, safety, video, render_images))
                prog.advance(task)
            results[name] = per_env
    return results


def summarize(results: dict[str, dict[str, list[dict[str, float]]]]) -> list[dict[str, Any]]:
    """One row per (agent, env) with the mean of every metric and the episode count."""
    rows = []
    for agent, per_env in results.items():
        for env, eps in per_env.items():
            keys = sorted({k for e in eps for k in e})
            rows.append({"agent": agent, "env": env, "episodes": len(eps),
                         **{k: float(np.mean([e[k] for e in eps if k in e])) for k in keys}})
    return rows


def seeded_scenarios(env_id: str, episodes: int, seed: int, seconds: float | None = None) -> list[Scenario]:
    return [Scenario(env=env_id, seed=seed + i, seconds=seconds) for i in range(episodes)]
