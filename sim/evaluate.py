"""Closed-loop evaluation: run agents (a physai policy, the expert, LeRobot baselines) on the
same scenarios (same seeds, same command timelines) through the roll-out runner, with every
agent acting through the same safety guard unless `safety=False`.

`evaluate` returns, per agent, one record per scenario (in scenario order) with the env, seed,
scenario index and name, the command timeline, the family's episode metrics, the guard's
interventions per rule and the per-instruction scores; where an "expert" agent ran on the same
scenarios, each family adds the scores that compare against it (the car's driving score).
`summarize` makes one row per (agent, env). Plain data only: the CLI renders tables and JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.progress import Progress

from physai.sim.family import family_for_env
from physai.sim.drivers import ExpertDriver, PolicyDriver, StepDriver
from physai.sim.rollout import Episode, run_episodes
from physai.sim.suite import Scenario

REFERENCE = "expert"  # the agent other agents' relative scores are measured against


def PolicyAgent(policy, embodiment: str, lerobot: bool = False):
    """A driver for a physai Policy (batched across envs) or a LeRobot baseline (one env at a time)."""
    if lerobot:
        return StepDriver(policy.select_action, policy.reset, spec=policy.spec)
    return PolicyDriver(policy, embodiment)


ExpertAgent = ExpertDriver


def evaluate(agents: dict[str, Callable[[str], Any]], scenarios: list[Scenario], safety: bool = True,
             video_dir: str | Path | None = None, show_progress: bool = True, render_images: bool = True,
             slots: int = 4, workers: bool = False, videos_per_env: int | None = None,
             rewards: bool = True) -> dict[str, list[dict[str, Any]]]:
    """results[agent] = one record per scenario, in scenario order. `agents` maps a name to a
    factory `env_id -> driver`; `slots` envs run at once (in worker processes with `workers`).
    `video_dir`: one real-time MP4 per (agent, scenario), captioned with the agent, the simulated
    time and the command (`videos_per_env` caps it to the first N scenarios of each env; None = all).
    `rewards`: every episode is also scored by its family's default reward model (metrics `reward`,
    `reward/<term>`), so a policy's rule-based reward sits beside the expert's on the same scenarios."""
    results: dict[str, list[dict[str, Any]]] = {}
    by_env: dict[str, list[int]] = {}
    for i, sc in enumerate(scenarios):
        by_env.setdefault(sc.env, []).append(i)
    with Progress(disable=not show_progress) as prog:
        task = prog.add_task("closed-loop eval", total=len(agents) * len(scenarios))
        for name, factory in agents.items():
            out: list[dict[str, Any] | None] = [None] * len(scenarios)
            for env_id, idx in by_env.items():
                prog.update(task, description=f"{name} {env_id}")
                eps = []
                reward = (family_for_env(env_id).default_reward or None) if rewards else None
                for j, i in enumerate(idx):
                    video = None
                    if video_dir is not None and (videos_per_env is None or j < videos_per_env):
                        video = str(Path(video_dir) / _video_name(name, env_id, scenarios[i], i))
                    eps.append(Episode(scenarios[i], safety=safety, images=render_images, video=video,
                                       video_label=name, reward=reward))
                recs = run_episodes(factory(env_id), eps, slots=slots, workers=workers,
                                    progress=lambda: prog.advance(task))
                for i, rec in zip(idx, recs):
                    out[i] = {**rec, "index": i}
            results[name] = out  # type: ignore[assignment]
    _add_relative_scores(results)
    return results


def _video_name(agent: str, env_id: str, sc: Scenario, index: int) -> str:
    """`<agent>_<env>_<index>_seed<seed>.mp4`, safe as a file name: scenarios may share a seed (a suite
    varies the commands or options), so the scenario's index keeps their videos apart."""
    safe = "".join(c if c.isalnum() or c in "-+." else "-" for c in agent)
    return f"{safe}_{env_id.split('/')[-1]}_{index:03d}_seed{sc.seed}.mp4"


def _add_relative_scores(results: dict[str, list[dict[str, Any]]]) -> None:
    ref = results.get(REFERENCE)
    for name, recs in results.items():
        for j, rec in enumerate(recs):
            other = ref[j]["metrics"] if ref is not None else None
            rec["metrics"].update(family_for_env(rec["env"]).episode_summary(rec["metrics"], other))


def summarize(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (agent, env) with the mean of every metric (NaN-free) and the episode count."""
    rows = []
    for agent, recs in results.items():
        envs = list(dict.fromkeys(r["env"] for r in recs))
        for env in envs:
            eps = [r["metrics"] for r in recs if r["env"] == env]
            keys = list(dict.fromkeys(k for e in eps for k in e))
            row: dict[str, Any] = {"agent": agent, "env": env, "family": family_for_env(env).name, "episodes": len(eps)}
            for k in keys:
                vals = [float(e[k]) for e in eps if k in e and e[k] is not None and np.isfinite(e[k])]
                row[k] = float(np.mean(vals)) if vals else None
            rows.append(row)
    return rows


def seeded_scenarios(env_id: str, episodes: int, seed: int, seconds: float | None = None) -> list[Scenario]:
    family_for_env(env_id)  # an unknown id is an error now, not when the episode starts
    return [Scenario(env=env_id, seed=seed + i, seconds=seconds) for i in range(episodes)]
