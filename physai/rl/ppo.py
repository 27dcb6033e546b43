"""PPO on a physai `Policy`: a Gaussian around the head's action, a value head, GAE, clipping, an
entropy bonus and a KL or behaviour-cloning anchor to the starting policy.

`ActorCritic` wraps one embodiment of a policy: the action the head predicts for the current step
(normalized units, the first of its chunk) is the mean of a Gaussian whose per-dimension std is
learned (`log_std`, the exploration noise a deterministic `l1` head lacks); a small value MLP reads
the detached physical tokens, proprio and command. Only the head (and, with `train_trunk`, the
stem, trunk and bottleneck) is updated. `RLDriver` plays it in the roll-out runner (batched over env
slots, the guard inside each slot) and stores one trajectory per episode with the slot's per-step
rewards. `PPO.update` computes advantages - GAE with the value head, or group-relative (several
roll-outs of the same seed, each episode's return minus its group's mean, no value net, as GRPO) -
and runs clipped-surrogate epochs. The anchor (`anchor="kl"`: KL(π‖π_ref) of the two Gaussians at
the current std; `"bc"`: squared distance of the means) keeps the policy near where imitation left
it while rewards are sparse or noisy.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from physai.errors import ConfigError


@dataclass(frozen=True)
class PPOConfig:
    iterations: int = 20  # roll-out + update rounds
    episodes: int = 8  # episodes per iteration (with advantage="group": groups x group_size)
    seconds: float | None = None  # episode length (None: the scenario's / env's)
    slots: int = 2  # envs played at once by the roll-out runner
    workers: bool = True  # envs in worker processes (built-in families)
    safety: bool = True  # the family's guard filters every action (and its interventions are rewarded)
    # training seeds start here: apart from recordings (0-99), eval (1000-1099), suites (5000+), DAgger (100000+)
    seed: int = 200_000
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2  # PPO ratio clip
    epochs: int = 4  # passes over each iteration's data
    minibatch: int = 256  # samples per gradient step
    lr: float = 3e-5  # for the head (and trunk); the value head and log_std use value_lr
    value_lr: float = 1e-3
    value_coef: float = 0.5
    entropy_coef: float = 0.0  # bonus on the Gaussian's entropy (only moves log_std)
    anchor: str = "kl"  # "kl" | "bc" | "none": pull toward the starting policy
    anchor_coef: float = 0.05
    init_std: float = 0.1  # initial exploration std, in normalized action units (actions span [-1, 1])
    max_grad_norm: float = 1.0
    # stop an update's epochs once the mean approximate KL(old || new) of a minibatch passes 1.5x this
    # (None: always run every epoch), the usual guard against one update moving the policy too far
    target_kl: float | None = 0.05
    train_trunk: bool = False  # also update stem, trunk and bottleneck (default: the head only)
    advantage: str = "gae"  # "gae" (value head) | "group" (group-relative, no value net)
    group_size: int = 4  # with advantage="group": roll-outs per seed

    def __post_init__(self):
        for k in ("iterations", "episodes", "slots", "epochs", "minibatch", "group_size"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"rl.{k} must be an integer >= 1, got {v!r}")
        for k in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"rl.{k} must be in [0, 1], got {getattr(self, k)!r}")
        for k in ("clip", "lr", "value_lr", "init_std"):
            if not (math.isfinite(getattr(self, k)) and getattr(self, k) > 0):
                raise ConfigError(f"rl.{k} must be a finite number > 0, got {getattr(self, k)!r}")
        for k in ("value_coef", "entropy_coef", "anchor_coef", "max_grad_norm"):
            if not (math.isfinite(getattr(self, k)) and getattr(self, k) >= 0):
                raise ConfigError(f"rl.{k} must be a finite number >= 0, got {getattr(self, k)!r}")
        if self.anchor not in ("kl", "bc", "none"):
            raise ConfigError(f"rl.anchor must be 'kl', 'bc' or 'none', got {self.anchor!r}")
        if self.advantage not in ("gae", "group"):
            raise ConfigError(f"rl.advantage must be 'gae' or 'group', got {self.advantage!r}")
        if self.advantage == "group" and (self.episodes % self.group_size or self.group_size < 2):
            raise ConfigError(f"rl.episodes ({self.episodes}) must be a multiple of rl.group_size "
                              f"({self.group_size} >= 2) with advantage='group'")
        if self.target_kl is not None and not (math.isfinite(self.target_kl) and self.target_kl > 0):
            raise ConfigError(f"rl.target_kl must be a finite number > 0 or None, got {self.target_kl!r}")
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ConfigError(f"rl.seconds must be a finite number > 0, got {self.seconds!r}")


class ActorCritic(nn.Module):
    """One embodiment of a Policy as a Gaussian actor (mean = the head's next action) + a critic."""

    def __init__(self, policy, embodiment: str, init_std: float = 0.1, hidden: int = 128):
        super().__init__()
        if embodiment not in policy.specs:
            raise ConfigError(f"the policy has no embodiment '{embodiment}'; it has {sorted(policy.specs)}")
        if policy.config.stem.n_obs_steps != 1:
            raise ConfigError("RL supports policies with stem.n_obs_steps=1")
        self.policy, self.emb = policy, embodiment
        self.spec = policy.specs[embodiment]
        A, W = self.spec.action_dim, policy.config.trunk.width
        self.log_std = nn.Parameter(torch.full((A,), math.log(init_std)))
        d_in = W + max(self.spec.proprio_dim, 1) + self.spec.command_dim
        self.value = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                   nn.Linear(hidden, 1))

    def forward(self, o: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Canonical obs -> (mean [B, A] normalized, value [B])."""
        p, e = self.policy, self.emb
        feats = p.encode(p._norm_obs(o, e), e)
        mean = p.heads[e].sample_actions(feats)[:, 0]  # [B, A] the step the policy would execute now
        v_in = torch.cat([feats["tokens"].mean(1), feats["proprio"], feats["command"]], dim=-1).detach()
        return mean, self.value(v_in).squeeze(-1)

    def std(self) -> torch.Tensor:
        return self.log_std.clamp(-5.0, 1.0).exp()

    def log_prob(self, mean: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Diagonal Gaussian log-density of normalized actions a [B, A] -> [B]."""
        ls = self.log_std.clamp(-5.0, 1.0)
        return (-0.5 * ((a - mean) / ls.exp()) ** 2 - ls - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (self.log_std.clamp(-5.0, 1.0) + 0.5 * math.log(2 * math.pi * math.e)).sum()

    def to_physical(self, a_norm: torch.Tensor, o: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.policy._from_output(a_norm[:, None], o, self.emb)[:, 0]

    def actor_parameters(self, train_trunk: bool) -> list[nn.Parameter]:
        p, e = self.policy, self.emb
        mods = [p.heads[e]] + ([p.stems[e], p.trunk, p.bottleneck] if train_trunk else [])
        return [q for m in mods for q in m.parameters()]


@dataclass
class Trajectory:
    """One episode as the learner sees it (normalized actions, per-step rewards)."""

    obs: list[dict[str, torch.Tensor]]
    actions: list[torch.Tensor]  # [A] normalized, as sampled (before bounds and guard)
    logp: list[float]
    values: list[float]
    ref_mean: list[torch.Tensor]  # [A] the starting policy's mean on the same observation
    rewards: list[float]
    terminated: bool = False
    bootstrap: float = 0.0  # value of the observation after a truncated episode's last step
    seed: int = 0

    def __len__(self) -> int:
        return len(self.rewards)


class RLDriver:
    """A `sim.rollout` driver that samples from the actor and records trajectories per slot."""

    in_slot, max_slots = False, None

    def __init__(self, ac: ActorCritic, ref: ActorCritic | None, generator: torch.Generator):
        from physai.validate import Substitutions

        self.ac, self.ref, self.g = ac, ref, generator
        self._open: dict[int, Trajectory] = {}
        self.done: list[Trajectory] = []
        self._subs = Substitutions(f"RL[{ac.emb}]")

    def reset(self, slot: int) -> None:
        self._open[slot] = Trajectory([], [], [], [], [], [])

    def _canonical(self, obs: list[dict]) -> dict[str, torch.Tensor]:
        from physai.validate import obs_from_env, prepare_observation

        batch = [obs_from_env(o, self.ac.spec) for o in obs]
        stacked = {k: np.concatenate([b[k][None] for b in batch]) for k in ("image", "proprio", "command")}
        o, _ = prepare_observation(stacked, self.ac.spec, self.ac.policy.device, 1)
        return o

    @torch.no_grad()
    def act(self, obs: list[dict], slots: list[int]) -> list[np.ndarray]:
        o = self._canonical(obs)
        mean, value = self.ac(o)
        ref = self.ref(o)[0] if self.ref is not None else mean
        std = self.ac.std()
        a = mean + std * torch.randn(mean.shape, generator=self.g, device=mean.device)
        logp = self.ac.log_prob(mean, a)
        phys = self._subs(self.ac.to_physical(a, o), self.ac.spec)
        for j, s in enumerate(slots):
            tr = self._open[s]
            tr.obs.append({k: v[j:j + 1].cpu() for k, v in o.items()})
            tr.actions.append(a[j].cpu())
            tr.logp.append(float(logp[j]))
            tr.values.append(float(value[j]))
            tr.ref_mean.append(ref[j].cpu())
        return [x.cpu().numpy().astype(np.float32) for x in phys]

    @torch.no_grad()
    def feedback(self, slot: int, fb: dict[str, Any]) -> None:
        tr = self._open[slot]
        tr.rewards.append(float(fb["reward"]))
        if fb["done"]:
            tr.terminated = bool(fb["terminated"])
            if fb.get("final_obs") is not None and not tr.terminated:
                tr.bootstrap = float(self.ac(self._canonical([fb["final_obs"]]))[1][0])
            self.done.append(tr)
            self._open[slot] = Trajectory([], [], [], [], [], [])


def gae(rewards: np.ndarray, values: np.ndarray, bootstrap: float, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(advantages, returns) of one trajectory; `bootstrap` is V(s_T) (0 when terminated)."""
    T = len(rewards)
    adv = np.zeros(T, np.float64)
    nxt_v, acc = bootstrap, 0.0
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * nxt_v - values[t]
        acc = delta + gamma * lam * acc
        adv[t], nxt_v = acc, values[t]
    return adv, adv + values


class PPO:
    """The learner: `update(trajectories)` runs the clipped-surrogate epochs and returns its stats."""

    def __init__(self, ac: ActorCritic, cfg: PPOConfig, ref: ActorCritic | None = None):
        self.ac, self.cfg = ac, cfg
        self.ref = ref if ref is not None else frozen_copy(ac)
        actor = ac.actor_parameters(cfg.train_trunk)
        for q in ac.policy.parameters():
            q.requires_grad_(False)
        for q in actor:
            q.requires_grad_(True)
        self.actor_params = actor
        self.opt = torch.optim.Adam([{"params": actor, "lr": cfg.lr},
                                     {"params": [ac.log_std, *ac.value.parameters()], "lr": cfg.value_lr}])

    def advantages(self, trajs: list[Trajectory]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        c = self.cfg
        if c.advantage == "group":
            rets = np.array([sum(t.rewards) for t in trajs])
            adv = []
            for i, t in enumerate(trajs):
                grp = [j for j, u in enumerate(trajs) if u.seed == t.seed]
                r = rets[grp]
                adv.append(np.full(len(t), (rets[i] - r.mean()) / (r.std() + 1e-8)))
            return adv, [np.zeros(len(t)) for t in trajs]
        out = [gae(np.array(t.rewards), np.array(t.values), 0.0 if t.terminated else t.bootstrap, c.gamma, c.gae_lambda)
               for t in trajs]
        return [a for a, _ in out], [r for _, r in out]

    def update(self, trajs: list[Trajectory], generator: torch.Generator | None = None) -> dict[str, float]:
        c, ac = self.cfg, self.ac
        trajs = [t for t in trajs if len(t)]
        if not trajs:
            raise ConfigError("PPO.update: no steps were collected")
        adv_l, ret_l = self.advantages(trajs)
        obs = {k: torch.cat([o[k] for t in trajs for o in t.obs]) for k in trajs[0].obs[0]}
        act = torch.stack([a for t in trajs for a in t.actions])
        old_logp = torch.tensor([x for t in trajs for x in t.logp])
        ref_mean = torch.stack([m for t in trajs for m in t.ref_mean])
        adv = torch.tensor(np.concatenate(adv_l), dtype=torch.float32)
        ret = torch.tensor(np.concatenate(ret_l), dtype=torch.float32)
        if c.advantage == "gae" and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        dev = ac.policy.device
        N = len(adv)
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "anchor": 0.0, "approx_kl": 0.0, "clip_frac": 0.0}
        n_steps, stopped = 0, False
        was_training = ac.policy.training
        ac.policy.eval()  # no dropout: the ratio must compare the same function
        try:
            for _ in range(c.epochs):
                if stopped:
                    break
                perm = torch.randperm(N, generator=generator)
                for i in range(0, N, c.minibatch):
                    idx = perm[i:i + c.minibatch]
                    o = {k: v[idx].to(dev) for k, v in obs.items()}
                    mean, value = ac(o)
                    logp = ac.log_prob(mean, act[idx].to(dev))
                    ratio = (logp - old_logp[idx].to(dev)).exp()
                    a = adv[idx].to(dev)
                    pg = -torch.min(ratio * a, ratio.clamp(1 - c.clip, 1 + c.clip) * a).mean()
                    vl = ((value - ret[idx].to(dev)) ** 2).mean() if c.advantage == "gae" else value.sum() * 0.0
                    d = mean - ref_mean[idx].to(dev)
                    if c.anchor == "kl":  # KL(N(mean, s) || N(ref, s)) at the current std
                        anc = (0.5 * d ** 2 / ac.std().detach() ** 2).sum(-1).mean()
                    elif c.anchor == "bc":
                        anc = (d ** 2).sum(-1).mean()
                    else:
                        anc = d.sum() * 0.0
                    loss = pg + c.value_coef * vl - c.entropy_coef * ac.entropy() + c.anchor_coef * anc
                    kl = float((old_logp[idx].to(dev) - logp.detach()).mean())
                    if c.target_kl is not None and kl > 1.5 * c.target_kl:
                        stopped = True  # this minibatch is already too far from the roll-out policy
                        break
                    self.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_([*self.actor_params, ac.log_std, *ac.value.parameters()], c.max_grad_norm)
                    self.opt.step()
                    with torch.no_grad():
                        stats["policy_loss"] += float(pg)
                        stats["value_loss"] += float(vl)
                        stats["anchor"] += float(anc)
                        stats["approx_kl"] += kl
                        stats["clip_frac"] += float(((ratio - 1).abs() > c.clip).float().mean())
                    n_steps += 1
        finally:
            ac.policy.train(was_training)
        out = {k: v / max(n_steps, 1) for k, v in stats.items()}
        out.update(early_stop=float(stopped), samples=float(N), std=float(ac.std().detach().mean()), grad_steps=float(n_steps))
        return out


def frozen_copy(ac: ActorCritic) -> ActorCritic:
    """The reference (starting) actor for the anchor: a deep copy with gradients off."""
    ref = copy.deepcopy(ac)
    ref.requires_grad_(False)
    return ref.eval()
