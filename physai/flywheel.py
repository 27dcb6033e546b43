"""The data flywheel: evaluate, mine the hard cases, relabel with the expert, drop near-duplicates,
retrain; round after round (`physai flywheel`).

Each round the current checkpoint drives `episodes` episodes on training seeds (no guard, so its
failures happen) while the body family's expert labels every visited state. Hard frames are:

- the `before_s` seconds before a failure (the family's `failure_key` in the trace: car collision,
  humanoid fall);
- near misses: the family's `risk_key` below `risk_below` (car: time-to-collision < 2 s);
- frames under an instruction that failed (from its command for `instruction_s`);
- high world-model surprise: the cross-entropy of the real codes one chunk later under the world
  model's prediction from the frame and the actions taken, in the round's top `surprise_share`.

Near-duplicates are dropped against the frames kept so far by other hard segments (this round's
and earlier rounds'; neighbours within a segment are its trajectory, not duplicates): with
`dedup="embedding"` (default) a frame whose standardized mean-pooled trunk embedding has a cosine
above `dedup_cos` with a kept one, with `dedup="codes"` one whose physical-token code tuple a kept
frame has; the share dropped is reported. The kept frames, each extended
by one action chunk of the following frames (the chunk targets), are written as episodes of a
LeRobot dataset under `out/<arm>/round_k/`, and the checkpoint is fine-tuned on the retrain recipe's
data plus every round's frames so far (as DAgger data of its first dataset of that body). The
`uniform` arm adds the same number of frames per round chosen uniformly from the same kind of
roll-outs, so that the mining is shown to matter. After each round both arms are evaluated on the
held-out suite (guard off and on).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from physai.errors import ConfigError
from physai.sim.family import family_for_env


@dataclass(frozen=True)
class MineConfig:
    before_s: float = 2.0  # frames this long before a failure are hard
    risk_below: float = 2.0  # near miss: the family's risk_key below this (car: TTC seconds)
    instruction_s: float = 5.0  # frames this long after a failed instruction's command are hard
    surprise_share: float = 0.1  # the most surprising share of a round's frames are hard
    dedup: str = "embedding"  # near-duplicates by trunk embedding, by physical-token "codes", or "none"
    dedup_cos: float = 0.999  # embedding cosine above which a frame duplicates a kept one

    def __post_init__(self):
        for k in ("before_s", "risk_below", "instruction_s"):
            if not isinstance(getattr(self, k), (int, float)) or getattr(self, k) < 0:
                raise ConfigError(f"flywheel.mine.{k} must be a number >= 0, got {getattr(self, k)!r}")
        if self.dedup not in ("embedding", "codes", "none"):
            raise ConfigError(f"flywheel.mine.dedup must be 'embedding', 'codes' or 'none', got {self.dedup!r}")
        if not 0 <= self.surprise_share <= 1:
            raise ConfigError(f"flywheel.mine.surprise_share must be in [0, 1], got {self.surprise_share!r}")


@dataclass(frozen=True)
class FlywheelRecipe:
    name: str
    retrain: str = "sft"  # the recipe whose data and model retrain each round (init_from: the current checkpoint)
    retrain_set: tuple[str, ...] = ()  # `--set` overrides of the retrain recipe (e.g. smaller data)
    env: str = "physai/car-highway"
    options: tuple[tuple[str, Any], ...] = ()  # env options of the roll-outs
    rounds: int = 2
    episodes: int = 12  # roll-outs per round
    seconds: float = 30.0
    seed: int = 400000  # roll-out seeds: round r uses seed + 1000 r + i (no recording, suite or RL uses them)
    steps: int = 400  # fine-tuning steps per round
    # the flywheel's frames (all rounds so far) get this fraction of their recording's sampling
    # weight, in both arms (in proportion to frames they would be ~2% of it)
    share: float = 0.3
    lr: float = 1e-4
    arms: tuple[str, ...] = ("mined", "uniform")
    mine: MineConfig = field(default_factory=MineConfig)
    eval_suite: str = "car-dense"  # a shipped suite name or a scenario JSON file

    def __post_init__(self):
        if self.rounds < 1 or self.episodes < 1 or self.steps < 1:
            raise ConfigError("flywheel.rounds, flywheel.episodes and flywheel.steps must be >= 1")
        if not 0 < self.share < 1:
            raise ConfigError(f"flywheel.share must be in (0, 1), got {self.share!r}")
        bad = set(self.arms) - {"mined", "uniform"}
        if bad or not self.arms:
            raise ConfigError(f"flywheel.arms must be among ('mined', 'uniform'), got {self.arms}")


# ---- mining ---------------------------------------------------------------------------------------
def hard_mask(res: dict, fam, dt: float, cfg: MineConfig, surprise: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per frame of one recorded episode, which mining rule marks it hard ({rule: bool [N]})."""
    n, trace = len(res["frames"]), res.get("trace") or []
    out = {}
    fail = np.zeros(n, bool)
    if fam.failure_key:
        w = int(round(cfg.before_s / dt))
        for t, e in enumerate(trace[:n]):
            if e.get(fam.failure_key):
                fail[max(0, t - w):t + 1] = True
    out["failure"] = fail
    risk = np.zeros(n, bool)
    if fam.risk_key:
        vals = np.array([math.nan] + [float(e.get(fam.risk_key, math.nan)) for e in trace[:n - 1]])
        risk = np.nan_to_num(vals, nan=math.inf) < cfg.risk_below
    out["near_miss"] = risk
    instr = np.zeros(n, bool)
    for rec in res.get("instructions") or ():
        if rec.get("success") is False:
            a = int(round(rec["at"] / dt))
            instr[a:a + int(round(cfg.instruction_s / dt))] = True
    out["instruction"] = instr
    out["surprise"] = surprise if surprise is not None else np.zeros(n, bool)
    return out


