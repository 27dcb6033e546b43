"""Co-training loop: mixed-embodiment batches, AdamW + warm-up/cosine, gradient clipping, EMA,
bf16 autocast on CUDA, optional torch.compile, atomic resumable checkpoints, JSONL metrics.

The loss of a step is the batch-size-weighted sum over its per-embodiment sub-batches of
`Policy.forward` (each head's action loss + world-model loss), every term logged separately.
The batch source is any object with `sample() -> {embodiment: batch}`, `state_dict()` and
`load_state_dict()` (see `physai.data.loader`); its state is saved with each checkpoint so a
resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from physai.errors import ConfigError, TrainingError
from physai.train_state import load_optimizer, load_train_state, prune, save_train_state, set_rng_state


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300  # optimizer steps
    batch_size: int = 32  # samples per step, split across embodiments by weight
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.01
    warmup_steps: int = 30  # linear warm-up, then cosine to lr * min_lr_ratio
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    ema_decay: float | None = 0.99  # EMA of weights used for eval/best (None = off)
    seed: int = 0
    log_every: int = 10  # steps between JSONL metric lines
    ckpt_every: int = 100  # steps between resumable checkpoints
    keep_last: int = 2  # resumable checkpoints kept (plus `best` and `final`)
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    compile: bool = False  # torch.compile the policy
    log_to: str = ""  # "", "tensorboard" or "wandb" (only if installed)
    train_head_only: str = ""  # embodiment name: freeze trunk, train only its head (fine-tuning)
    train_stem: bool = False  # with train_head_only: also train that embodiment's stem
    # resuming with other optimisation settings (OPTIM_KEYS) than the checkpoint's: "refuse" (a
    # ConfigError listing them) or "apply" (the new lr / schedule / ... take effect from the resumed
    # step on; logged to metrics.jsonl as a `resume_changes` record and warned about)
    on_resume_change: str = "refuse"

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("train steps and batch_size must be >= 1")
        for k, lo in (("log_every", 1), ("ckpt_every", 1), ("keep_last", 1), ("warmup_steps", 0), ("seed", 0)):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"train.{k} must be an integer >= {lo}, got {v!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"train.lr must be a finite number > 0, got {self.lr!r}")
        for k in ("weight_decay", "grad_clip"):
            if not (math.isfinite(getattr(self, k)) and getattr(self, k) >= 0):
                raise ConfigError(f"train.{k} must be a finite number >= 0, got {getattr(self, k)!r}")
        if not (math.isfinite(self.min_lr_ratio) and 0.0 <= self.min_lr_ratio <= 1.0):
            raise ConfigError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError("precision must be auto|bf16|fp32")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError("ema_decay must be in (0, 1) or None")
        if self.log_to not in ("", "tensorboard", "wandb"):
            raise ConfigError("log_to must be '', 'tensorboard' or 'wandb'")
        if self.on_resume_change not in ("refuse", "apply"):
            raise ConfigError(f"train.on_resume_change must be 'refuse' or 'apply', got {self.on_resume_change!r}")


# Settings that shape the optimisation: a resume compares them with the checkpoint's. The others
# (log_every, ckpt_every, keep_last, log_to, compile, seed: the RNG states are restored) may change
# freely. FIXED ones cannot be applied mid-run (other trainable parameters, EMA on/off).
OPTIM_KEYS = ("steps", "batch_size", "lr", "weight_decay", "warmup_steps", "min_lr_ratio", "grad_clip",
              "ema_decay", "precision", "train_head_only", "train_stem")
FIXED_KEYS = ("train_head_only", "train_stem")


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


class EMA:
    """Exponential moving average of a policy's parameters (buffers copied)."""

    def __init__(self, policy, decay: float):
        from physai.policy import Policy

        self.decay = decay
        self.model = Policy.build(policy.config, specs=policy.specs, backend=policy.trunk.backend,
                                  normalizer=policy.normalizer).to(policy.device)
        self.model.load_state_dict(policy.state_dict())
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, policy) -> None:
        for e, p in zip(self.model.parameters(), policy.parameters()):
            e.lerp_(p.detach(), 1.0 - self.decay)
        for e, b in zip(self.model.buffers(), policy.buffers()):
            e.copy_(b)


