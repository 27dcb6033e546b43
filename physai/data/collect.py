"""`collect()`: record expert (or DAgger-relabelled) episodes from a physai env into a LeRobot dataset.

Each episode k of a dataset is reset with seed `seed + k`, so appending to an existing dataset
continues both the episode indices and the seeds. The expert (`CarExpert` for `physai/car-*`,
`HumanoidExpert(robot)` for `physai/g1-*` / `physai/t1-*`) labels every frame from the env's current
state; with `dagger=CHECKPOINT` a physai `Policy` drives (its action is executed) while the
expert's action at each visited state is what gets recorded. Frames go through `DatasetWriter`, so
a crash or Ctrl-C loses at most the episode in progress. `video_dir` writes one MP4 roll-out per
episode through `physai.sim.video`. Returns a summary dict (episodes, frames, seconds, frames/s).
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
from physai.validate import obs_from_env

def make_expert(embodiment: str) -> Any:
    """The scripted expert of an embodiment."""
    if embodiment == "car":
        from physai.sim.car.expert import CarExpert

        return CarExpert()
    if embodiment in ("g1", "t1"):
        from physai.sim.humanoid.expert import HumanoidExpert

        return HumanoidExpert(embodiment)
    raise ConfigError(f"no expert for embodiment '{embodiment}' (known: car, g1, t1)")


def make_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> Any:
    import gymnasium as gym

    if env_id not in gym.registry:
        import physai.sim

        physai.sim.register_envs()
    if env_id not in gym.registry:
        from difflib import get_close_matches

        known = [k for k in gym.registry if k.startswith("physai/")]
        hint = get_close_matches(env_id, known, n=3)
        raise ConfigError(f"unknown env '{env_id}'" + (f"; did you mean {hint}?" if hint else f"; physai envs: {known}"))
    return gym.make(env_id, **dict(env_kwargs or {}))


def _images(obs: Mapping[str, Any], spec: EmbodimentSpec) -> dict[str, np.ndarray]:
    img = np.asarray(obs["image"])
    cams = spec.cameras
    if img.ndim == 3:
        img = img[None]  # one camera
    want = (len(cams), cams[0].height, cams[0].width, 3)
    if img.shape != want or img.dtype != np.uint8:
        raise ObservationError("image", f"uint8 {want[1:]} per camera (spec '{spec.name}')", f"{img.dtype} {img.shape}")
    return {c.name: img[i] for i, c in enumerate(cams)}


def _load_policy(checkpoint: str | Path, embodiment: str) -> Any:
    from physai.policy import Policy

    pol = Policy.from_pretrained(checkpoint)
    if embodiment not in pol.specs:
        raise ConfigError(f"DAgger checkpoint '{checkpoint}' has no '{embodiment}' head (has {sorted(pol.specs)})")
    pol.eval().optimize_for_inference()
    return pol


def collect(env_id: str, episodes: int, out: str | Path, seed: int = 0, dagger: str | Path | None = None,
            video_dir: str | Path | None = None, max_steps: int | None = None,
            env_kwargs: Mapping[str, Any] | None = None, *, expert: Any = None, progress: bool = True,
            video_size: int = 256, action_noise: float = 0.0) -> dict[str, Any]:
    """Record `episodes` episodes of `env_id` into the LeRobot dataset `out` (created or appended to).

    `action_noise` > 0 (DART): the executed action is the expert's plus Gaussian noise of that
    fraction of each dimension's half-range, while the clean expert action is recorded, so the data
    shows how to recover from the small errors a learned policy makes."""
    if not 0.0 <= action_noise < 1.0:
        raise ConfigError(f"action_noise must be in [0, 1), got {action_noise}")
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
    env = make_env(env_id, env_kwargs)
    try:
        emb = F.embodiment_for_env(env_id, env)
        spec = get_spec(emb)
        expert = expert if expert is not None else make_expert(emb)
        policy = _load_policy(dagger, emb) if dagger is not None else None
        if video_dir is not None:
            from physai.sim.video import render_frame, write_mp4
        session = {"env": env_id, "seed": int(seed), "action_noise": float(action_noise), "dagger": None if dagger is None else str(dagger),
                   "env_kwargs": {k: repr(v) for k, v in (env_kwargs or {}).items()}, "max_steps": max_steps}
        writer = DatasetWriter(out, spec, session)
    except BaseException:
        env.close()
        raise
    first, frames, t0 = writer.num_episodes, 0, time.perf_counter()
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[frames]} frames, {task.fields[fps]} frames/s"), TimeElapsedColumn(),
                   disable=not progress)
    try:
        with bar:
            task = bar.add_task(f"collect {env_id}", total=episodes, frames=0, fps="-")
            for _ in range(episodes):
                k = writer.num_episodes
                obs, _ = env.reset(seed=int(seed) + k)
                noise_rng = np.random.default_rng([int(seed), k, 7])
                expert.reset(env)
                if policy is not None:
                    policy.reset()
                video: list[np.ndarray] = []
                done, t = False, 0
                while not done and (max_steps is None or t < max_steps):
                    label = np.asarray(expert.act(env), dtype=np.float32)  # [A] expert at this state
                    act = label
                    if policy is not None:
                        act = policy.select_action(obs_from_env(obs, spec), emb).cpu().numpy().astype(np.float32)
                    elif action_noise > 0:
                        half = (spec.high - spec.low) / 2
                        act = spec.clip_action(label + noise_rng.normal(0.0, action_noise, label.shape) * half)
                    if video_dir is not None:
                        video.append(render_frame(env, video_size))
                    cmd = obs["command"]  # copied now: an env may reuse its observation buffers
                    rec = ({k: v.copy() for k, v in _images(obs, spec).items()}, np.array(obs["proprio"], np.float32),
                           spec.encode_command(cmd), label)
                    task_str = F.task_string(spec, cmd)
                    obs, reward, term, trunc, _ = env.step(act)
                    writer.add_frame(*rec, float(reward), task_str)
                    done, t = bool(term or trunc), t + 1
                frames += writer.frames_in_episode
                idx = writer.commit_episode()
                if video:
                    write_mp4(video, Path(video_dir) / f"{Path(out).name}_ep{idx:06d}.mp4", fps=spec.control_hz)
                dt = time.perf_counter() - t0
                bar.update(task, advance=1, frames=frames, fps=f"{frames / dt:.0f}")
    finally:
        seconds = time.perf_counter() - t0
        committed = writer.num_episodes - first
        frames = writer.session["frames"]
        commit_s = writer.commit_seconds
        writer.close()
        env.close()
    return {"episodes": committed, "frames": frames, "seconds": seconds,
            "frames_per_s": frames / seconds if seconds > 0 else 0.0, "path": str(Path(out)),
            "embodiment": emb, "env": env_id, "first_episode": first, "seeds": [seed + first + i for i in range(committed)],
            "total_episodes": first + committed, "commit_seconds": commit_s}
