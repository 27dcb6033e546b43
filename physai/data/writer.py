"""Crash-safe episode writer over LeRobot's `LeRobotDataset` v3: a kill loses at most the current episode.

LeRobot keeps parquet writers open across episodes (their footers are only written by
`finalize()`), buffers episode metadata and rewrites `info.json`/`stats.json` per episode, so a
SIGKILL can leave a dataset that no longer loads. `DatasetWriter` makes each episode a transaction,
using only LeRobot's public API: (1) the file-size limits are set tiny (`update_chunk_settings`) so
every episode goes to new parquet files and no finalized file is ever reopened; (2) each episode is
committed by `save_episode()` + `finalize()`, framed by a journal `meta/.physai_txn/` holding copies
of the few files LeRobot rewrites (info, stats, tasks, physai.json) and the list of existing data
files; removing `txn.json` is the commit point. A journal found on open (the writer died mid-commit)
is rolled back: files restored, files the dead commit created deleted. A dataset is born atomically
(recorded in a hidden sibling directory, renamed into place after its first episode). Locks
(`flock`): one writer per dataset; readers (`reading(root)`) share a lock the commit takes
exclusively, so they never see a half-written episode. Ctrl-C is deferred until a commit ends.
Cost, measured on 2 CPU cores: a commit takes as long as plain `save_episode()` without the
journal (~0.3 s per 50-frame episode, dominated by LeRobot's PNG embedding and episode stats), at
one parquet file per episode. Nothing is fsync'ed: safe against kills and crashes, not power loss.
Images are PNGs inside the parquet files (`image` dtype), not MP4: at 64x64 PNG encodes as fast as
AV1/H.264 per frame, decodes per frame without seeking, and needs no FFmpeg libraries to read.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import os
import shutil
import signal
import threading
import time

try:  # LeRobot saves episodes through HF `datasets`, whose per-episode "Map" bars drown our rich bar
    from datasets.utils.logging import disable_progress_bar as _quiet_datasets

    _quiet_datasets()
except ImportError:  # pragma: no cover
    pass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from physai.data import format as F
from physai.embodiments import EmbodimentSpec
from physai.errors import ConfigError

TXN_DIR, TXN_FILE = "meta/.physai_txn", "meta/.physai_txn/txn.json"
WRITER_LOCK, COMMIT_LOCK = "meta/.physai_writer.lock", "meta/.physai_commit.lock"
MUTABLE = ("meta/info.json", "meta/stats.json", "meta/tasks.parquet", F.META_FILE)  # rewritten per episode
DATA_DIRS = ("data", "meta/episodes", "videos")  # new files only
TINY_MB = 1e-6  # file-size limit: every episode starts new parquet files
NEW_PREFIX = ".physai-new-"


class DatasetBusyError(ConfigError):
    """Another process is writing this dataset."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_fd(root: Path, rel: str) -> int | None:
    try:
        return os.open(root / rel, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # read-only dataset: nobody can be writing it
        return None


@contextlib.contextmanager
def _flock(root: Path, rel: str, mode: int) -> Iterator[None]:
    fd = _lock_fd(root, rel)
    try:
        if fd is not None:
            fcntl.flock(fd, mode)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def _relfiles(root: Path) -> list[str]:
    out = []
    for d in DATA_DIRS:
        if (root / d).is_dir():
            out += [str(p.relative_to(root)) for p in (root / d).rglob("*") if p.is_file()]
    return sorted(out)


def _begin_txn(root: Path) -> None:
    tdir = root / TXN_DIR
    shutil.rmtree(tdir, ignore_errors=True)
    (tdir / "backup").mkdir(parents=True)
    backups = {}
    for i, rel in enumerate(MUTABLE):
        src = root / rel
        backups[rel] = src.is_file()
        if src.is_file():
            shutil.copy2(src, tdir / "backup" / str(i))
    F.atomic_write_json(root / TXN_FILE, {"pid": os.getpid(), "backups": backups, "files": _relfiles(root)})


def _end_txn(root: Path) -> None:
    os.unlink(root / TXN_FILE)  # the commit point
    shutil.rmtree(root / TXN_DIR, ignore_errors=True)


def _rollback(root: Path) -> None:
    txn = json.loads((root / TXN_FILE).read_text())
    for i, (rel, existed) in enumerate(txn["backups"].items()):
        dst = root / rel
        if existed:
            tmp = dst.with_name(f".{dst.name}.restore")
            shutil.copy2(root / TXN_DIR / "backup" / str(i), tmp)
            os.replace(tmp, dst)
        else:
            dst.unlink(missing_ok=True)
    keep = set(txn["files"])
    for rel in _relfiles(root):
        if rel not in keep:
            (root / rel).unlink()
    _end_txn(root)


def _clean_stale_siblings(root: Path) -> None:
    """Remove hidden new-dataset dirs left by writers that died before their first commit."""
    for p in root.parent.glob(f".{root.name}{NEW_PREFIX}*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def recover(root: str | Path) -> bool:
    """Roll back an episode whose commit was interrupted (writer killed). True if something was undone."""
    root = Path(root)
    if root.parent.is_dir():
        _clean_stale_siblings(root)
    if not (root / TXN_DIR).exists():
        return False
    with _flock(root, COMMIT_LOCK, fcntl.LOCK_EX):  # a live writer holds it for the whole commit
        if (root / TXN_FILE).exists():
            _rollback(root)
            return True
        shutil.rmtree(root / TXN_DIR, ignore_errors=True)  # died before the journal was complete
    return False


@contextlib.contextmanager
def reading(root: str | Path) -> Iterator[None]:
    """Hold while reading a dataset's files: waits for an in-flight commit, repairs a dead one."""
    root = Path(root)
    for _ in range(5):
        recover(root)
        with _flock(root, COMMIT_LOCK, fcntl.LOCK_SH):
            if not (root / TXN_FILE).exists():
                yield
                return
        # a writer died between our recover() and taking the lock: repair again
    raise DatasetBusyError(f"'{root}': commits keep failing while opening; is a writer crashing repeatedly?")


class _DeferSigint:
    """Postpone Ctrl-C until the block ends (main thread only), so a commit is never half done."""

    def __enter__(self):
        self.hit, self.old = False, None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, lambda *_: setattr(self, "hit", True))
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
            if self.hit and exc[0] is None:
                raise KeyboardInterrupt
        return False


class DatasetWriter:
    """Append episodes of one embodiment to a LeRobot dataset at `root` (created if missing)."""

    def __init__(self, root: str | Path, spec: EmbodimentSpec, session: dict[str, Any] | None = None,
                 image_writer_threads: int = 0):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        self.root, self.spec = Path(root).absolute(), spec
        self.repo_id = f"physai/{self.root.name}"
        self._threads, self._lock, self._new = image_writer_threads, None, None
        self.root.parent.mkdir(parents=True, exist_ok=True)
        if F.is_dataset(self.root):
            self._take_writer_lock()
            try:
                recover(self.root)
                shutil.rmtree(self.root / "images", ignore_errors=True)  # frames of an episode that never committed
                self.meta, _ = F.read_physai_meta(self.root, spec)
                self.ds = LeRobotDataset(self.repo_id, root=self.root)
            except BaseException:
                os.close(self._lock)
                self._lock = None
                raise
        else:
            if self.root.exists() and any(self.root.iterdir()):
                raise ConfigError(f"'{self.root}' exists and is not a LeRobot dataset; choose an empty or new directory")
            _clean_stale_siblings(self.root)
            self._create_new()
            self.meta = F.new_physai_meta(spec)
        if image_writer_threads and self._new is None:
            self.ds.start_image_writer(num_threads=image_writer_threads)
        self.session = {"first_episode": self.num_episodes, "episodes": 0, "frames": 0, **(session or {})}
        self.meta["sessions"].append(self.session)
        self._frames = 0
        self.commit_seconds = 0.0  # time spent in save_episode + finalize + journal (for reporting)

    def _create_new(self) -> None:
        """A fresh dataset in a hidden sibling directory (renamed into place by the first commit)."""
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        self._new = self.root.parent / f".{self.root.name}{NEW_PREFIX}{os.getpid()}"
        shutil.rmtree(self._new, ignore_errors=True)
        self.ds = LeRobotDataset.create(self.repo_id, F.fps_for(self.spec), F.features_for(self.spec), root=self._new,
                                        robot_type=self.spec.name, use_videos=False, metadata_buffer_size=1)
        self.ds.meta.update_chunk_settings(data_files_size_in_mb=TINY_MB, video_files_size_in_mb=TINY_MB)
        if self._threads:
            self.ds.start_image_writer(num_threads=self._threads)

    def _take_writer_lock(self) -> None:
        fd = _lock_fd(self.root, WRITER_LOCK)
        if fd is None:
            raise ConfigError(f"'{self.root}' is not writable")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DatasetBusyError(f"'{self.root}' is being written by another process") from None
        self._lock = fd

    @property
    def num_episodes(self) -> int:
        return int(self.meta["total_episodes"])

    @property
    def num_frames(self) -> int:
        return int(self.meta["total_frames"])

    @property
    def frames_in_episode(self) -> int:
        return self._frames

    def add_frame(self, images: dict[str, np.ndarray], state: np.ndarray, command: np.ndarray,
                  action: np.ndarray, reward: float, task: str) -> None:
        # copies: LeRobot keeps references to the arrays until the episode is saved
        frame: dict[str, Any] = {F.image_key(k): np.array(v, dtype=np.uint8) for k, v in images.items()}
        frame[F.STATE] = np.array(state, dtype=np.float32).reshape(-1)
        frame[F.COMMAND] = np.array(command, dtype=np.float32).reshape(-1)
        frame[F.ACTION] = np.array(action, dtype=np.float32).reshape(-1)
        frame[F.REWARD] = np.asarray([reward], dtype=np.float32)
        frame["task"] = task
        self.ds.add_frame(frame)
        self._frames += 1

    def discard_episode(self) -> None:
        """Drop the frames added since the last commit."""
        if self._frames:
            self.ds.clear_episode_buffer()
        self._frames = 0

    def commit_episode(self) -> int:
        """Write the buffered episode; returns its index. All or nothing, even under SIGKILL."""
        if self._frames == 0:
            raise ConfigError("commit_episode: no frames added")
        t0 = time.perf_counter()
        n = self._frames
        counters = (self.meta["total_episodes"], self.meta["total_frames"], self.session["episodes"], self.session["frames"])
        with _DeferSigint():
            self.meta["total_episodes"] += 1
            self.meta["total_frames"] += n
            self.session["episodes"] += 1
            self.session["frames"] += n
            try:
                if self._new is not None:  # first episode of a new dataset: build it aside, then rename
                    try:
                        self.ds.save_episode()
                        self.ds.finalize()
                        F.atomic_write_json(self._new / F.META_FILE, self.meta)
                        os.rename(self._new, self.root)  # atomic; fails if root was filled meanwhile
                    except Exception:
                        self._drop_dataset()
                        self._create_new()  # start the new dataset over
                        raise
                    self._new = None
                    self._reopen()
                else:
                    with _flock(self.root, COMMIT_LOCK, fcntl.LOCK_EX):
                        _begin_txn(self.root)
                        try:
                            self.ds.save_episode()
                            self.ds.finalize()
                            F.atomic_write_json(self.root / F.META_FILE, self.meta)
                        except Exception:  # undo on disk now (a kill is undone by the next open)
                            self._drop_dataset()  # its writers flush on close/__del__: let them, then undo
                            _rollback(self.root)
                            self._reopen(lock=False)
                            raise
                        _end_txn(self.root)
            except Exception:
                (self.meta["total_episodes"], self.meta["total_frames"],
                 self.session["episodes"], self.session["frames"]) = counters
                self._frames = 0
                raise
            self._frames = 0
            self.commit_seconds += time.perf_counter() - t0
        return self.num_episodes - 1

    def _drop_dataset(self) -> None:
        with contextlib.suppress(Exception):
            self.ds.stop_image_writer()
            self.ds.finalize()
        self.ds = None
        gc.collect()  # LeRobot's __del__ closes (and flushes) parquet writers; make it happen now

    def _reopen(self, lock: bool = True) -> None:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        if self.ds is not None:
            self.ds.stop_image_writer()
        if lock:
            self._take_writer_lock()
        self.ds = LeRobotDataset(self.repo_id, root=self.root)
        if self._threads:
            self.ds.start_image_writer(num_threads=self._threads)

    def close(self) -> None:
        self.discard_episode()
        self.ds.stop_image_writer()
        self.ds.finalize()
        if self._new is not None:  # nothing was committed: leave no trace
            shutil.rmtree(self._new, ignore_errors=True)
            self._new = None
        if self._lock is not None:
            shutil.rmtree(self.root / "images", ignore_errors=True)  # LeRobot's per-episode PNG scratch space
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
