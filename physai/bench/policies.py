"""`physai bench policies`: physai vs LeRobot ACT vs LeRobot Diffusion, trained on the same
LeRobot datasets for the same number of samples and evaluated in the same closed-loop harness
(same seeds, same safety layer). physai is one co-trained model for every embodiment; the
LeRobot policies are one model per embodiment (they have no multi-embodiment support).
`bench_policies` returns the size / speed figures and the closed-loop rows as plain data.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from physai.bench.common import n_params, percentile_ms
from physai.device import pick_device


def _train_baseline(model, loader, emb: str, samples: int, batch_size: int, lr: float, progress: Progress) -> float:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    model.train()
    seen, t0 = 0, time.perf_counter()
    task = progress.add_task(f"train {model.kind} {emb}", total=samples)
    rng = np.random.default_rng(0)
    n = loader.num_frames()[emb]
    while seen < samples:
        b = loader.batch_for(emb, rng.integers(0, n, batch_size))
        loss, _ = model(b)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        seen += batch_size
        progress.update(task, completed=seen)
    return seen / (time.perf_counter() - t0)


def bench_policies(recipe_name: str = "cotrain", overrides: list[str] | None = None, episodes: int = 5,
                   seed: int = 1000, out: str | Path = "runs/bench_policies", kinds=("act", "diffusion"),
                   device=None) -> dict[str, Any]:
    from physai.baselines import LeRobotBaseline
    from physai.data.loader import MultiEmbodimentLoader
    from physai.overrides import apply_overrides
    from physai.pipeline import dataset_paths, train_recipe
    from physai.recipes import get_recipe
    from physai.sim.evaluate import ExpertAgent, PolicyAgent, evaluate, seeded_scenarios, summarize
    from physai.testing import make_obs

    # same data for all three: no DAgger rounds for physai unless the caller asks for them
    recipe = apply_overrides(get_recipe(recipe_name)(), ["data.dagger_rounds=0", *(overrides or [])])
    out = Path(out)
    t0 = time.perf_counter()
    dev = pick_device(device)  # every policy trains and runs there; the envs stay on the CPU
    res = train_recipe(recipe, out / "physai", resume=False, device=dev)  # fresh: its samples/s is part of the result
    physai_sps = res["samples_per_s"]
    samples_total = recipe.train.steps * recipe.train.batch_size
    from physai.policy import Policy

    pol = Policy.from_pretrained(res["final"], device=dev).eval().optimize_for_inference()
    paths = dataset_paths(recipe)
    loader = MultiEmbodimentLoader({str(p): w for p, w in paths.items()}, batch_size=recipe.train.batch_size,
                                   chunk_size=recipe.policy.head.chunk_size, seed=0)
    weights: dict[str, float] = {}  # sampling weight per embodiment (loader.frames follows `paths`' order)
    for frames, w in zip(loader.frames, paths.values()):
        weights[frames.spec.name] = weights.get(frames.spec.name, 0.0) + w
    wsum = sum(weights.values())
    baselines: dict[str, dict[str, Any]] = {}
    stats: dict[str, dict[str, Any]] = {"physai": {"params_M": n_params(pol) / 1e6, "train_samples_per_s": physai_sps}}
    norm = loader.normalizer({"proprio": recipe.policy.proprio_norm, "action": recipe.policy.action_norm})
    with Progress() as prog:
        for kind in kinds:
            baselines[kind] = {}
            sps, params = [], 0
            for emb, spec in loader.specs.items():
                m = LeRobotBaseline(kind, spec, chunk_size=recipe.policy.head.chunk_size,
                                    n_action_steps=recipe.policy.n_action_steps or recipe.policy.head.chunk_size,
                                    normalizer=norm, **({"dim_model": 256, "dim_feedforward": 1024} if kind == "act" else
                                                        {"down_dims": (64, 128, 256)})).to(dev)
                share = int(samples_total * weights[emb] / wsum)  # same samples per embodiment as physai saw
                sps.append(_train_baseline(m, loader, emb, share, recipe.train.batch_size, 1e-4 if kind == "act" else 3e-4, prog))
                params += n_params(m)
                baselines[kind][emb] = m.eval()
            stats[kind] = {"params_M": params / 1e6, "train_samples_per_s": float(np.mean(sps))}
    # latency: select_action on identical inputs, each policy with its own chunk queue (same chunk
    # size and n_action_steps), so p50 shows the queued calls and p99 the re-planning ones
    for name in ("physai", *kinds):
        lat = []
        for emb, spec in loader.specs.items():
            obs = make_obs(spec)
            if name == "physai":
                pol.reset()
                f = lambda: pol.select_action(obs, emb)
            else:
                mdl = baselines[name][emb]
                mdl.reset()
                f = lambda: mdl.select_action(obs)
            with torch.inference_mode():
                lat.append(percentile_ms(f, 40, 4, device=dev))
        stats[name].update(p50_ms=float(np.mean([l["p50_ms"] for l in lat])), p99_ms=float(np.mean([l["p99_ms"] for l in lat])))
    scenarios = [s for env_id in recipe.eval_env for s in seeded_scenarios(env_id, episodes, seed)]
    from physai.sim.suite import embodiment_of

    agents = {"physai": lambda env_id: PolicyAgent(pol, embodiment_of(env_id)), "expert": ExpertAgent}
    for kind in kinds:
        agents[f"lerobot-{kind}"] = (lambda k: lambda env_id: PolicyAgent(
            baselines[k][embodiment_of(env_id)], embodiment_of(env_id), lerobot=True))(kind)
    results = evaluate(agents, scenarios, video_dir=out / "videos", videos_per_env=2)
    rows = summarize(results)
    return {"recipe": recipe_name, "device": str(dev), "samples_per_policy": samples_total, "episodes": episodes, "seed": seed,
            "stats": stats, "closed_loop": rows, "wall_s": time.perf_counter() - t0}
