"""Distil a teacher checkpoint into a small student (`physai distill`).

The student has the teacher's bodies, heads, chunking, normalization (copied, so both speak the
same units), physical-token layout (K tokens, FSQ levels) and residual actions, at a small trunk
preset (`micro` by default: width 64, 3 blocks, 16-px patches, one-block heads, no world model,
the teacher's reflex MLPs as its heads' starting point; 0.70 M parameters, 20.6x fewer than the
`teacher` recipe's 14.5 M).
It trains with the library's `Trainer` on a `TeacherSource`: batches of the teacher recipe's
recordings (and, after each on-policy round, of frames the student itself visited) in which a
`teacher_fraction` of the rows carry the teacher's action chunk instead of the recorded one (the
rest keep the ground truth) and every row carries the teacher's quantized physical tokens, which
`Policy.forward` matches with an MSE (`teacher_token_weight`). On-policy rounds (`rounds`): the
student drives `episodes` episodes per body (fresh seeds, the family's recording options) and its
frames join the pool; the teacher labels them when they are drawn. As in DAgger, round r executes
the teacher's action with probability `beta`^r per step (`MixDriver`): a student that falls at
once would otherwise add only its first second of every episode.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from physai.errors import ConfigError


@dataclass(frozen=True)
class DistillConfig:
    student_preset: str = "micro"
    patch_size: int = 16  # the student's image patches (a 32-px patch projection alone is 98 k weights at width 32)
    head_depth: int = 1
    # hidden width of the l1 heads' proprio+command MLP (balance, lane keeping); None = the
    # teacher's (256 by default, which a 20x smaller student still affords)
    reflex_hidden: int | None = None
    inherit_reflex: bool = True  # start the student's reflex MLPs from the teacher's where the shapes match
    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    teacher_fraction: float = 0.75  # rows labelled by the teacher (the rest keep the recorded action)
    token_weight: float = 0.5  # MSE of the student's physical tokens to the teacher's
    rounds: int = 4  # on-policy rounds (student drives, teacher labels), spread over the steps
    episodes: int = 8  # per body per round
    beta: float = 0.5  # round r executes the teacher's action with probability beta**r per step
    onpolicy_fraction: float = 0.5  # share of a body's rows drawn from the student's own frames once there
    # whose recordings are the offline data; empty = the recipe the teacher was trained with (its
    # model card says), or `sft` when the card does not say
    data_recipe: str = ""
    data_set: tuple[str, ...] = ()  # `--set` overrides of that recipe (e.g. fewer episodes)
    seed: int = 500000  # on-policy roll-out seeds

    def __post_init__(self):
        for k in ("teacher_fraction", "onpolicy_fraction", "beta"):
            if not 0 <= getattr(self, k) <= 1:
                raise ConfigError(f"distill.{k} must be in [0, 1], got {getattr(self, k)!r}")
        if self.reflex_hidden is not None and self.reflex_hidden < 0:
            raise ConfigError(f"distill.reflex_hidden must be None or >= 0, got {self.reflex_hidden!r}")
        if self.steps < 1 or self.batch_size < 1 or self.rounds < 0 or self.episodes < 1:
            raise ConfigError("distill.steps, batch_size, episodes must be >= 1 and rounds >= 0")


def student_for(teacher, cfg: DistillConfig):
    """A fresh student with the teacher's bodies, heads, tokens and normalization; its heads'
    reflex MLPs (which read normalized proprio + command, not the trunk) start as the teacher's
    when `cfg.inherit_reflex` and the widths match."""
    from physai.config import policy_config
    from physai.heads.base import HeadConfig
    from physai.normalization import Normalizer
    from physai.policy import Policy
    from physai.stems import StemConfig

    t = teacher.config
    c = policy_config(cfg.student_preset, embodiments=t.embodiments, head_types=t.head_types,
                      residual_actions=t.residual_actions, n_readout=t.n_readout, fsq_levels=t.fsq_levels,
                      readout=t.readout, head_reads_trunk=t.head_reads_trunk, n_action_steps=t.n_action_steps,
                      temporal_ensemble=t.temporal_ensemble, world_model=False,
                      head=dataclasses.replace(HeadConfig(), chunk_size=t.head.chunk_size, depth=cfg.head_depth, heads=2,
                                               reflex_hidden=t.head.reflex_hidden if cfg.reflex_hidden is None else cfg.reflex_hidden,
                                               tokenizer=t.head.tokenizer, n_bins=t.head.n_bins),
                      stem=dataclasses.replace(StemConfig(), patch_size=cfg.patch_size, state_token=t.stem.state_token,
                                               n_obs_steps=t.stem.n_obs_steps))
    norm = Normalizer(stats={e: {k: dict(v) for k, v in ks.items()} for e, ks in teacher.normalizer.stats.items()},
                      modes=dict(teacher.normalizer.modes))
    student = Policy.build(c, specs=teacher.specs, normalizer=norm)
    if cfg.inherit_reflex:
        for e, h in student.heads.items():
            src = getattr(teacher.heads[e], "reflex", None)
            dst = getattr(h, "reflex", None)
            if src is not None and dst is not None and all(
                    a.shape == b.shape for a, b in zip(src.state_dict().values(), dst.state_dict().values())):
                dst.load_state_dict(src.state_dict())
    return student


class TeacherSource:
    """The trainer's batch source for distillation (see the module docstring)."""

    def __init__(self, loader, teacher, cfg: DistillConfig, seed: int = 0):
        self.loader, self.teacher, self.cfg = loader, teacher.eval(), cfg
        self.rng = np.random.default_rng([seed, 31])
        self.pool: dict[str, dict[str, np.ndarray]] = {}  # body -> frames the student visited

    def add_frames(self, emb: str, frames: dict[str, np.ndarray]) -> None:
        cur = self.pool.get(emb)
        self.pool[emb] = frames if cur is None else {k: np.concatenate([cur[k], frames[k]]) for k in cur}

    @torch.no_grad()
    def _label(self, emb: str, b: dict, own: int = 0) -> dict:
        """Teacher chunks and tokens for every row of `b`; the last `own` rows (the student's own
        frames, which have no recorded action) always take the teacher's chunk."""
        obs = {k: b[k] for k in ("image", "proprio", "command")}
        chunk, q = self.teacher.chunk_and_tokens(obs, emb)  # [B, H, A] physical units, [B, K, D]
        B = chunk.shape[0]
        use = torch.as_tensor(self.rng.random(B) < self.cfg.teacher_fraction)
        use[B - own:] = True
        action = torch.as_tensor(b["action"]) if "action" in b else chunk
        out = {**b, "action": torch.where(use[:, None, None], chunk, action), "teacher_quantized": q,
               "teacher_token_weight": self.cfg.token_weight}
        if "action_is_pad" in b:
            out["action_is_pad"] = torch.as_tensor(b["action_is_pad"]) & ~use[:, None]
        out.pop("next_image", None)  # the student has no world model
        return out

    def sample(self) -> dict[str, dict]:
        out = {}
        for emb, b in self.loader.sample().items():
            pool = self.pool.get(emb)
            n = len(b["proprio"])
            k = int(round(self.cfg.onpolicy_fraction * n)) if pool is not None else 0
            if k:  # the student's own states, teacher-labelled only, in place of the batch's last k rows
                idx = self.rng.integers(0, len(pool["proprio"]), k)
                mixed = {key: torch.cat([torch.as_tensor(b[key][: n - k]), torch.as_tensor(pool[key][idx])])
                         for key in ("image", "proprio", "command")}
                act = torch.as_tensor(b["action"])
                mixed["action"] = torch.cat([act[: n - k], torch.zeros_like(act[:k])])
                pad = torch.as_tensor(b["action_is_pad"]) if "action_is_pad" in b else torch.zeros(act.shape[:2], dtype=torch.bool)
                mixed["action_is_pad"] = torch.cat([pad[: n - k], torch.zeros_like(pad[:k])])
                out[emb] = {"embodiment": emb, **self._label(emb, mixed, own=k)}
            else:
                out[emb] = self._label(emb, b)
        return out

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, st) -> None:
        self.loader.load_state_dict(st)