class Trainer:
    def __init__(self, policy, source, cfg: TrainConfig, out_dir: str | Path, val_batches: list | None = None,
                 on_checkpoint: Callable[[int, Any], dict] | None = None, card: dict[str, Any] | None = None):
        self.policy, self.source, self.cfg = policy, source, cfg
        for e, key, mode in policy.normalizer.missing(policy.specs, policy.config.residual_actions)[:1]:
            raise ConfigError(f"the policy has no normalization stats for {e}.{key} (mode '{mode}'): fit them from "
                              f"the training data first (policy.normalizer.fit, as physai.pipeline does), or build "
                              f"the policy with {'proprio_norm' if key == 'proprio' else 'action_norm'}='identity'")
        self.out = Path(out_dir)
        self.ckpt_root = self.out / "checkpoints"
        self.val_batches = val_batches or []
        self.on_checkpoint = on_checkpoint
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        if cfg.train_head_only:
            params = policy.finetune_head(cfg.train_head_only, train_stem=cfg.train_stem)
        else:
            params = [p for p in policy.parameters() if p.requires_grad]
        self.params = params
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, cfg))
        self.ema = EMA(policy, cfg.ema_decay) if cfg.ema_decay else None
        self.step = 0
        self.best = float("inf")
        self.history: list[dict[str, Any]] = []
        self.card: dict[str, Any] = dict(card or {})  # what saved checkpoints' model cards say it trained on
        self.resume_changes: dict[str, tuple[Any, Any]] = {}  # setting -> (checkpoint's, applied), by resume()
        from physai.checkpoint import clean_stale

        for d in (self.out, self.ckpt_root):  # what a SIGKILL mid-save left
            clean_stale(d)
        cuda = policy.device.type == "cuda"
        self.amp = (cfg.precision == "bf16") or (cfg.precision == "auto" and cuda)
        self.forward = torch.compile(policy) if cfg.compile else policy
        self._logger = self._make_logger()

    # ---- logging -----------------------------------------------------------------------------
    def _make_logger(self):
        if self.cfg.log_to == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ConfigError("log_to=tensorboard needs the 'tensorboard' package installed") from e
            return SummaryWriter(str(self.out / "tb"))
        if self.cfg.log_to == "wandb":
            try:
                import wandb
            except ImportError as e:
                raise ConfigError("log_to=wandb needs the 'wandb' package installed") from e
            return wandb.init(project="physai", dir=str(self.out), config=asdict(self.cfg))
        return None

    def _log(self, rec: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self._logger is not None and hasattr(self._logger, "add_scalar"):
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._logger.add_scalar(k, v, rec["step"])
        elif self._logger is not None:
            self._logger.log(rec, step=rec["step"])

    # ---- checkpoints -------------------------------------------------------------------------
    def latest_checkpoint(self) -> Path | None:
        return self.latest_in(self.out)

    @staticmethod
    def latest_in(out_dir: str | Path) -> Path | None:
        """The newest complete checkpoint of a run directory (None if there is none)."""
        steps = sorted(p for p in (Path(out_dir) / "checkpoints").glob("step_*") if (p / "trainer_state.json").exists())
        return steps[-1] if steps else None

    @staticmethod
    def step_of(checkpoint: str | Path) -> int:
        return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["step"])

    def resume(self, directory: str | Path | None = None) -> bool:
        d = Path(directory) if directory else self.latest_checkpoint()
        if d is None:
            return False
        from safetensors.torch import load_model

        state, tensors = load_train_state(d)
        self._check_same_policy(d)
        changes = self._changed_settings(d, state.get("train"))
        load_model(self.policy, str(d / "policy" / "model.safetensors"))
        if self.ema is not None and (d / "ema").exists():
            load_model(self.ema.model, str(d / "ema" / "model.safetensors"))
        load_optimizer(self.opt, tensors, state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.source.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        self.step, self.best = state["step"], state.get("best", float("inf"))
        self._truncate_metrics()
        if changes:
            self._apply_changes(changes)
        return True

    def _changed_settings(self, ckpt: Path, saved: dict[str, Any] | None) -> dict[str, tuple[Any, Any]]:
        """OPTIM_KEYS whose value differs from the checkpoint's; refused unless on_resume_change='apply'."""
        if saved is None:  # written before trainer states recorded their settings
            return {}
        changed = {k: (saved[k], getattr(self.cfg, k)) for k in OPTIM_KEYS if k in saved and saved[k] != getattr(self.cfg, k)}
        if (self.cfg.ema_decay is None) != (saved.get("ema_decay") is None):
            changed["ema_decay"] = (saved.get("ema_decay"), self.cfg.ema_decay)
        shown = ", ".join(f"train.{k}={old!r} (now {new!r})" for k, (old, new) in changed.items())
        fixed = [k for k in changed if k in FIXED_KEYS or (k == "ema_decay" and None in changed[k])]
        if fixed:
            raise ConfigError(f"cannot resume '{ckpt}' with changed {', '.join(f'train.{k}' for k in fixed)} ({shown}): "
                              "they change what is trained; resume with the checkpoint's values or start afresh "
                              "(--no-resume / another --out)")
        if changed and self.cfg.on_resume_change != "apply":
            raise ConfigError(f"resuming '{ckpt}' with other optimisation settings than it was trained with: {shown}. "
                              "Resume with the checkpoint's values, or apply the new ones from this step on with "
                              "--set train.on_resume_change=apply")
        return changed

    def _apply_changes(self, changes: dict[str, tuple[Any, Any]]) -> None:
        """The new settings take effect now: lr/schedule from the resumed step, weight decay, EMA decay."""
        import warnings

        cfg = self.cfg
        self.sched.base_lrs = [cfg.lr for _ in self.opt.param_groups]
        for g in self.opt.param_groups:
            g["initial_lr"], g["weight_decay"] = cfg.lr, cfg.weight_decay
            g["lr"] = cfg.lr * lr_factor(self.step, cfg)
        self.sched._last_lr = [g["lr"] for g in self.opt.param_groups]
        if self.ema is not None:
            self.ema.decay = cfg.ema_decay
        self.resume_changes = changes
        shown = ", ".join(f"train.{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
        warnings.warn(f"resumed at step {self.step} with new settings applied from here on: {shown} "
                      f"(lr now {self.opt.param_groups[0]['lr']:.3g})", stacklevel=3)
        self._log({"step": self.step, "resume_changes": {k: list(v) for k, v in changes.items()},
                   "lr": self.opt.param_groups[0]["lr"]})

    def _truncate_metrics(self) -> None:
        """Drop metrics.jsonl lines after the resumed step (they will be logged again) and any line a
        kill cut short; `history` is rebuilt from what is kept."""
        path = self.out / "metrics.jsonl"
        if not path.is_file():
            return
        kept, self.history = [], []
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= self.step:
                kept.append(line)
                if "loss" in rec and "resume_changes" not in rec:
                    self.history.append(rec)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        os.replace(tmp, path)

    def _check_same_policy(self, ckpt: Path) -> None:
        """A checkpoint of another architecture (e.g. written before a recipe's default changed) is
        refused with the settings that differ, instead of a tensor-shape error from the loader."""
        from functools import reduce

        from physai.checkpoint import read_config
        from physai.config import PolicyConfig
        from physai.errors import CheckpointError
        from physai.overrides import flat_keys

        try:
            saved = PolicyConfig.from_dict(read_config(ckpt / "policy")["config"])
        except (KeyError, TypeError, ConfigError) as e:
            raise CheckpointError(f"training checkpoint '{ckpt}': unreadable policy config: {e}") from e
        get = lambda cfg, key: reduce(getattr, key.split("."), cfg)  # noqa: E731
        now = self.policy.config
        diff = [k for k in flat_keys(now) if k != "preset" and get(saved, k) != get(now, k)]
        if diff:
            shown = ", ".join(f"policy.{k}={get(saved, k)!r} (now {get(now, k)!r})" for k in diff[:6])
            raise CheckpointError(f"the checkpoint '{ckpt}' is of another policy: {shown}"
                                  f"{' ...' if len(diff) > 6 else ''}; resume with those --set values, or pass "
                                  "--no-resume (or another --out) to start afresh")

    def save(self) -> Path:
        d = save_train_state(self.ckpt_root / f"step_{self.step:07d}", self.policy, self.ema.model if self.ema else None,
                             self.opt, self.sched, self.source.state_dict(), self.step,
                             {"best": self.best, "train": asdict(self.cfg)})
        prune(self.ckpt_root, self.cfg.keep_last)
        return d

    def eval_policy(self):
        return self.ema.model if self.ema is not None else self.policy

    @torch.no_grad()
    def validate(self) -> float | None:
        if not self.val_batches:
            return None
        model = self.eval_policy()
        model.eval()
        tot = n = 0.0
        for batch in self.val_batches:
            loss, _ = model(batch)
            b = len(batch["action"])
            tot, n = tot + float(loss) * b, n + b
        return tot / n

    # ---- the loop ----------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        self.policy.train()
        batches = list(self.source.sample().values())
        total = sum(len(b["action"]) for b in batches)
        self.opt.zero_grad(set_to_none=True)
        metrics: dict[str, float] = {}
        loss_sum = 0.0
        for b in batches:
            with torch.autocast(self.policy.device.type, dtype=torch.bfloat16, enabled=self.amp):
                loss, m = self.forward(b)
            (loss * len(b["action"]) / total).backward()
            loss_sum += float(loss.detach()) * len(b["action"]) / total
            metrics.update({k: v for k, v in m.items() if k != "loss"})
        # a non-finite loss or gradient stops training at the step it happens, before the optimizer
        # writes it into the weights: the last checkpoint on disk stays the last good one
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf))
        if not (math.isfinite(loss_sum) and math.isfinite(norm)):
            self.opt.zero_grad(set_to_none=True)
            raise TrainingError(f"step {self.step + 1}: non-finite {'loss' if not math.isfinite(loss_sum) else 'gradient'} "
                                f"(loss {loss_sum}, grad norm {norm}); training stopped, the last checkpoint in "
                                f"{self.out} is kept. Lower train.lr (now {self.cfg.lr:g}) or check the data.")
        if self.cfg.grad_clip > 0:
            metrics["grad_norm"] = norm
        self.opt.step()
        if not bool(torch.stack([torch.isfinite(p).all() for p in self.params]).all()):  # one sync, not one per tensor
            raise TrainingError(f"step {self.step + 1}: the optimizer step made weights non-finite; training "
                                f"stopped, the last checkpoint in {self.out} is kept. Lower train.lr (now {self.cfg.lr:g}).")
        self.sched.step()
        if self.ema is not None:
            self.ema.update(self.policy)
        metrics.update(loss=loss_sum, lr=self.sched.get_last_lr()[0], samples=total)
        return metrics

    def fit(self, show_progress: bool = True, until: int | None = None) -> dict[str, Any]:
        """Train to `cfg.steps` (or stop early at step `until`, e.g. to change the data source);
        `final` is written only when the run reaches `cfg.steps`."""
        cfg = self.cfg
        stop = cfg.steps if until is None else min(int(until), cfg.steps)
        t0, samples = time.perf_counter(), 0
        cols = [TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[sps]:.0f} samples/s"),
                TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*cols, disable=not show_progress, transient=False) as prog:
            task = prog.add_task("train", total=cfg.steps, completed=self.step, loss=float("nan"), sps=0.0)
            while self.step < stop:
                m = self.train_step()
                self.step += 1
                samples += m["samples"]
                sps = samples / (time.perf_counter() - t0)
                prog.update(task, completed=self.step, loss=m["loss"], sps=sps)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    rec = {"step": self.step, "samples_per_s": sps, **m}
                    self.history.append(rec)
                    self._log(rec)
                if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                    self._checkpoint()
        final = self.out / "final"
        if self.step >= cfg.steps:
            self.eval_policy().save_pretrained(final, training=self.card_training())
        return {"steps": self.step, "seconds": time.perf_counter() - t0, "samples_per_s": samples / max(time.perf_counter() - t0, 1e-9),
                "final": str(final), "best": str(self.out / "best"), "best_metric": self.best}

    def card_training(self) -> dict:
        """The model card's training section: `card` (what the caller says: recipe, datasets) plus
        this run's step count."""
        import datetime as dt

        return {**self.card, "steps": self.step,
                "finished": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}

    def _checkpoint(self) -> None:
        val = self.validate()
        metric = val if val is not None else float(np.mean([h["loss"] for h in self.history[-5:]] or [np.inf]))
        extra = {}
        if self.on_checkpoint is not None:
            extra = self.on_checkpoint(self.step, self.eval_policy()) or {}
        if val is not None:
            self._log({"step": self.step, "val_loss": val, **extra})
        if metric < self.best:
            self.best = metric
            self.eval_policy().save_pretrained(self.out / "best", training=self.card_training())
        self.save()
