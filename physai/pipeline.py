"""The model factory end to end, as library functions the CLI calls: record the datasets a
recipe needs (cached), build the loader and policy, train, and evaluate closed loop against the
expert. `physai train`, `physai eval` and `physai demo` are thin wrappers around these.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import torch

from physai.device import pick_device
from physai.embodiments import get_spec
from physai.errors import CheckpointError, ConfigError
from physai.sim.family import embodiment_of, family_for_env


def ensure_dataset(env_id: str, episodes: int, root: str | Path, seed: int, record,
                   progress: bool = True, action_noise: float = 0.0, slots: int = 2) -> Path:
    """Record (or top up) an expert dataset with the family's recording options `record`; reuses
    what an earlier run already recorded. The folder name carries every setting that changes the
    data (seed, length, noise, the family's own options, and a digest of the body's spec, so a
    recording made under another action/observation/command schema is never topped up or reused)."""
    from physai.data import format as F
    from physai.data.collect import collect

    tag = f"-noise{action_noise:g}" if action_noise > 0 else ""
    tag += record.tag()
    tag += f"-spec{get_spec(embodiment_of(env_id)).digest()}"
    path = Path(root) / f"{env_id.split('/')[-1]}-seed{seed}-{record.seconds:g}s{tag}"
    have = int(F.read_info(path).get("total_episodes", 0)) if F.is_dataset(path) else 0
    if have < episodes:
        collect(env_id, episodes - have, path, seed=seed, seconds=record.seconds, options=record.env_options(),
                progress=progress, action_noise=action_noise, slots=slots, workers=slots > 1,
                instructions=record.instructions)
    return path


def dataset_paths(recipe, progress: bool = True) -> dict[Path, float]:
    """{dataset folder: sampling weight}, one per `data.datasets` entry, in order: env entries are
    recorded (or found in the cache), dataset entries resolved (a path, or a Hub download)."""
    from physai.data.sources import is_dataset_entry, resolve_dataset

    d = recipe.data
    out = {}
    for entry in d.datasets:
        if is_dataset_entry(entry):
            out[resolve_dataset(entry[0], d.root)] = entry[1]
            continue
        env_id, episodes, weight = entry[:3]
        out[ensure_dataset(env_id, episodes, d.root, d.seed, d.entry_record(entry), progress, d.action_noise)] = weight
    return out


def env_datasets(recipe, base: dict[Path, float]) -> list[tuple[str, Path]]:
    """(env id, its recording) for the env entries of `data.datasets` (`base` from `dataset_paths`)."""
    from physai.data.sources import is_dataset_entry

    return [(e[0], p) for e, p in zip(recipe.data.datasets, base) if not is_dataset_entry(e)]


def build_policy(recipe, loader):
    """A fresh policy with the loader's normalization, or one loaded from `recipe.init_from`
    with the recipe's new embodiments added (fine-tuning)."""
    from physai.policy import Policy

    norm = loader.normalizer({"proprio": recipe.policy.proprio_norm, "action": recipe.policy.action_norm,
                              "action_delta": recipe.policy.action_norm})
    fit_residual_stats(norm, loader, recipe.policy.residual_actions)
    if not recipe.init_from:
        return Policy.build(recipe.policy, specs=loader.specs, normalizer=norm)
    if not (Path(recipe.init_from) / "config.json").exists():
        raise CheckpointError(f"recipe '{recipe.name}' starts from '{recipe.init_from}', which does not exist: "
                              f"train it first (e.g. `physai train --recipe cotrain --out runs/cotrain`) "
                              f"or pass --set init_from=DIR")
    pol = Policy.from_pretrained(recipe.init_from)
    for emb, spec in loader.specs.items():
        if emb not in pol.specs:
            pol.add_embodiment(spec, head=recipe.policy.head_type(emb, spec.default_head))
        elif emb in dict(recipe.policy.head_types) and \
                recipe.policy.head_type(emb, "") != pol.config.head_type(emb, spec.default_head):
            pol.replace_head(emb, recipe.policy.head_type(emb, ""))  # the recipe asks for another head
        if emb not in pol.normalizer.stats:  # a pre-trained body keeps the stats its weights were trained with
            pol.normalizer.stats[emb] = norm.stats[emb]
    pol.config = dataclasses.replace(pol.config, residual_actions=tuple(  # (after the new bodies exist)
        dict.fromkeys(pol.config.residual_actions + recipe.policy.residual_actions)))
    pol.normalizer.modes.setdefault("action_delta", recipe.policy.action_norm)
    return pol


