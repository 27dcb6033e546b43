"""Load a whole (small) physai LeRobot dataset into memory once, as flat uint8/float32 arrays.

`load_frames(root)` checks `meta/physai.json` against the registered spec (or, for a dataset
LeRobot wrote, takes the spec from its metadata: `physai.data.format.dataset_spec`), reads the data parquet
files directly with pyarrow (no HF `datasets` cache copy), decodes every PNG image once (OpenCV,
~65 us per 64x64 frame; PIL as fallback) and, for datasets recorded with videos, every MP4 once,
sequentially with PyAV (never a per-frame seek). The result is a `Frames`: images [N, C, 3, H, W]
uint8, state/command/action [N, D] float32 and, per frame, its episode's first and one-past-last
frame (local indices), sorted by the global frame index. Memory is ~3·H·W bytes per frame
(12 KiB at 64x64), which is the design's assumption: data sets small enough to hold in RAM.
`fingerprint` changes whenever the dataset's files change (used to invalidate cached stats).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from physai.data import format as F
from physai.data.journal import reading
from physai.embodiments import EmbodimentSpec
from physai.errors import ConfigError


@dataclass
class Frames:
    root: Path
    spec: EmbodimentSpec
    images: np.ndarray  # [N, C, 3, H, W] uint8
    state: np.ndarray  # [N, Dp] float32 (raw proprio)
    command: np.ndarray  # [N, Dc] float32 (encoded)
    action: np.ndarray  # [N, A] float32 (physical units)
    episode_index: np.ndarray  # [N] int64
    ep_start: np.ndarray  # [N] int64, first frame of this frame's episode
    ep_end: np.ndarray  # [N] int64, one past its last frame
    fingerprint: str
    recorded_by_physai: bool = True  # False: a dataset LeRobot wrote (physai writes nothing into it)

    def __len__(self) -> int:
        return int(self.state.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(len(np.unique(self.episode_index)))

    def select(self, keep: np.ndarray, tag: str) -> "Frames":
        """The frames where `keep` [N] bool is set, whole episodes only (boundaries recomputed);
        `tag` marks the fingerprint, so a subset's loader state never resumes on the full set."""
        idx = np.flatnonzero(keep)
        ep = self.episode_index[idx]
        change = np.flatnonzero(np.diff(ep)) + 1
        starts, ends = np.concatenate([[0], change]), np.concatenate([change, [len(idx)]])
        lengths = ends - starts
        return Frames(root=self.root, spec=self.spec, images=self.images[idx], state=self.state[idx],
                      command=self.command[idx], action=self.action[idx], episode_index=ep,
                      ep_start=np.repeat(starts, lengths), ep_end=np.repeat(ends, lengths),
                      fingerprint=f"{self.fingerprint}-{tag}", recorded_by_physai=self.recorded_by_physai)

    def hold_out(self, episodes: int) -> tuple["Frames", "Frames | None"]:
        """(training frames, the first `episodes` episodes for validation); everything trains when
        the dataset has no more than `episodes` episodes."""
        ids = np.unique(self.episode_index)
        if episodes <= 0 or len(ids) <= episodes:
            return self, None
        held = np.isin(self.episode_index, ids[:episodes])
        return self.select(~held, f"train{episodes}"), self.select(held, f"val{episodes}")


def fingerprint(root: str | Path) -> str:
    """Changes when episodes are added or removed: totals + names and sizes of every data file."""
    root = Path(root)
    info = F.read_info(root)
    h = hashlib.sha1(f"{info['total_episodes']}:{info['total_frames']}".encode())
    for p in sorted(root.glob("data/*/*.parquet")) + sorted(root.glob("videos/*/*/*.mp4")):
        h.update(f"{p.relative_to(root)}:{p.stat().st_size};".encode())
    return h.hexdigest()[:16]


def _decode_pngs(blobs: list[bytes]) -> np.ndarray:
    """PNG bytes -> [N, H, W, 3] uint8 RGB."""
    try:
        import cv2

        cv2.setNumThreads(1)
        out = np.stack([cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in blobs])
        return out[..., ::-1]  # BGR -> RGB
    except ImportError:
        import io

        from PIL import Image

        return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])


def _fixed(table, key: str, n: int) -> np.ndarray:
    col = table.column(key).combine_chunks()
    return np.asarray(col.flatten(), dtype=np.float32).reshape(n, -1)


