"""Fit a planner's value head from the policy's own roll-outs (`physai plan`).

The policy drives `episodes` episodes (seeds from `seed`, the recipe's env options and the family's
random instructions; by default without the guard, so that collisions and their cost are in the
data; its actions perturbed by Gaussian noise of the planner's candidate size, so that the data
shows what such deviations lead to), the runner scores each step with the family's rule-based reward, and every frame is encoded.
Targets are the discounted reward-to-go over `value_steps`. The head learns from two inputs per
frame: the encoder's tokens of frame t (target G_t) and the tokens the world model imagines for
frame t+H from frame t and the actions really taken (target G_{t+H}), the input the planner gives
it. The last quarter of the episodes is held out: the report gives the Pearson correlation of the
prediction with the real reward-to-go there, from real and from imagined tokens.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from physai.plan import Planner, PlannerConfig, TokenValue, reward_to_go
from physai.sim.family import family_for_env
from physai.data.collect import episode_arrays
from physai.sim.drivers import PolicyDriver
from physai.sim.rollout import Episode, run_episodes
from physai.sim.suite import Scenario
from physai.world import encode_frames, imagine_next_chunk


class NoisyDriver(PolicyDriver):
    """The policy's actions plus Gaussian noise of `noise` × each dimension's half-range, so the
    value head sees the consequences of actions like the planner's candidates."""

    def __init__(self, policy, embodiment: str, noise: float, seed: int):
        super().__init__(policy, embodiment)
        self.noise, self.rng = float(noise), np.random.default_rng(seed)

    def act(self, obs, slots):
        out = super().act(obs, slots)
        if self.noise <= 0:
            return out
        half = (self.spec.high - self.spec.low) / 2
        return [self.spec.clip_action(a + self.rng.normal(0.0, self.noise, a.shape) * half).astype(np.float32)
                for a in out]


def policy_rollouts(policy, env_id: str, options: dict, episodes: int, seed: int, seconds: float,
                    safety: bool = False, slots: int = 2, noise: float = 0.0) -> list[dict]:
    fam = family_for_env(env_id)
    emb = fam.embodiment_of(env_id)
    eps = [Episode(Scenario(env_id, seed + i, seconds, dict(options),
                            fam.random_commands(env_id, np.random.default_rng([seed + i, 23]), seconds)),
                   safety=safety, record=True, reward=fam.default_reward or None) for i in range(episodes)]
    return run_episodes(NoisyDriver(policy, emb, noise, seed), eps, slots=slots, workers=fam.spawnable and slots > 1)


def _features(policy, res: dict, emb: str, H: int, batch: int = 128) -> dict[str, np.ndarray]:
    """Real tokens of every frame and the tokens imagined one chunk later from it."""
    ep = episode_arrays(res, policy.specs[emb])
    real = encode_frames(policy, ep, emb, batch)["quantized"]
    nxt = imagine_next_chunk(policy, ep, emb, batch)
    imag = nxt.quantized[:, 0].float().cpu().numpy() if nxt is not None else np.zeros((0,) + real.shape[1:], np.float32)
    return {"real": real, "imagined": imag, "command": ep["command"]}


def fit_value(policy, env_id: str, options: dict, config: PlannerConfig, episodes: int = 16, seed: int = 300000,
              seconds: float = 30.0, safety: bool = False, steps: int = 1500, lr: float = 1e-3,
              log: Callable[[str], None] = lambda m: None) -> tuple[Planner, dict[str, Any]]:
    """Roll out, fit the value head, return (planner, report)."""
    emb = family_for_env(env_id).embodiment_of(env_id)
    H = policy.config.head.chunk_size
    policy.eval()
    log(f"{episodes} policy roll-outs on {env_id} (guard {'on' if safety else 'off'}), seeds {seed}+")
    runs = policy_rollouts(policy, env_id, options, episodes, seed, seconds, safety=safety, noise=config.noise)
    data = []
    for r in runs:
        f = _features(policy, r, emb, H)
        g = reward_to_go(np.asarray(r["step_rewards"]), config.value_steps, config.gamma)
        data.append((f, g))
    n_test = max(1, len(data) // 4)
    train, test = data[:-n_test], data[-n_test:]

    def stack(parts):
        xs, cs, ys = [], [], []
        for f, g in parts:
            xs += [f["real"], f["imagined"]]
            cs += [f["command"], f["command"][H:H + len(f["imagined"])]]
            ys += [g, g[H:H + len(f["imagined"])]]
        return (torch.as_tensor(np.concatenate(xs), dtype=torch.float32), torch.as_tensor(np.concatenate(cs), dtype=torch.float32),
                torch.as_tensor(np.concatenate(ys), dtype=torch.float32))

    x, c, y = stack(train)
    spec = policy.specs[emb]
    value = TokenValue(policy.config.n_readout, policy.bottleneck.fsq.dim, spec.command_dim, config.hidden)
    value.target_mean.fill_(float(y.mean()))
    value.target_std.fill_(float(y.std().clamp_min(1e-3)))
    opt = torch.optim.AdamW(value.parameters(), lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(config.seed)
    for step in range(steps):
        idx = torch.randint(0, len(y), (256,), generator=g)
        pred = value(x[idx], c[idx])
        loss = (((pred - y[idx]) / value.target_std) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    value.eval()
    report: dict[str, Any] = {"env": env_id, "episodes": episodes, "seed": seed, "safety": safety,
                              "train_frames": int(len(y)), "collisions": float(np.mean([r["metrics"].get("collision", 0) for r in runs]))}
    with torch.no_grad():
        for kind in ("real", "imagined"):
            ps, ts = [], []
            for f, gt in test:
                q = torch.as_tensor(f[kind])
                cm = torch.as_tensor(f["command"] if kind == "real" else f["command"][H:H + len(q)])
                ps.append(value(q, cm).numpy())
                ts.append(gt if kind == "real" else gt[H:H + len(q)])
            p, t = np.concatenate(ps), np.concatenate(ts)
            report[f"corr_{kind}"] = float(np.corrcoef(p, t)[0, 1]) if p.std() > 0 and t.std() > 0 else math.nan
            report[f"test_frames_{kind}"] = int(len(t))
    log(f"value head: correlation with the real reward-to-go on {n_test} held-out episodes: "
        f"real tokens {report['corr_real']:.3f}, imagined {report['corr_imagined']:.3f}")
    return Planner(policy, value, config), report