def check_buildable(recipe) -> None:
    """Build the recipe's model on the meta device (no memory) before anything is recorded, so a
    setting the stems cannot take (a timm model that cannot read the cameras' size) is a
    `ConfigError` in seconds, not after the recordings."""
    from physai.policy import Policy

    if recipe.init_from:  # the checkpoint's model; only the new bodies' stems are built
        return
    specs = {s.name: s for s in map(recipe.data.entry_spec, recipe.data.datasets)}
    with torch.device("meta"):
        Policy.build(recipe.policy, specs=specs)


def chunk_size(recipe) -> int:
    """The action chunk the trained model predicts: its `init_from` checkpoint's when it has one."""
    if recipe.init_from and (Path(recipe.init_from) / "config.json").is_file():
        from physai.checkpoint import read_config
        from physai.config import PolicyConfig

        return PolicyConfig.from_dict(read_config(recipe.init_from)["config"]).head.chunk_size
    return recipe.policy.head.chunk_size


def fit_residual_stats(norm, loader, embodiments, batches: int = 40) -> None:
    """Stats of (action chunk - last applied action) for embodiments that predict residuals."""
    import numpy as np

    rng = np.random.default_rng(0)
    for emb in embodiments:
        if emb not in loader.specs:
            continue
        spec = loader.specs[emb]
        idx = [spec.proprio_names.index(f"last_action_{a}") for a in spec.action_names]
        n = loader.num_frames()[emb]
        deltas = []
        for _ in range(batches):
            b = loader.batch_for(emb, rng.integers(0, n, 64))
            base = np.asarray(b["proprio"])[:, -1, idx]  # [B, A]
            d = np.asarray(b["action"]) - base[:, None]  # [B, H, A]
            keep = ~np.asarray(b["action_is_pad"])
            deltas.append(d[keep])
        norm.fit(emb, "action_delta", np.concatenate(deltas))


def _make_loader(recipe, base: dict[Path, float], rounds: list[dict[Path, Path]], frames_cache: dict,
                 fixed_share: dict[Path, float] | None = None, held: dict | None = None):
    """A loader over the recordings `base` {path: weight} plus DAgger datasets {path: the recording
    they extend}: a recording's weight is shared with its DAgger data in proportion to frames.
    `fixed_share` {dataset: s}: those extension datasets get together the fraction s of their
    recording's weight (split by frames) instead (the flywheel's mined frames). A recording loaded
    here trains without its first `data.val_episodes` episodes, which go into `held` {path: frames}."""
    from physai.data.frames import load_frames
    from physai.data.loader import MultiEmbodimentLoader

    groups: dict[Path, list[Path]] = {p: [p] for p in base}
    for rd in rounds:
        for p, parent in rd.items():
            groups[parent].append(p)
    weights: dict[str, float] = {}
    for parent, members in groups.items():
        for p in members:
            if str(p) not in frames_cache:
                frames = load_frames(p)
                if p == parent:  # recordings hold episodes out for validation; DAgger data all trains
                    frames, val = frames.hold_out(recipe.data.val_episodes)
                    if val is not None and held is not None:
                        held[str(p)] = val
                frames_cache[str(p)] = frames
        n = {p: len(frames_cache[str(p)]) for p in members}
        fixed = [p for p in members if fixed_share and p in fixed_share]
        share = max((fixed_share[p] for p in fixed), default=0.0)
        rest = [p for p in members if p not in fixed]
        for group, w in ((fixed, share), (rest, 1.0 - share)):
            total = sum(n[p] for p in group)
            for p in group:
                weights[str(p)] = base[parent] * w * n[p] / total
    d = recipe.data
    weighted = {embodiment_of(e[0]): d.entry_record(e) for e in d.env_entries()}  # (a body's last entry decides)
    weighted = {emb: rc for emb, rc in weighted.items() if rc.transition_weight != 1.0}
    seconds = {rc.transition_seconds for rc in weighted.values()}
    if len(seconds) > 1:
        raise ConfigError(f"data.record.*.transition_seconds must agree across the weighted families, got {sorted(seconds)}")
    return MultiEmbodimentLoader(weights, batch_size=recipe.train.batch_size, chunk_size=chunk_size(recipe),
                                 seed=recipe.train.seed, frames={k: frames_cache[k] for k in weights},
                                 transition_weight={emb: rc.transition_weight for emb, rc in weighted.items()},
                                 transition_seconds=seconds.pop() if seconds else 1.5)