def _decode_video_file(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])  # [T, H, W, 3]


def _video_frames(root: Path, info: dict, key: str, episode_index: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
    """Decode each MP4 of `key` once; pick each row's frame by its episode's from_timestamp."""
    import pyarrow.parquet as pq

    cols = ["episode_index", f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp"]
    eps = [pq.read_table(p, columns=cols).to_pydict() for p in sorted(root.glob("meta/episodes/*/*.parquet"))]
    where = {e: (c, f, t) for d in eps for e, c, f, t in zip(*(d[k] for k in cols))}
    fps, cache = info["fps"], {}
    out = None
    for ep in np.unique(episode_index):
        c, f, t0 = where[int(ep)]
        if (c, f) not in cache:
            cache = {(c, f): _decode_video_file(root / info["video_path"].format(video_key=key, chunk_index=c, file_index=f))}
        video = cache[(c, f)]
        rows = np.nonzero(episode_index == ep)[0]
        idx = np.clip(np.round(t0 * fps).astype(np.int64) + frame_index[rows], 0, len(video) - 1)
        if out is None:
            out = np.empty((len(episode_index), *video.shape[1:]), np.uint8)
        out[rows] = video[idx]
    return out


def load_frames(root: str | Path, expect: EmbodimentSpec | str | None = None) -> Frames:
    """Read every committed frame of the dataset at `root` into memory (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    if not F.is_dataset(root):
        raise ConfigError(f"'{root}' is not a LeRobot dataset (no meta/info.json)")
    with reading(root):  # committed files never change afterwards: only listing + reading needs the lock
        spec, ours = F.dataset_spec(root, expect)
        info = F.read_info(root)
        fp = fingerprint(root)
        cam_keys = [F.camera_feature(info["features"], c.name) for c in spec.cameras]
        png_keys = [k for k in cam_keys if info["features"][k]["dtype"] == "image"]
        vectors = [k for k, d in ((F.STATE, spec.proprio_dim), (F.COMMAND, spec.command_dim)) if d] + [F.ACTION]
        cols = png_keys + vectors + ["episode_index", "frame_index", "index"]
        files = sorted(root.glob("data/*/*.parquet"))
        if not files:
            raise ConfigError(f"'{root}' has no data files")
        table = pa.concat_tables([pq.read_table(p, columns=cols) for p in files])
        n = table.num_rows
        order = np.argsort(np.asarray(table.column("index")), kind="stable")
        table = table.take(pa.array(order))
        ep = np.asarray(table.column("episode_index"), dtype=np.int64)
        fidx = np.asarray(table.column("frame_index"), dtype=np.int64)
        videos = {k: _video_frames(root, info, k, ep, fidx) for k in cam_keys if k not in png_keys}
    images = []
    for k in cam_keys:
        img = _decode_pngs(table.column(k).combine_chunks().field("bytes").to_pylist()) if k in png_keys else videos.pop(k)
        images.append(np.ascontiguousarray(img.transpose(0, 3, 1, 2)))  # [N, 3, H, W]
    # episode boundaries: frames of one episode are contiguous once sorted by global index
    change = np.flatnonzero(np.diff(ep)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]])
    if len(np.unique(ep)) != len(starts):
        raise ConfigError(f"'{root}': the frames of an episode are not contiguous in the global index")
    lengths = ends - starts
    cam = spec.cameras[0]
    imgs = images[0][:, None] if len(images) == 1 else np.stack(images, axis=1)  # [N, C, 3, H, W]
    if imgs.shape[1:] != (len(spec.cameras), 3, cam.height, cam.width):
        raise ConfigError(f"'{root}': images {imgs.shape[1:]} do not match spec cameras")
    def vec(key: str, dim: int) -> np.ndarray:
        return _fixed(table, key, n) if key in vectors else np.zeros((n, dim), np.float32)

    return Frames(root=root, spec=spec, images=imgs, state=vec(F.STATE, spec.proprio_dim),
                  command=vec(F.COMMAND, spec.command_dim), action=_fixed(table, F.ACTION, n), episode_index=ep,
                  ep_start=np.repeat(starts, lengths), ep_end=np.repeat(ends, lengths), fingerprint=fp,
                  recorded_by_physai=ours)
