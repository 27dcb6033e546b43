"""`physai bench world-model`: how well imagined roll-outs match real ones, per body and horizon.

For each embodiment of a checkpoint, the family's expert drives fresh episodes (seeds from `seed`,
random instructions, no guard) and every frame is encoded to its physical-token codes. From start
frames every `stride` steps, `Policy.imagine` rolls the world model k chunks ahead on the actions
really taken; step h is compared with the codes of the real frame (h+1)·H later: top-1 accuracy
(over the K positions) and cross-entropy, beside two baselines, "copy the last codes" and
"per-position frequency" (fitted, with add-one smoothing, on the first half of the episodes; all
scores are taken on the second half). Families with a `probe_key` (the car: the gap to the car
ahead) also get the counterfactual: a ridge probe from quantized tokens to that quantity is fitted
on the first half's real frames (its R² on the second half is reported), then the same starts are
imagined under the family's two `counterfactual_actions` and the probe reads each imagined step;
the first action must give the higher value (share of starts where it does, and the mean gap).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from physai.errors import ConfigError
from physai.sim.family import families, family_for_env
from physai.data.collect import episode_arrays
from physai.sim.rollout import Episode, ExpertDriver, run_episodes
from physai.sim.suite import Scenario
from physai.world import encode_frames


def env_for(embodiment: str) -> str:
    """The first registered env whose body is `embodiment`."""
    for fam in families():
        for env_id in fam.env_ids:
            if fam.embodiment_of(env_id) == embodiment:
                return env_id
    raise ConfigError(f"no registered env drives embodiment '{embodiment}'")


def expert_rollouts(env_id: str, episodes: int, seed: int, seconds: float | None) -> list[dict]:
    """Expert episodes (random instructions, no guard) with every frame and the per-step trace."""
    fam = family_for_env(env_id)
    rec = fam.default_record()
    seconds = seconds or rec.seconds
    eps = [Episode(Scenario(env_id, seed + i, seconds, dict(rec.env_options()),
                            fam.random_commands(env_id, np.random.default_rng([seed + i, 17]), seconds)),
                   safety=False, record=True) for i in range(episodes)]
    return run_episodes(ExpertDriver(), eps, slots=min(2, episodes), workers=fam.spawnable)


def _ridge(x: np.ndarray, y: np.ndarray, lam: float = 1e-2) -> Callable[[np.ndarray], np.ndarray]:
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = np.c_[(x - mu) / sd, np.ones(len(x))]
    w = np.linalg.solve(xs.T @ xs + lam * len(x) * np.eye(xs.shape[1]), xs.T @ y)
    return lambda z: np.c_[(z - mu) / sd, np.ones(len(z))] @ w


def _probe_values(res: dict, key: str, cap: float) -> np.ndarray:
    """Per frame t, the probed quantity of the observation t (trace entry t-1; frame 0: NaN)."""
    vals = [float(e.get(key, math.nan)) for e in res["trace"]]
    out = np.array([math.nan] + vals[: len(res["frames"]) - 1], dtype=np.float64)
    return np.minimum(out, cap)  # inf (nothing there) -> cap; NaN stays NaN


def bench_embodiment(policy, emb: str, episodes: int = 6, seed: int = 7000, horizon: int = 4, stride: int = 4,
                     seconds: float | None = None) -> dict[str, Any]:
    env_id = env_for(emb)
    fam, spec = family_for_env(env_id), policy.specs[emb]
    H, V = policy.config.head.chunk_size, policy.bottleneck.vocab_size
    runs = expert_rollouts(env_id, episodes, seed, seconds)
    eps = [episode_arrays(r, spec) for r in runs]
    enc = [(f["codes"], f["quantized"].reshape(len(f["codes"]), -1))
           for f in (encode_frames(policy, e, emb) for e in eps)]
    half = max(1, len(eps) // 2)
    fit, test = range(half), range(half, len(eps)) if len(eps) > 1 else range(1)
    K = enc[0][0].shape[1]
    counts = np.ones((K, V))  # add-one smoothing
    for i in fit:
        for k in range(K):
            counts[k] += np.bincount(enc[i][0][:, k], minlength=V)
    freq = counts / counts.sum(1, keepdims=True)  # [K, V]
    mode = freq.argmax(1)  # [K]
    acc = {m: np.zeros(horizon) for m in ("world_model", "copy", "frequency")}
    ce = {m: np.zeros(horizon) for m in ("world_model", "frequency")}
    n = np.zeros(horizon)
    probe = cf = None
    cfa = fam.counterfactual_actions(spec) if fam.probe_key else None
    if cfa is not None:
        xs = [enc[i][1] for i in fit]
        ys = [_probe_values(runs[i], fam.probe_key, fam.probe_cap) for i in fit]
        x, y = np.concatenate(xs), np.concatenate(ys)
        ok = np.isfinite(y)
        probe = _ridge(x[ok], y[ok])
        xt = np.concatenate([enc[i][1] for i in test])
        yt = np.concatenate([_probe_values(runs[i], fam.probe_key, fam.probe_cap) for i in test])
        okt = np.isfinite(yt)
        r2 = 1 - np.mean((probe(xt[okt]) - yt[okt]) ** 2) / max(np.var(yt[okt]), 1e-9)
        cf = {"probe": fam.probe_key, "probe_r2": float(r2), "first": cfa[0][0], "second": cfa[1][0],
              "first_mean": np.zeros(horizon), "second_mean": np.zeros(horizon), "first_higher": np.zeros(horizon),
              "starts": 0}
    for i in test:
        ep, (codes, _) = eps[i], enc[i]
        starts = np.arange(0, len(codes) - horizon * H, stride)
        if not len(starts):
            continue
        obs = {k: ep[k][starts] for k in ("image", "proprio", "command")}
        idx = starts[:, None] + np.arange(horizon * H)[None]  # [S, k·H]
        out = policy.imagine(obs, torch.as_tensor(ep["action"][idx]), emb)
        target = np.stack([codes[starts + (h + 1) * H] for h in range(horizon)], 1)  # [S, k, K]
        logp = out.logits.float().log_softmax(-1).cpu().numpy()  # [S, k, K, V]
        pred = out.codes.cpu().numpy()
        for h in range(horizon):
            t = target[:, h]
            acc["world_model"][h] += (pred[:, h] == t).mean(1).sum()
            acc["copy"][h] += (codes[starts] == t).mean(1).sum()
            acc["frequency"][h] += (mode[None] == t).mean(1).sum()
            ce["world_model"][h] += -np.take_along_axis(logp[:, h], t[..., None], -1)[..., 0].mean(1).sum()
            ce["frequency"][h] += -np.log(freq[np.arange(K)[None], t]).mean(1).sum()
            n[h] += len(starts)
        if cf is not None:
            near = np.isfinite(_probe_values(runs[i], fam.probe_key, fam.probe_cap)[starts])
            near &= _probe_values(runs[i], fam.probe_key, fam.probe_cap)[starts] < fam.probe_cap
            if near.any():
                sub = {k: v[near] for k, v in obs.items()}
                vals = []
                for _, a in cfa:
                    seq = torch.as_tensor(np.broadcast_to(a, (int(near.sum()), horizon * H, len(a))).copy())
                    q = policy.imagine(sub, seq, emb).quantized.flatten(2).cpu().numpy()  # [S, k, K·d]
                    vals.append(np.stack([probe(q[:, h]) for h in range(horizon)], 1))  # [S, k]
                cf["first_mean"] += vals[0].sum(0)
                cf["second_mean"] += vals[1].sum(0)
                cf["first_higher"] += (vals[0] > vals[1]).sum(0)
                cf["starts"] += int(near.sum())
    n = np.maximum(n, 1)
    rows = []
    for h in range(horizon):
        rows.append({"embodiment": emb, "horizon": h + 1, "seconds_ahead": (h + 1) * H / spec.control_hz,
                     "wm_top1": acc["world_model"][h] / n[h], "copy_top1": acc["copy"][h] / n[h],
                     "freq_top1": acc["frequency"][h] / n[h], "wm_ce": ce["world_model"][h] / n[h],
                     "freq_ce": ce["frequency"][h] / n[h], "starts": int(n[h])})
    out: dict[str, Any] = {"embodiment": emb, "env": env_id, "episodes": episodes, "seed": seed,
                           "frames": int(sum(len(e["proprio"]) for e in eps)), "rows": rows}
    if cf is not None:
        s = max(cf["starts"], 1)
        out["counterfactual"] = [{"embodiment": emb, "horizon": h + 1, "probe": cf["probe"], "probe_r2": cf["probe_r2"],
                                  f"{cf['first']}": cf["first_mean"][h] / s, f"{cf['second']}": cf["second_mean"][h] / s,
                                  f"{cf['first']}_higher": cf["first_higher"][h] / s, "starts": cf["starts"]}
                                 for h in range(horizon)]
    return out


def plot_accuracy(results: list[dict[str, Any]], path: str | Path) -> Path:
    """Top-1 accuracy against horizon, world model vs baselines, one panel per body."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from physai.report import _save

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6), squeeze=False)
    for ax, res in zip(axes[0], results):
        secs = [r["seconds_ahead"] for r in res["rows"]]
        for key, label in (("wm_top1", "world model (imagined)"), ("copy_top1", "copy last codes"),
                           ("freq_top1", "per-position frequency")):
            ax.plot(secs, [r[key] for r in res["rows"]], marker="o", label=label)
        ax.set_title(f"{res['embodiment']}: imagined vs real physical tokens")
        ax.set_xlabel("seconds ahead (one step = one action chunk)")
        ax.set_ylabel("top-1 accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def bench_world_model(checkpoint: str, episodes: int = 6, seed: int = 7000, horizon: int = 4, stride: int = 4,
                      seconds: float | None = None, png: str | Path | None = None) -> dict[str, Any]:
    from physai.policy import Policy

    if episodes < 2 or horizon < 1 or stride < 1:
        raise ConfigError("bench world-model: --episodes must be >= 2 (half fit the baselines), --horizon and --stride >= 1")
    policy = Policy.from_pretrained(checkpoint).eval()
    results = [bench_embodiment(policy, e, episodes, seed, horizon, stride, seconds) for e in policy.config.embodiments]
    out = {"checkpoint": str(checkpoint), "rows": [r for res in results for r in res["rows"]],
           "counterfactual": [r for res in results for r in res.get("counterfactual", [])], "bodies": results}
    if png:
        out["png"] = str(plot_accuracy(results, png))
    return out