def codes_and_surprise(policy, res: dict, emb: str, batch: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes [N, K], mean-pooled trunk embeddings [N, W] of every frame and the world model's
    surprise [N] (CE of the real codes one chunk later under its prediction; NaN where no frame is
    one chunk later)."""
    from physai.data.collect import episode_arrays
    from physai.world import encode_frames, imagine_next_chunk

    ep = episode_arrays(res, policy.specs[emb])
    enc = encode_frames(policy, ep, emb, batch)
    codes, H = enc["codes"], policy.config.head.chunk_size
    ce = np.full(len(codes), np.nan)
    nxt = imagine_next_chunk(policy, ep, emb, batch)
    if nxt is not None:
        m = len(nxt.codes)
        logp = nxt.logits[:, 0].float().log_softmax(-1).numpy()  # [N - H, K, V]
        ce[:m] = -np.take_along_axis(logp, codes[H:H + m][..., None], -1)[..., 0].mean(1)
    return codes, enc["embedding"], ce


class Deduper:
    """Keeps a bank of kept frames; `keep(codes, embs)` -> bool [n] for one hard segment (compared with
    the bank only, then added to it)."""

    def __init__(self, cfg: MineConfig):
        self.cfg, self.codes, self.embs = cfg, set(), []
        self.mean = self.std = None

    def standardize_with(self, embs: np.ndarray) -> None:
        if self.mean is None:  # the first round's statistics, fixed for the whole flywheel
            self.mean, self.std = embs.mean(0), embs.std(0) + 1e-6

    def _unit(self, e: np.ndarray) -> np.ndarray:
        z = (e - self.mean) / self.std
        return z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)

    def keep(self, codes: np.ndarray, embs: np.ndarray) -> np.ndarray:
        n = len(codes)
        if self.cfg.dedup == "none":
            return np.ones(n, bool)
        if self.cfg.dedup == "codes":
            out = np.array([tuple(c.tolist()) not in self.codes for c in codes], bool)
            self.codes |= {tuple(c.tolist()) for c in codes[out]}
            return out
        u = self._unit(embs)
        if self.embs:
            bank = np.concatenate(self.embs)
            out = (u @ bank.T).max(1) <= self.cfg.dedup_cos
        else:
            out = np.ones(n, bool)
        self.embs.append(u[out])
        return out


def segments(mask: np.ndarray, extend: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) runs of `mask`, each extended by `extend` frames (chunk targets)."""
    n, out, t = len(mask), [], 0
    while t < n:
        if not mask[t]:
            t += 1
            continue
        s = t
        while t < n and mask[t]:
            t += 1
        out.append((s, min(n, t + extend)))
    merged: list[tuple[int, int]] = []
    for s, e in out:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def write_segments(path: Path, spec, runs: list[dict], segs: list[list[tuple[int, int]]]) -> int:
    """Write each segment (frames with the expert's labels) as one episode; returns frames written."""
    from physai.data.writer import DatasetWriter

    w = DatasetWriter(path, spec, {"flywheel": True})
    n = 0
    try:
        for res, ss in zip(runs, segs):
            for s, e in ss:
                for images, state, cmd, label, reward, task in res["frames"][s:e]:
                    w.add_frame(images, state, cmd, label, reward, task)
                    n += 1
                w.commit_episode()
    finally:
        w.close()
    return n


# ---- the loop -------------------------------------------------------------------------------------
def _rollouts(ck: Path, fw: FlywheelRecipe, r: int) -> list[dict]:
    from physai.policy import Policy
    from physai.sim.rollout import Episode, PolicyDriver, run_episodes
    from physai.sim.suite import Scenario

    fam = family_for_env(fw.env)
    policy = Policy.from_pretrained(ck)
    eps = [Episode(Scenario(fw.env, fw.seed + 1000 * r + i, fw.seconds, dict(fw.options),
                            fam.random_commands(fw.env, np.random.default_rng([fw.seed + 1000 * r + i, 29]), fw.seconds)),
                   safety=False, label=True, record=True) for i in range(fw.episodes)]
    return run_episodes(PolicyDriver(policy, fam.embodiment_of(fw.env)), eps, slots=2, workers=fam.spawnable)


def _evaluate(ck: Path, suite: str) -> dict[str, Any]:
    from physai.pipeline import evaluate_checkpoint
    from physai.sim.suite import load_scenarios, load_suite

    scenarios = load_scenarios(suite) if str(suite).endswith(".json") else load_suite(suite)
    out = {}
    for safety in (False, True):
        res = evaluate_checkpoint(ck, scenarios, safety=safety, with_expert=False, progress=False,
                                  workers=len(scenarios) > 1)
        row = res["summary"][0]
        keys = ("collision", "fell", "progress_m", "guard_aeb", "safety_interventions", "mean_abs_jerk", "reward",
                "tracking_error")
        out["guard_on" if safety else "guard_off"] = {k: row[k] for k in keys if k in row}
    return out


def run_flywheel(checkpoint: str | Path, fw: FlywheelRecipe, out: str | Path, data_root: str | None = None,
                 log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Run every arm for `fw.rounds` rounds from `checkpoint`; returns the per-round table."""
    from physai.overrides import apply_overrides
    from physai.pipeline import dataset_paths, env_datasets, train_recipe
    from physai.policy import Policy
    from physai.recipes import get_recipe

    out = Path(out)
    fam = family_for_env(fw.env)
    emb = fam.embodiment_of(fw.env)
    base_recipe = get_recipe(fw.retrain)()
    sets = [f"train.steps={fw.steps}", f"train.lr={fw.lr}", "train.warmup_steps=20", f"train.ckpt_every={fw.steps}",
            "data.dagger_rounds=0", *fw.retrain_set] + ([f"data.root={data_root}"] if data_root else [])
    base_recipe = apply_overrides(base_recipe, sets)
    # the retrain recipe fine-tunes this checkpoint: its model settings (chunk size ...) are the checkpoint's
    base_recipe = dataclasses.replace(base_recipe, policy=Policy.from_pretrained(checkpoint).config)
    parents = [p for e, p in env_datasets(base_recipe, dataset_paths(base_recipe, progress=False))
               if family_for_env(e).embodiment_of(e) == emb]
    if not parents:
        raise ConfigError(f"flywheel: the retrain recipe '{fw.retrain}' has no {emb} dataset to extend")
    parent = parents[-1]
    t0 = time.perf_counter()
    log(f"round 0: evaluating {checkpoint} on {fw.eval_suite}")
    start = _evaluate(Path(checkpoint), fw.eval_suite)
    rows = [{"arm": arm, "round": 0, "frames_added": 0, **_flat(start)} for arm in fw.arms]
    rng = np.random.default_rng(fw.seed)
    for arm in fw.arms:
        ck, extra, dedup = Path(checkpoint), [], Deduper(fw.mine)
        for r in range(1, fw.rounds + 1):
            t = time.perf_counter()
            runs = _rollouts(ck, fw, r)
            policy = Policy.from_pretrained(ck).eval()
            dt = 1.0 / policy.specs[emb].control_hz
            H = policy.config.head.chunk_size
            masks, n_hard, n_dup, rule_counts = [], 0, 0, {}
            for res in runs:
                masks.append(codes_and_surprise(policy, res, emb))
            dedup.standardize_with(np.concatenate([e for _, e, _ in masks]))
            ces = np.concatenate([ce for _, _, ce in masks])
            thr = np.nanquantile(ces, 1 - fw.mine.surprise_share) if fw.mine.surprise_share > 0 else np.inf
            segs = []
            if arm == "mined":
                for res, (codes, embs, ce) in zip(runs, masks):
                    rules = hard_mask(res, fam, dt, fw.mine, np.nan_to_num(ce, nan=-np.inf) >= thr)
                    hard = np.zeros(len(codes), bool)
                    for k, m in rules.items():
                        hard |= m
                        rule_counts[k] = rule_counts.get(k, 0) + int(m.sum())
                    n_hard += int(hard.sum())
                    for s, e in segments(hard, 0):  # each hard run against the frames kept before it
                        kept = dedup.keep(codes[s:e], embs[s:e])
                        hard[s:e] = kept
                        n_dup += int((~kept).sum())
                    segs.append(segments(hard, H))
            else:
                target = rows_target(rows, r) or sum(len(res["frames"]) for res in runs) // 10
                segs = uniform_segments([len(res["frames"]) for res in runs], target, H, rng)
            path = out / arm / f"round_{r}"
            n = write_segments(path, policy.specs[emb], runs, segs) if any(segs) else 0
            if n:
                extra.append({path: parent})
            recipe = dataclasses.replace(base_recipe, name=f"{fw.name}-{arm}-r{r}", init_from=str(ck))
            tr = train_recipe(recipe, out / arm / f"train_{r}", resume=False, progress=False, extra_rounds=extra,
                              extra_share=fw.share if extra else None)
            ck = out / arm / f"train_{r}" / "final"
            ev = _evaluate(ck, fw.eval_suite)
            row = {"arm": arm, "round": r, "frames_added": n, "hard_frames": n_hard if arm == "mined" else None,
                   "dropped_duplicates": n_dup if arm == "mined" else None,
                   "dup_share": (n_dup / n_hard) if arm == "mined" and n_hard else None,
                   "seconds": time.perf_counter() - t, "sampling": tr["datasets"],
                   **{f"mined_{k}": v for k, v in rule_counts.items()},
                   **_flat(ev)}
            rows.append(row)
            log(f"{arm} round {r}: +{n} frames, guard-off collisions {row.get('guard_off/collision')}, "
                f"{row['seconds']:.0f} s")
            (out / "flywheel.json").parent.mkdir(parents=True, exist_ok=True)
            (out / "flywheel.json").write_text(json.dumps({"rows": rows}, indent=1, default=float))
    return {"rows": rows, "seconds": time.perf_counter() - t0, "recipe": dataclasses.asdict(fw)}


def rows_target(rows: list[dict], r: int) -> int | None:
    """Frames the mined arm added in round r (the uniform arm adds as many)."""
    for row in rows:
        if row["arm"] == "mined" and row["round"] == r:
            return int(row["frames_added"])
    return None


def uniform_segments(lengths: list[int], target: int, H: int, rng) -> list[list[tuple[int, int]]]:
    """Segments of 2·H frames at uniformly random places totalling ~`target` frames."""
    segs: list[list[tuple[int, int]]] = [[] for _ in lengths]
    got, tries = 0, 0
    taken = [np.zeros(n, bool) for n in lengths]
    while got < target and tries < 10000:
        tries += 1
        e = int(rng.integers(len(lengths)))
        L = min(2 * H, target - got, lengths[e])
        if L <= 0 or lengths[e] - L < 0:
            continue
        s = int(rng.integers(0, lengths[e] - L + 1))
        if taken[e][s:s + L].any():
            continue
        taken[e][s:s + L] = True
        got += L
    for e, m in enumerate(taken):
        segs[e] = segments(m, 0)
    return segs


def _flat(ev: dict) -> dict[str, Any]:
    return {f"{k}/{m}": v for k, d in ev.items() for m, v in d.items()}