def validation_batches(loader, held: dict, chunk: int, n: int = 64) -> list[dict]:
    """A fixed validation set (tracks fit, picks `best`), one batch per embodiment: `n` frames of the
    episodes held out of training (`Frames.hold_out`), or of the training frames for a body whose
    datasets are too small to hold one out."""
    import numpy as np

    from physai.data.loader import _Pool

    rng = np.random.default_rng(12345)
    by_emb: dict[str, list] = {}
    for f in held.values():
        by_emb.setdefault(f.spec.name, []).append(f)
    out = []
    for emb, frames in loader.num_frames().items():
        if emb in by_emb:
            pool = _Pool.build([dataclasses.replace(f) for f in by_emb[emb]])
            out.append(pool.batch(rng.integers(0, pool.state.shape[0], min(n, pool.state.shape[0])), chunk))
        else:
            out.append(loader.batch_for(emb, rng.integers(0, frames, min(n, frames)).tolist()))
    return out


def dagger_boundaries(recipe) -> list[int]:
    """Training steps after which a DAgger round runs (equal phases); none without an env entry
    (a dataset alone has no expert to relabel with)."""
    if not recipe.data.env_entries():
        return []
    R, S = recipe.data.dagger_rounds, recipe.train.steps
    return [S * r // (R + 1) for r in range(1, R + 1)]


class _RolloutJob(NamedTuple):
    """One DAgger collection process: `episodes` roll-outs of `env_id` into `out`, which extends `parent`."""
    env_id: str
    episodes: int
    out: Path
    seed: int
    record: Any  # the family's RecordConfig
    parent: Path


def _collect_part(env_id, episodes, out, seed, checkpoint, record):
    torch.set_num_threads(1)
    from physai.data import format as F
    from physai.data.collect import collect

    have = int(F.read_info(out).get("total_episodes", 0)) if F.is_dataset(out) else 0
    if have < episodes:  # top up what a crashed run left
        collect(env_id, episodes - have, out, seed=seed, dagger=checkpoint, seconds=record.seconds,
                options=record.env_options(), progress=False)
    return str(out)


def dagger_round(recipe, out: Path, r: int, policy, base: dict[Path, float],
                 progress: bool = True) -> dict[Path, Path]:
    """Round r (1-based): `policy` drives, the expert labels; returns {new dataset: the recording it extends}.
    Each round writes its own datasets under out/dagger/round_r and marks them done, so a crash
    mid-round leaves earlier rounds' data untouched and the round is topped up on resume."""
    import concurrent.futures as cf
    import multiprocessing as mp

    from rich.progress import Progress

    d = recipe.data
    root = out / "dagger" / f"round_{r}"
    done = root / "done.json"
    jobs: list[_RolloutJob] = []
    for i, (env_id, parent) in enumerate(env_datasets(recipe, base)):
        parts = family_for_env(env_id).rollout_processes
        for k in range(parts):
            n = d.dagger_episodes // parts + (1 if k < d.dagger_episodes % parts else 0)
            if n:
                seed = d.dagger_seed + 10_000 * r + 1_000 * i + 100 * k
                jobs.append(_RolloutJob(env_id, n, root / f"{env_id.split('/')[-1]}-{k}", seed, d.record_for(env_id),
                                        parent))
    if not done.exists():
        if policy is None:
            raise CheckpointError(f"DAgger round {r} in {root} is incomplete and no policy was given to finish it")
        ckpt = root / "policy"
        if not (ckpt / "config.json").exists():
            policy.save_pretrained(ckpt)
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=2, mp_context=ctx) as ex, Progress(disable=not progress) as prog:
            task = prog.add_task(f"DAgger round {r}: policy drives, expert labels", total=len(jobs))
            futs = [ex.submit(_collect_part, j.env_id, j.episodes, j.out, j.seed, str(ckpt), j.record) for j in jobs]
            for f in cf.as_completed(futs):
                f.result()
                prog.advance(task)
        done.write_text(json.dumps({"round": r, "datasets": [str(j.out) for j in jobs]}))
    return {j.out: j.parent for j in jobs}


