"""Roll-out videos: render frames from a physai env and write them to MP4.

`render_frame(env, size)` asks the env (through any wrappers) for a larger frame than its policy
camera (`env.unwrapped.render_frame(size)`, implemented by the humanoid and car envs).
`write_mp4(frames, path, fps)` encodes RGB frames [H, W, 3] uint8 with imageio's ffmpeg plugin
(the binary ships with `imageio-ffmpeg`; no system ffmpeg is needed), writing to a temporary file
beside the target and renaming it, so a crash never leaves a truncated video under the final name.
Odd sizes are padded by one black row/column (H.264 with yuv420p needs even sizes).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from physai.errors import BackendUnavailableError, ConfigError


def render_frame(env: Any, size: int = 256) -> np.ndarray:
    """One [size, size, 3] uint8 frame of the env's current state."""
    target = getattr(env, "unwrapped", env)
    if not hasattr(target, "render_frame"):
        raise ConfigError(f"{type(target).__name__} has no render_frame(size); physai envs implement it")
    frame = np.asarray(target.render_frame(int(size)))
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ConfigError(f"render_frame returned {frame.dtype} {frame.shape}; expected uint8 [H, W, 3]")
    return frame


def _pad_even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    ph, pw = h % 2, w % 2
    return np.pad(frame, ((0, ph), (0, pw), (0, 0))) if ph or pw else frame


def write_mp4(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 25.0) -> Path:
    """Encode frames (each [H, W, 3] uint8, all the same size) as H.264 MP4 at `path`; returns it."""
    path = Path(path)
    if len(frames) == 0:
        raise ConfigError("write_mp4: no frames")
    if not fps > 0:
        raise ConfigError(f"write_mp4: fps must be > 0, got {fps}")
    shape = np.asarray(frames[0]).shape
    for i, f in enumerate(frames):
        f = np.asarray(f)
        if f.shape != shape or f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise ConfigError(f"write_mp4: frame {i} is {f.dtype} {f.shape}; expected uint8 {shape} [H, W, 3]")
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (ships the ffmpeg binary)
    except ImportError as e:
        raise BackendUnavailableError("writing MP4 needs 'imageio[ffmpeg]' (pip install imageio imageio-ffmpeg)") from e
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.mp4"))  # created by ffmpeg
    try:
        writer = imageio.get_writer(
            tmp, format="FFMPEG", mode="I", fps=float(fps), codec="libx264", pixelformat="yuv420p",
            macro_block_size=1, ffmpeg_log_level="error",
        )
        try:
            for f in frames:
                writer.append_data(_pad_even(np.asarray(f)))
        finally:
            writer.close()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