def _student_frames(student, teacher, emb: str, cfg: DistillConfig, r: int) -> tuple[dict[str, np.ndarray], float]:
    """The student drives `cfg.episodes` episodes of the body's env, the teacher taking over each
    step with probability beta**r; the observations, as a pool, and the teacher's executed share."""
    from physai.bench.world_model import env_for
    from physai.data.collect import episode_arrays
    from physai.sim.family import family_for_env
    from physai.sim.drivers import MixDriver
    from physai.sim.rollout import Episode, PolicyDriver, run_episodes
    from physai.sim.suite import Scenario

    env_id = env_for(emb)
    fam = family_for_env(env_id)
    rec = fam.default_record()
    eps = [Episode(Scenario(env_id, cfg.seed + 1000 * r + i, rec.seconds, dict(rec.env_options()),
                            fam.random_commands(env_id, np.random.default_rng([cfg.seed + 1000 * r + i, 37]), rec.seconds)),
                   safety=True, record=True) for i in range(cfg.episodes)]
    driver = MixDriver(PolicyDriver(student, emb), PolicyDriver(teacher, emb), cfg.beta ** r, seed=cfg.seed + r)
    runs = run_episodes(driver, eps, slots=2, workers=fam.spawnable)
    arrs = [episode_arrays(res, student.specs[emb]) for res in runs]
    frames = {"image": np.concatenate([a["image"] for a in arrs])[:, None],
              "proprio": np.concatenate([a["proprio"] for a in arrs])[:, None],
              "command": np.concatenate([a["command"] for a in arrs])}
    return frames, driver.other_steps / max(1, driver.steps)