def train_recipe(recipe, out: str | Path, resume: bool = True, progress: bool = True,
                 log: Callable[[str], None] | None = None,
                 extra_rounds: list[dict[Path, Path]] | None = None,
                 extra_share: float | None = None, device: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Record (cached), train with the recipe's DAgger rounds, resume from `out`; `log` gets a line
    per DAgger round (the CLI prints them). `extra_rounds`: more labelled datasets ({dataset: the
    recording it extends}, e.g. the flywheel's mined frames), mixed in like DAgger data, or with
    `extra_share` given, sampled as that fraction of their recording's weight."""
    from physai.data import format as F
    from physai.trainer import Trainer

    log = log or (lambda m: None)

    out = Path(out)
    check_buildable(recipe)
    base = dataset_paths(recipe, progress)
    frames_cache: dict = {}
    held: dict = {}  # recording -> its episodes held out for validation
    loader = _make_loader(recipe, base, [], frames_cache, held=held)
    torch.manual_seed(recipe.train.seed)
    policy = build_policy(recipe, loader).to(pick_device(device))  # normalization from the recordings, fixed
    val = validation_batches(loader, held, chunk_size(recipe))
    bounds = dagger_boundaries(recipe)
    rounds: list[dict[Path, Path]] = list(extra_rounds or [])  # per round: {DAgger dataset: recording it extends}
    n_extra = len(rounds)
    fixed = {p: float(extra_share) for rd in rounds for p in rd} if extra_share is not None else None
    if fixed and not 0 < extra_share < 1:
        raise ConfigError(f"extra_share must be in (0, 1), got {extra_share}")
    if rounds:
        loader = _make_loader(recipe, base, rounds, frames_cache, fixed)
    latest = Trainer.latest_in(out) if resume else None
    if latest is not None:  # rebuild the data the checkpoint was trained on: rounds completed before its step
        step = Trainer.step_of(latest)
        for r, b in enumerate(bounds, 1):
            if b < step:
                if not (out / "dagger" / f"round_{r}" / "done.json").exists():
                    raise CheckpointError(f"{latest} was trained after DAgger round {r}, whose data "
                                          f"{out / 'dagger' / f'round_{r}'} is incomplete; pass --no-resume")
                rounds.append(dagger_round(recipe, out, r, None, base, progress))
        if rounds:
            loader = _make_loader(recipe, base, rounds, frames_cache, fixed)
    card = {"recipe": recipe.name, "init_from": recipe.init_from or None,
            "datasets": [{"path": str(p), "body": f.spec.name, "weight": float(w), "episodes": f.num_episodes,
                          "frames": len(f)} for p, w in base.items() for f in [frames_cache[str(p)]]]}
    trainer = Trainer(policy, loader, recipe.train, out, val_batches=val, card=card)
    resumed = trainer.resume() if resume else False
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(_asdict(recipe), indent=2))
    t0 = time.perf_counter()
    dagger_s = 0.0
    for r, b in enumerate(bounds, 1):
        if r <= len(rounds) - n_extra:
            continue
        trainer.fit(show_progress=progress, until=b)
        if trainer.step < b:
            break
        t = time.perf_counter()
        rounds.append(dagger_round(recipe, out, r, trainer.eval_policy(), base, progress))
        dagger_s += time.perf_counter() - t
        trainer.source = _make_loader(recipe, base, rounds, frames_cache, fixed)
        frames = {str(p): int(F.read_info(p).get("total_frames", 0)) for p in rounds[-1]}
        log(f"DAgger round {r}: +{sum(frames.values())} labelled frames "
                      f"({time.perf_counter() - t:.0f} s); now {trainer.source.num_frames()}")
    result = trainer.fit(show_progress=progress)
    result["seconds"] = time.perf_counter() - t0  # training + DAgger roll-outs
    result.update(resumed=resumed, datasets={str(p): w for p, w in zip(trainer.source.paths, trainer.source.probs)},
                  history=trainer.history, dagger_rounds=len(rounds), dagger_seconds=dagger_s,
                  params=sum(p.numel() for p in policy.parameters()))
    return result


def _asdict(x):
    return dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x


def _variant_agent(policy, variant: str, bodies: set[str]):
    """A driver factory for a deployment variant of `policy` (see `evaluate_checkpoint`)."""
    import tempfile

    from physai.export import build_variant
    from physai.sim.evaluate import PolicyAgent

    tmp = tempfile.mkdtemp(prefix="physai-variant-")
    if variant == "int8":  # one quantized copy serves every body
        q = build_variant(policy, sorted(bodies)[0], variant, tmp)
        return lambda env_id: PolicyAgent(q, embodiment_of(env_id))
    models = {emb: build_variant(policy, emb, variant, tmp) for emb in sorted(bodies)}
    return lambda env_id: PolicyAgent(models[embodiment_of(env_id)], embodiment_of(env_id))


def evaluate_checkpoint(checkpoint: str | Path, scenarios, safety: bool = True, video: str | Path | None = None,
                        with_expert: bool = True, slots: int = 2, workers: bool = True,
                        progress: bool = True, planner: str | Path | None = None,
                        plan_set: list[str] | tuple = (), variants: tuple[str, ...] = (),
                        device: str | torch.device | None = "cpu", card_title: str | None = None,
                        videos_per_env: int | None = None, inference: Mapping[str, Any] | None = None
                        ) -> dict[str, Any]:
    """Closed-loop evaluation of a checkpoint beside the expert on the same scenarios: per-episode
    records, one summary row per (agent, env), and the per-instruction success rows. `slots` envs
    run at once (in worker processes with `workers`). With a `planner` directory (`physai plan`),
    the same checkpoint also drives with world-model planning (agent `physai+plan`, same seeds).
    `variants` adds deployment variants of the same checkpoint on the same seeds: `int8` (PyTorch
    dynamic int8), `onnx` (the export run by onnxruntime), `onnx-int8` (onnxruntime int8 of it).
    `device`: where the policy runs (`physai.device.pick_device`; the envs and experts stay on the CPU).
    `card_title`: append the summary rows to the checkpoint's model card under this title.
    `videos_per_env`: with `video`, record that many scenarios per env and agent (None: all).
    `inference`: `Policy.set_inference` settings for the checkpoint's agents (e.g. n_action_steps=4)."""
    from physai.policy import Policy
    from physai.sim.evaluate import ExpertAgent, PolicyAgent, evaluate, summarize
    from physai.sim.instructions import instruction_rows

    dev = pick_device("cpu" if variants and str(device) == "auto" else device)
    if variants and dev.type != "cpu":
        raise ConfigError(f"deployment variants {list(variants)} run on the CPU (int8, onnxruntime); use --device cpu")
    policy = Policy.from_pretrained(checkpoint, device=dev)
    if inference:
        policy.set_inference(**inference)
    for sc in scenarios:
        if sc.embodiment not in policy.specs:
            raise ConfigError(f"checkpoint '{checkpoint}' has no '{sc.embodiment}' head (has {sorted(policy.specs)})")
    agents: dict[str, Any] = {"physai": lambda env_id: PolicyAgent(policy, embodiment_of(env_id))}
    plan = None
    if planner is not None:
        from physai.overrides import apply_overrides
        from physai.plan import Planner

        plan = Planner.load(planner, policy)
        plan.cfg = apply_overrides(plan.cfg, list(plan_set))
        wrong = sorted({sc.embodiment for sc in scenarios} - {plan.cfg.embodiment})
        if wrong:
            raise ConfigError(f"planner '{planner}' plans for '{plan.cfg.embodiment}'; the scenarios also drive {wrong}")
        agents["physai+plan"] = lambda env_id: PolicyAgent(plan, embodiment_of(env_id))
    for v in variants:
        agents[f"physai {v}"] = _variant_agent(policy, v, {sc.embodiment for sc in scenarios})
    if with_expert:
        agents["expert"] = ExpertAgent
    res = evaluate(agents, scenarios, safety=safety, video_dir=video, slots=slots, workers=workers and slots > 1,
                   show_progress=progress, videos_per_env=videos_per_env)
    out = {"checkpoint": str(checkpoint), "safety": safety, "inference": dict(inference or {}), "summary": summarize(res),
           "instructions": instruction_rows(res), "episodes": res}
    if plan is not None:
        out["planner"] = {"dir": str(planner), "config": dataclasses.asdict(plan.cfg), "plans": plan.plans,
                          "replaced": plan.replaced, "latency_ms": plan.latency_ms()}
    if card_title:
        from physai.card import add_results
        from physai.sim.family import get_family

        cols = list(dict.fromkeys(c for r in out["summary"] for c in get_family(r["family"]).metric_columns))
        out["card_updated"] = add_results(checkpoint, card_title, out["summary"], cols, safety=safety)
    return out
