"""The RL stage: a checkpoint in, a PPO-post-trained checkpoint out.

`rl_finetune` loads a policy, wraps one embodiment in an `ActorCritic`, and alternates roll-outs
through the parallel runner (training seeds from `PPOConfig.seed`, far from every evaluation seed;
the family's guard on unless `safety=False`; the reward model scored inside each env slot) with
PPO updates. Every iteration appends a record to `metrics.jsonl` (env steps, mean reward and each
term per episode, the family's episode metrics, the learner's losses) and atomically rewrites
`latest/`; the end writes `final/`, `rl_state.safetensors` (log-std and value head) and
`reward_curve.png`. With `expert_baseline` the family's expert plays the same first iteration's
seeds once, so the curve shows the expert's reward as a line.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from physai.errors import ConfigError
from physai.rl.ppo import PPO, ActorCritic, PPOConfig, RLDriver


def _episodes(env_id: str, seeds: list[int], cfg: PPOConfig, reward: str, weights: dict[str, float],
              options: dict[str, Any] | None = None):
    """One training episode per seed: the env's options plus the family's random instruction timeline
    (a function of the seed, so a group of roll-outs of one seed shares its instructions)."""
    from physai.sim.family import family_for_env
    from physai.sim.rollout import Episode
    from physai.sim.suite import Scenario

    fam, out = family_for_env(env_id), []
    for s in seeds:
        cmds = fam.random_commands(env_id, np.random.default_rng([s, 13]), cfg.seconds)
        sc = Scenario(env=env_id, seed=s, seconds=cfg.seconds, options=dict(options or {}), commands=cmds)
        out.append(Episode(scenario=sc, safety=cfg.safety, reward=reward, reward_weights=tuple(sorted(weights.items()))))
    return out


def _summary(results: list[dict[str, Any]]) -> dict[str, float]:
    keys = sorted({k for r in results for k in r.get("metrics", {})})
    out = {}
    for k in keys:
        vals = [float(r["metrics"][k]) for r in results if r["metrics"].get(k) is not None
                and np.isfinite(float(r["metrics"][k]))]
        if vals:
            out[k] = float(np.mean(vals))
    return out


def rl_finetune(checkpoint: str | Path, env_id: str, out: str | Path, cfg: PPOConfig = PPOConfig(),
                reward: str | None = None, weights: dict[str, float] | None = None, expert_baseline: bool = True,
                progress: bool = True, log: Callable[[str], None] | None = None, policy=None,
                options: dict[str, Any] | None = None) -> dict[str, Any]:
    """PPO-post-train `checkpoint` on `env_id` (with env `options`, e.g. traffic density); returns a
    summary (paths, env steps, first/last iteration records, the expert's reward)."""
    from physai.policy import Policy
    from physai.report import plot_reward_curves, write_json
    from physai.rl.reward import get_reward
    from physai.sim.family import family_for_env
    from physai.sim.rollout import ExpertDriver, run_episodes

    fam = family_for_env(env_id)
    emb = fam.embodiment_of(env_id)
    reward = reward or fam.default_reward
    if not reward:
        raise ConfigError(f"body family '{fam.name}' has no default reward model; pass reward=")
    weights = dict(weights or {})
    get_reward(reward, weights)  # an unknown model or term is an error now, not in a worker
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    policy = policy if policy is not None else Policy.from_pretrained(checkpoint)
    if policy.config.n_action_steps != 1 or policy.config.temporal_ensemble is not None:
        # RL trains the first action of each chunk and re-plans every step: the result must run that way
        if log is not None:
            log(f"n_action_steps {policy.config.n_action_steps} -> 1 (RL re-plans every control step)")
        policy.config = replace(policy.config, n_action_steps=1, temporal_ensemble=None)
    policy.eval()
    ac = ActorCritic(policy, emb, cfg.init_std)
    ppo = PPO(ac, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    (out / "rl_config.json").write_text(json.dumps({"checkpoint": str(checkpoint), "env": env_id, "reward": reward,
                                                    "weights": weights, "options": options or {}, "ppo": asdict(cfg)},
                                                   indent=2))
    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("")
    history: list[dict[str, Any]] = []
    expert_reward = None
    n_seeds = cfg.episodes // cfg.group_size if cfg.advantage == "group" else cfg.episodes
    if expert_baseline:
        seeds = [cfg.seed + i for i in range(n_seeds)]
        res = run_episodes(ExpertDriver(), _episodes(env_id, seeds, cfg, reward, weights, options), slots=cfg.slots,
                           workers=cfg.workers)
        expert_reward = _summary(res).get("reward")
    env_steps, t0 = 0, time.perf_counter()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    cols = [TextColumn("[bold]rl"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("reward {task.fields[r]:.1f}"), TimeElapsedColumn()]
    with Progress(*cols, disable=not progress) as prog:
        task = prog.add_task("rl", total=cfg.iterations, r=float("nan"))
        for it in range(cfg.iterations):
            base = cfg.seed + 1000 + it * n_seeds  # the expert baseline's seeds are not trained on
            seeds = [base + i for i in range(n_seeds)]
            if cfg.advantage == "group":
                seeds = [s for s in seeds for _ in range(cfg.group_size)]
            driver = RLDriver(ac, ppo.ref, gen)
            results: list[dict] = []

            def done(r, d=driver, rs=results):
                d.done[-1].seed = int(r["seed"])
                rs.append(r)

            ta = time.perf_counter()
            run_episodes(driver, _episodes(env_id, seeds, cfg, reward, weights, options), slots=cfg.slots, workers=cfg.workers,
                         on_done=done)
            t_roll = time.perf_counter() - ta
            stats = ppo.update(driver.done, generator=gen)
            env_steps += int(stats["samples"])
            rec = {"iteration": it + 1, "env_steps": env_steps, "wall_s": time.perf_counter() - t0,
                   "rollout_s": t_roll, **_summary(results), **stats}
            if expert_reward is not None:
                rec["expert_reward"] = expert_reward
            history.append(rec)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            policy.save_pretrained(out / "latest")
            prog.update(task, completed=it + 1, r=rec.get("reward", float("nan")))
            if log is not None:
                log(f"iteration {it + 1}: reward {rec.get('reward', float('nan')):.2f}, {env_steps} env steps")
    policy.save_pretrained(out / "final")
    from safetensors.torch import save_file

    save_file({"log_std": ac.log_std.detach().contiguous(),
               **{f"value.{k}": v.contiguous() for k, v in ac.value.state_dict().items()}}, str(out / "rl_state.safetensors"))
    plot = plot_reward_curves(history, out / "reward_curve.png", title=f"{env_id} ({reward})")
    summary = {"final": str(out / "final"), "env_steps": env_steps, "seconds": time.perf_counter() - t0,
               "first": history[0], "last": history[-1], "expert_reward": expert_reward, "plot": str(plot)}
    write_json(out / "rl_summary.json", summary)
    return summary