def data_recipe_for(teacher_dir: str | Path, cfg: DistillConfig) -> str:
    """The recipe whose recordings distil `teacher_dir`: `cfg.data_recipe`, else the data the
    teacher's model card says it was trained on (a distilled teacher's own data recipe), else `sft`."""
    from physai.card import read_card

    training = (read_card(teacher_dir) or {}).get("training") or {}
    return cfg.data_recipe or training.get("data_recipe") or training.get("recipe") or "sft"


def distill(teacher_dir: str | Path, out: str | Path, cfg: DistillConfig, data_root: str | None = None,
            log: Callable[[str], None] = lambda m: None, progress: bool = True) -> dict[str, Any]:
    from physai.overrides import apply_overrides
    from physai.pipeline import _make_loader, dataset_paths
    from physai.policy import Policy
    from physai.recipes import get_recipe
    from physai.trainer import TrainConfig, Trainer

    out = Path(out)
    teacher = Policy.from_pretrained(teacher_dir).eval()
    data_recipe = data_recipe_for(teacher_dir, cfg)
    recipe = get_recipe(data_recipe)()
    recipe = apply_overrides(recipe, [*cfg.data_set, *([f"data.root={data_root}"] if data_root else [])])
    recipe = dataclasses.replace(recipe, policy=teacher.config,
                                 train=dataclasses.replace(recipe.train, batch_size=cfg.batch_size))
    base = dataset_paths(recipe, progress)
    loader = _make_loader(recipe, base, [], {})
    missing = set(teacher.specs) - set(loader.specs)
    if missing:
        raise ConfigError(f"distill: the data recipe '{data_recipe}' has no recordings of {sorted(missing)}")
    torch.manual_seed(0)
    student = student_for(teacher, cfg)
    source = TeacherSource(loader, teacher, cfg)
    tcfg = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=min(100, cfg.steps // 10),
                       ckpt_every=max(1, cfg.steps // 4))
    trainer = Trainer(student, source, tcfg, out,
                      card={"recipe": "distill", "data_recipe": data_recipe, "init_from": str(teacher_dir)})
    t0 = time.perf_counter()
    bounds = [cfg.steps * (r + 1) // (cfg.rounds + 1) for r in range(cfg.rounds)]
    for r, b in enumerate(bounds, 1):
        trainer.fit(show_progress=progress, until=b)
        for emb in student.specs:
            frames, share = _student_frames(trainer.eval_policy(), teacher, emb, cfg, r)
            source.add_frames(emb, frames)
            log(f"on-policy round {r}: +{len(frames['proprio'])} {emb} frames the student visited "
                f"(teacher executed {share:.0%} of the steps)")
    res = trainer.fit(show_progress=progress)
    n_t, n_s = (sum(p.numel() for p in m.parameters()) for m in (teacher, student))
    summary = {"teacher": str(teacher_dir), "student": res["final"], "teacher_params": n_t, "student_params": n_s,
               "ratio": n_t / n_s, "steps": cfg.steps, "seconds": time.perf_counter() - t0,
               "samples_per_s": res["samples_per_s"], "config": dataclasses.asdict(cfg), "data_recipe": data_recipe,
               "onpolicy_frames": {e: int(len(p["proprio"])) for e, p in source.pool.items()}}
    (out / "distill.json").write_text(json.dumps(summary, indent=1))
    return summary
