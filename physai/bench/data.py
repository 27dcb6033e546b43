"""`physai bench data`: physai's loader against `LeRobotDataset` + a plain torch `DataLoader`.

Both sides serve the same thing from the same data and batch size: per sample the camera image,
the proprio state and the H-step action chunk with its padding mask, plus the observation after
the chunk (the baseline requests `delta_timestamps` {action: 0..H-1, state/image: [0, H]} /fps).
The baseline runs with `num_workers` 0 and 2 (random sampling with replacement, one warm-up batch
excluded so worker start-up is not timed); physai's `MultiEmbodimentLoader` is timed after its
one-off load (reported separately), as the median of 5 runs. Without datasets given, small car (and
G1, if its env and GL rendering work) datasets are recorded with the experts into a cache directory
first, and reused. `bench_data` returns the report as plain data; progress messages go to `log`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from physai.data import format as F

DEFAULT_RECORDINGS = (  # (name, env id, episodes, max steps, env kwargs, required: fail rather than skip)
    ("car", "physai/car-highway", 8, 40, {}, True),
    ("g1", "physai/g1-walk", 4, 100, {"render_images": True}, False),  # needs GL
)


def default_cache_dir() -> Path:
    return Path(os.environ.get("PHYSAI_CACHE", Path.home() / ".cache" / "physai")) / "bench_data"


def _quiet(message: str) -> None:
    pass


def ensure_bench_datasets(cache_dir: str | Path | None = None, log: Callable[[str], None] = _quiet) -> list[Path]:
    """Record (once) the small datasets the benchmark uses when none are given."""
    from physai.data.collect import collect

    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    out = []
    for name, env_id, episodes, steps, kw, required in DEFAULT_RECORDINGS:
        root = cache / name
        have = json.loads((root / F.META_FILE).read_text())["total_episodes"] if (root / F.META_FILE).is_file() else 0
        try:
            if have < episodes:
                log(f"recording {episodes - have} {name} episodes into {root}")
                collect(env_id, episodes - have, root, seed=0, max_steps=steps, env_kwargs=kw)
            out.append(root)
        except Exception as e:  # an env that cannot run here (e.g. no GL for G1) is skipped, not fatal
            if required:
                raise
            log(f"skipping {name}: {type(e).__name__}: {e}")
    return out


def _baseline(root: Path, batch_size: int, chunk: int, batches: int, workers: int, seed: int) -> float:
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from torch.utils.data import DataLoader, RandomSampler

    info = F.read_info(root)
    fps = info["fps"]
    cams = [k for k in info["features"] if k.startswith(F.IMAGE_PREFIX)]
    delta = {F.ACTION: [i / fps for i in range(chunk)], F.STATE: [0.0, chunk / fps]}
    delta.update({k: [0.0, chunk / fps] for k in cams})
    ds = LeRobotDataset(f"physai/{root.name}", root=root, delta_timestamps=delta, video_backend="pyav")
    g = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(ds, replacement=True, num_samples=batch_size * (batches + 1), generator=g)
    it = iter(DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers))
    next(it)  # warm-up: worker start, first file opens
    t0 = time.perf_counter()
    n = 0
    for b in it:
        n += b[F.ACTION].shape[0]
    return n / (time.perf_counter() - t0)


def _physai(paths: Sequence[Path], batch_size: int, chunk: int, batches: int, seed: int,
            repeats: int = 5) -> tuple[float, float]:
    from physai.data.loader import MultiEmbodimentLoader

    t0 = time.perf_counter()
    loader = MultiEmbodimentLoader(list(paths), batch_size=batch_size, chunk_size=chunk, seed=seed)
    load_s = time.perf_counter() - t0
    loader.sample()
    rates = []
    for _ in range(repeats):  # median of repeats: a loaded machine makes sub-ms timings noisy
        t0 = time.perf_counter()
        n = sum(b["action"].shape[0] for _ in range(batches) for b in loader.sample().values())
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates)), load_s


def bench_data(datasets: Sequence[str | Path] | None = None, batch_size: int = 64, chunk_size: int = 8,
               batches: int = 20, workers: Sequence[int] = (0, 2), physai_batches: int = 300, seed: int = 0,
               cache_dir: str | Path | None = None, log: Callable[[str], None] = _quiet) -> dict[str, Any]:
    """Measure samples/s of both loaders per dataset (and physai's on the mixture); returns a report dict."""
    paths = [Path(p) for p in datasets] if datasets else ensure_bench_datasets(cache_dir, log)
    rows = []
    for root in paths:
        meta = json.loads((root / F.META_FILE).read_text()) if (root / F.META_FILE).is_file() else {}
        row: dict[str, Any] = {"dataset": str(root), "embodiment": meta.get("embodiment", "?"),
                               "frames": F.read_info(root)["total_frames"]}
        for w in workers:
            log(f"baseline LeRobotDataset+DataLoader(num_workers={w}) on {root.name}")
            row[f"baseline_w{w}_samples_per_s"] = _baseline(root, batch_size, chunk_size, batches, w, seed)
        log(f"physai loader on {root.name}")
        row["physai_samples_per_s"], row["physai_load_s"] = _physai([root], batch_size, chunk_size, physai_batches, seed)
        best = max(row[f"baseline_w{w}_samples_per_s"] for w in workers)
        row["ratio_vs_best_baseline"] = row["physai_samples_per_s"] / best
        rows.append(row)
    report: dict[str, Any] = {"batch_size": batch_size, "chunk_size": chunk_size, "workers": list(workers),
                              "cpu_threads": os.cpu_count(), "rows": rows,
                              "min_ratio": min(r["ratio_vs_best_baseline"] for r in rows)}
    if len(paths) > 1:
        sps, load_s = _physai(paths, batch_size, chunk_size, physai_batches, seed)
        report["mixed"] = {"datasets": [str(p) for p in paths], "physai_samples_per_s": sps, "physai_load_s": load_s}
    return report
