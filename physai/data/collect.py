"""`collect()`: record expert (or DAgger-relabelled) episodes from a physai env into a LeRobot dataset.

Each episode k of a dataset is reset with seed `seed + k`, so appending to an existing dataset
continues both the episode indices and the seeds. The env's body family provides the expert, which
labels every frame from the env's current state; with `dagger=CHECKPOINT` a physai `Policy` drives
(its action is executed) while the expert's action at each visited state is what gets recorded.
Episodes are played by the roll-out runner (`physai.sim.rollout`, several envs at once with
`slots`) and committed through `DatasetWriter` in episode order, so a crash or Ctrl-C loses at
most the episodes in progress. `video_dir` writes one real-time MP4 roll-out per episode. Returns a
summary dict (episodes, frames, seconds, frames/s).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from physai.data import format as F
from physai.data.writer import DatasetWriter
from physai.embodiments import EmbodimentSpec, get_spec
from physai.errors import ConfigError, ObservationError
from physai.sim.family import families, family_for_embodiment, family_for_env, register_envs


def make_expert(embodiment: str) -> Any:
    """The scripted expert of an embodiment (its body family's)."""
    return family_for_embodiment(embodiment).make_expert(embodiment)


def make_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> Any:
    import gymnasium as gym

    if env_id not in gym.registry:
        register_envs()
    if env_id not in gym.registry:
        from difflib import get_close_matches

        known = sorted({*gym.registry, *(e for f in families() for e in f.env_ids)})
        hint = get_close_matches(env_id, known, n=3)
        raise ConfigError(f"unknown env '{env_id}'" + (f"; did you mean {hint}?" if hint else ""))
    return gym.make(env_id, **dict(env_kwargs or {}))


def camera_images(obs: Mapping[str, Any], spec: EmbodimentSpec) -> dict[str, np.ndarray]:
    """The env observation's image(s) as {camera name: uint8 [H, W, 3]}, checked against the spec."""
    img = np.asarray(obs["image"])
    cams = spec.cameras
    if img.ndim == 3:
        img = img[None]  # one camera
    want = (len(cams), cams[0].height, cams[0].width, 3)
    if img.shape != want or img.dtype != np.uint8:
        raise ObservationError("image", f"uint8 {want[1:]} per camera (spec '{spec.name}')", f"{img.dtype} {img.shape}")
    return {c.name: img[i] for i, c in enumerate(cams)}


def episode_arrays(res: dict, spec) -> dict[str, np.ndarray]:
    """A recorded episode's frames as arrays: image uint8 [N, C, 3, H, W], proprio [N, Dp], command
    [N, Dc] (encoded) and the executed actions [N, A] (after the guard)."""
    frames = res["frames"]  # (images {cam: [H, W, 3]}, proprio, command, label, reward, task)
    img = np.stack([np.stack([f[0][c.name].transpose(2, 0, 1) for c in spec.cameras]) for f in frames])
    return {"image": img, "proprio": np.stack([f[1] for f in frames]).astype(np.float32),
            "command": np.stack([f[2] for f in frames]).astype(np.float32),
            "action": np.stack(res["actions"]).astype(np.float32)}


def _load_policy(checkpoint: str | Path, embodiment: str) -> Any:
    from physai.policy import Policy

    pol = Policy.from_pretrained(checkpoint)
    if embodiment not in pol.specs:
        raise ConfigError(f"DAgger checkpoint '{checkpoint}' has no '{embodiment}' head (has {sorted(pol.specs)})")
    pol.eval().optimize_for_inference()
    return pol


def collect(env_id: str, episodes: int, out: str | Path, seed: int = 0, dagger: str | Path | None = None,
            video_dir: str | Path | None = None, max_steps: int | None = None,
            env_kwargs: Mapping[str, Any] | None = None, *, seconds: float | None = None,
            options: Mapping[str, Any] | None = None, expert: Any = None, progress: bool = True,
            video_size: int = 256, action_noise: float = 0.0, slots: int = 1, workers: bool = False,
            instructions: bool = False) -> dict[str, Any]:
    """Record `episodes` episodes of `env_id` into the LeRobot dataset `out` (created or appended to).

    The env is built by its body family from `seconds` and `options` (a scenario's), or exactly
    from `env_kwargs` (gym.make keyword arguments) when given. `slots` envs run at once (in worker
    processes with `workers`; needs the family's own expert); finished episodes are committed in
    episode order, so a crash loses only episodes not yet committed.
    `action_noise` > 0 (DART): the executed action is the expert's plus Gaussian noise of that
    fraction of each dimension's half-range, while the clean expert action is recorded, so the data
    shows how to recover from the small errors a learned policy makes. `instructions`: each episode
    follows the family's random instruction timeline for its seed (`BodyFamily.random_commands`)."""
    from physai.sim.rollout import Episode, ExpertDriver, PolicyDriver, run_episodes
    from physai.sim.suite import Scenario

    if not 0.0 <= action_noise < 1.0:
        raise ConfigError(f"action_noise must be in [0, 1), got {action_noise}")
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
    if workers and expert is not None:
        raise ConfigError("collect: a custom expert runs in this process only (workers=False)")
    if env_kwargs is None:
        env_kwargs = family_for_env(env_id).env_kwargs(env_id, seconds, options, images=True)
    env = make_env(env_id, env_kwargs)  # checks the id and kwargs now, and tells the embodiment
    try:
        emb = F.embodiment_for_env(env_id, env)
    finally:
        env.close()
    spec = get_spec(emb)
    if expert is None and not workers and slots == 1:
        expert = make_expert(emb)  # (several slots: each makes its own family expert)
    policy = _load_policy(dagger, emb) if dagger is not None else None
    session = {"env": env_id, "seed": int(seed), "action_noise": float(action_noise),
               "dagger": None if dagger is None else str(dagger),
               "env_kwargs": {k: repr(v) for k, v in env_kwargs.items()}, "max_steps": max_steps}
    writer = DatasetWriter(out, spec, session)
    first, t0 = writer.num_episodes, time.perf_counter()
    fam = family_for_env(env_id)
    timeline = (lambda k: fam.random_commands(env_id, np.random.default_rng([int(seed) + k, 13]), seconds)) \
        if instructions else (lambda k: ())
    eps = [Episode(Scenario(env=env_id, seed=int(seed) + k, commands=timeline(k)), safety=False, label=True, record=True, score=False,
                   action_noise=action_noise, noise_key=(int(seed), k, 7), max_steps=max_steps, env_kwargs=dict(env_kwargs),
                   video=None if video_dir is None else str(Path(video_dir) / f"{Path(out).name}_ep{k:06d}.mp4"),
                   video_size=video_size)
           for k in range(first, first + episodes)]
    driver = PolicyDriver(policy, emb) if policy is not None else ExpertDriver()
    done: dict[int, dict] = {}
    nxt = [first]

    def commit(res: dict) -> None:  # episodes may finish out of order: commit them in order
        done[res["index"] + first] = res
        while nxt[0] in done:
            for images, state, cmd, label, reward, task in done.pop(nxt[0])["frames"]:
                writer.add_frame(images, state, cmd, label, reward, task)
            writer.commit_episode()
            nxt[0] += 1

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[frames]} frames, {task.fields[fps]} frames/s"), TimeElapsedColumn(),
                   disable=not progress)
    try:
        with bar:
            task = bar.add_task(f"collect {env_id}", total=episodes, frames=0, fps="-")

            def advance() -> None:
                n = writer.session["frames"]
                bar.update(task, advance=1, frames=n, fps=f"{n / max(time.perf_counter() - t0, 1e-9):.0f}")

            run_episodes(driver, eps, slots=slots, workers=workers, on_done=commit, progress=advance, expert=expert)
    finally:
        seconds_taken = time.perf_counter() - t0
        committed = writer.num_episodes - first
        frames = writer.session["frames"]
        commit_s = writer.commit_seconds
        writer.close()
    return {"episodes": committed, "frames": frames, "seconds": seconds_taken,
            "frames_per_s": frames / seconds_taken if seconds_taken > 0 else 0.0, "path": str(Path(out)),
            "embodiment": emb, "env": env_id, "first_episode": first,
            "seeds": [seed + first + i for i in range(committed)],
            "total_episodes": first + committed, "commit_seconds": commit_s}
