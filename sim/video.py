"""Roll-out videos: render frames from a physai env and write them to MP4.

`render_frame(env, size)` asks the env (through any wrappers) for a larger frame than its policy
camera (`env.unwrapped.render_frame(size)`, implemented by the humanoid and car envs).
`write_mp4(frames, path, fps)` encodes RGB frames [H, W, 3] uint8 with imageio's ffmpeg plugin
(the binary ships with `imageio-ffmpeg`; no system ffmpeg is needed), writing to a temporary file
beside the target and renaming it, so a crash never leaves a truncated video under the final name.
Odd sizes are padded by one black row/column (H.264 with yuv420p needs even sizes).
`annotate(frame, lines)` draws a small caption (agent, simulated time, command) in the top-left
corner with PIL (a dependency of imageio), first upscaling small frames (nearest neighbour, an
integer factor) to at least `min_height` rows so that the text stays legible.
"""

from __future__ import annotations

import math
import os
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled TrueType font (needs FreeType)
    except (TypeError, OSError, AttributeError):
        return ImageFont.load_default()  # the fixed bitmap font


def annotate(frame: np.ndarray, lines: Sequence[str], min_height: int = 256) -> np.ndarray:
    """`frame` [H, W, 3] uint8 with `lines` of text in its top-left corner, on a dark box; frames
    under `min_height` rows are first upscaled by the smallest integer factor that reaches it."""
    frame = np.asarray(frame)
    k = max(1, math.ceil(int(min_height) / frame.shape[0]))
    if k > 1:
        frame = frame.repeat(k, axis=0).repeat(k, axis=1)  # [kH, kW, 3]
    img = Image.fromarray(np.ascontiguousarray(frame))
    lines = [str(x) for x in lines if x]
    if not lines:
        return np.asarray(img)
    font = _font(max(10, img.height // 24))
    draw = ImageDraw.Draw(img, "RGBA")
    pad, y, boxes = 3, 3, []
    for line in lines:
        x0, y0, x1, y1 = draw.textbbox((pad + 2, y), line, font=font)
        boxes.append((line, y, x1))
        y = y1 + 2
    draw.rectangle((pad, pad, max(b[2] for b in boxes) + 3, y + 1), fill=(0, 0, 0, 150))
    for line, ly, _ in boxes:
        draw.text((pad + 2, ly), line, fill=(255, 255, 255, 255), font=font)
    return np.asarray(img.convert("RGB"))


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
