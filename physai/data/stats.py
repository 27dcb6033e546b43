"""Per-dataset normalization statistics, computed once and cached next to the data.

`dataset_stats(frames)` returns proprio/action stats (`physai.normalization.compute_stats`: mean,
std, min, max, q01, q99) for one loaded dataset, reading `meta/physai_norm.safetensors` when its
recorded fingerprint, embodiment, spec hash and widths still match the data, and recomputing and
rewriting it (atomically) otherwise - so appending episodes invalidates it. The file is in
`Normalizer`'s own format (`Normalizer.load` reads it). `merge_stats` combines datasets of one
embodiment: mean/std/min/max exactly (count-weighted moments), the quantiles as count-weighted
means (an approximation; exact for one dataset).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

import numpy as np

from physai.data import format as F
from physai.data.frames import Frames
from physai.embodiments import EmbodimentSpec
from physai.errors import ConfigError
from physai.normalization import STAT_NAMES, compute_stats

Stats = dict[str, dict[str, np.ndarray]]  # key ("proprio" | "action") -> stat name -> [D]


def spec_hash(spec: EmbodimentSpec) -> str:
    return hashlib.sha1(json.dumps(spec.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_cache(frames: Frames) -> Stats | None:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = frames.root / F.NORM_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        arrays = load_file(str(path))
    except Exception:  # unreadable cache: recompute
        return None
    spec = frames.spec
    if (meta.get("format") != "physai-norm-1" or meta.get("fingerprint") != frames.fingerprint
            or meta.get("embodiment") != spec.name or meta.get("spec_hash") != spec_hash(spec)):
        return None
    dims = {"proprio": spec.proprio_dim, "action": spec.action_dim}
    out: Stats = {}
    for key, d in dims.items():
        try:
            out[key] = {s: arrays[f"{spec.name}/{key}/{s}"] for s in STAT_NAMES}
        except KeyError:
            return None
        if any(v.shape != (d,) for v in out[key].values()):
            return None
    return out


def _write_cache(frames: Frames, stats: Stats) -> bool:
    from safetensors.numpy import save_file

    if not frames.recorded_by_physai:  # a dataset LeRobot wrote is the user's: physai adds no file to it
        return False
    path = frames.root / F.NORM_FILE
    spec = frames.spec
    tensors = {f"{spec.name}/{k}/{s}": np.ascontiguousarray(v, dtype=np.float32) for k, ss in stats.items() for s, v in ss.items()}
    meta = {"format": "physai-norm-1", "modes": json.dumps({"proprio": "mean_std", "action": "min_max"}),
            "fingerprint": frames.fingerprint, "embodiment": spec.name, "spec_hash": spec_hash(spec),
            "count": str(len(frames))}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return True
    except OSError:  # read-only dataset: stats are still returned, just not cached
        tmp.unlink(missing_ok=True)
        return False


def dataset_stats(frames: Frames, use_cache: bool = True) -> tuple[Stats, str]:
    """(stats, source) where source is "cache" or "computed"."""
    if use_cache:
        cached = _read_cache(frames)
        if cached is not None:
            return cached, "cache"
    stats = {k: {s: v.astype(np.float32) for s, v in compute_stats(x).items()}
             for k, x in (("proprio", frames.state), ("action", frames.action))}
    if use_cache:
        _write_cache(frames, stats)
    return stats, "computed"


def merge_stats(parts: Sequence[tuple[Stats, int]]) -> Stats:
    """Combine (stats, count) of several datasets of one embodiment."""
    if not parts:
        raise ConfigError("merge_stats: nothing to merge")
    if len(parts) == 1:
        return parts[0][0]
    w = np.asarray([n for _, n in parts], dtype=np.float64)
    w = w / w.sum()
    out: Stats = {}
    for key in parts[0][0]:
        ss = [p[key] for p, _ in parts]
        mean = sum(wi * s["mean"].astype(np.float64) for wi, s in zip(w, ss))
        second = sum(wi * (s["std"].astype(np.float64) ** 2 + s["mean"].astype(np.float64) ** 2) for wi, s in zip(w, ss))
        out[key] = {
            "mean": mean, "std": np.sqrt(np.maximum(second - mean**2, 0.0)),
            "min": np.min([s["min"] for s in ss], axis=0), "max": np.max([s["max"] for s in ss], axis=0),
            "q01": sum(wi * s["q01"] for wi, s in zip(w, ss)), "q99": sum(wi * s["q99"] for wi, s in zip(w, ss)),
        }
        out[key] = {s: np.asarray(v, dtype=np.float32) for s, v in out[key].items()}
    return out
