"""Crash-safe episode writer over LeRobot's `LeRobotDataset` v3: a kill loses at most the episode in
progress, and plain `LeRobotDataset(repo_id, root=...)` never meets a half-written file.

Why: LeRobot writes an episode's parquet files in place (footers only in `finalize()`) and rewrites
info.json, stats.json and tasks.parquet in place, so a kill inside `save_episode()` leaves a dataset
LeRobot cannot open (a parquet file without its footer) or one that counts an unwritten episode.

Commit protocol (the locks, journal, publishing and recovery are in `physai.data.journal`; this
module drives LeRobot): LeRobot never writes in the dataset. Each writer gives it a private work copy, the
hidden sibling `.<name>.physai-work-<pid>-<k>/ds` (flock'ed while its writer lives, deleted by the
next open once it is dead): data/, videos/ and meta/episodes/ files are hard-linked in (copied where
the file system has no hard links), the files LeRobot rewrites (`MUTABLE`) are copied. Tiny file-size
limits (`update_chunk_settings`) make every episode write new files, so a published file is never
written again. A commit is `save_episode()` + `finalize()` in the work copy, then a publish under the
journal `meta/.physai_txn/` (links to the old `MUTABLE` files, the list of new files): the new files
are hard-linked into the dataset, data -> videos -> meta/episodes (each before what refers to it),
then tasks, stats, physai.json and last info.json, staged under temporary names, are `os.replace`d.
A LeRobot reader loads every file under data/ and meta/episodes/ but takes its episode and frame
totals from info.json, so that rename is the commit point. A journal found on open is completed if
info.json counts the episode, else undone (old files renamed back, new ones deleted).

Remaining window: a kill inside the publish (two links and four renames, ~0.3 ms) leaves complete
extra files that plain LeRobot loads but counts one episode apart (`meta.episodes` rows or data rows
beyond info.json) until physai's next open or `physai data repair` undoes them. physai's readers
(`reading(root)`) share a lock the publish takes exclusively, so they never see it. A failed commit
(a full disk) leaves committed episodes as they were and its own error reaches the caller; if
undoing it fails too, that is a note on the error and the writer is closed.

A new dataset is born atomically: its first episode is linked into another hidden sibling that
already holds the writer lock, which is renamed into place; until then the sibling lock file
`.<name>.physai-lock` makes a second writer for the same folder a `DatasetBusyError` at open. Locks
(`flock`): one writer per dataset. Ctrl-C waits for a commit to end. Nothing is fsync'ed: safe
against kills and crashes, not power loss.

Cost, measured on 2 CPU cores: a commit costs what plain `save_episode()` + `finalize()` cost
(0.12-0.3 s per 50-frame 64x64 episode: LeRobot's PNG embedding and episode stats) plus 5-10 ms of
publishing (new files are found by listing the last chunk folder, not every file). Opening an
N-episode dataset links its 2N files once (~40 ms per 400 episodes) before LeRobot's own load.
Images are PNGs inside the parquet files (`image` dtype), not MP4: at 64x64 PNG encodes as fast as
AV1/H.264 per frame, decodes per frame without seeking, and needs no FFmpeg libraries to read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import itertools
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
from typing import Any

import numpy as np

from physai.data import format as F
from physai.data.journal import (
    COMMIT_LOCK, MUTABLE, NEW_PREFIX, TINY_MB, TXN_FILE, WORK_PREFIX, WRITER_LOCK, DatasetBusyError, NewFiles, begin_txn,
    clean_stale_siblings, copy_replace, end_txn, flock, link, lock_fd, release_birth_lock, relfiles, rollback, stage,
    take_birth_lock, try_lock,
)
from physai.data.journal import TXN_DIR, reading, recover, repair  # noqa: F401  (re-exported: the writer's public API)
from physai.embodiments import EmbodimentSpec
from physai.errors import ConfigError, DatasetError


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
        self.root, self.spec = Path(root).absolute(), spec
        self.repo_id = f"physai/{self.root.name}"
        self._threads, self.ds, self._broken = image_writer_threads, None, None
        self._lock = self._work_lock = self._birth_lock = None  # fds: dataset, work copy, not-yet-born dataset
        self._work: Path | None = None
        self._new_files: NewFiles | None = None  # which files of the work copy the dataset lacks
        self._frames = 0
        self.root.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not F.is_dataset(self.root):
                self._check_empty()
                self._birth_lock = take_birth_lock(self.root)
                if F.is_dataset(self.root):  # born between our look and our lock
                    release_birth_lock(self.root, self._birth_lock)
                    self._birth_lock = None
            if self._birth_lock is None:
                self._take_writer_lock()
                clean_stale_siblings(self.root, births=True)
                recover(self.root)
                shutil.rmtree(self.root / "images", ignore_errors=True)  # scratch space of the in-place writer
                self.meta, _ = F.read_physai_meta(self.root, spec)
            else:
                self._check_empty()
                clean_stale_siblings(self.root)
                self.meta = F.new_physai_meta(spec)
            self._open_work()
        except BaseException:
            self.close()
            raise
        self.session = {"first_episode": self.num_episodes, "episodes": 0, "frames": 0, **(session or {})}
        self.meta["sessions"].append(self.session)
        self.commit_seconds = 0.0  # time spent in save_episode + finalize + publish (for reporting)

    def _check_empty(self) -> None:
        if self.root.exists() and any(self.root.iterdir()):
            raise ConfigError(f"'{self.root}' exists and is not a LeRobot dataset; choose an empty or new directory")

    def _take_writer_lock(self) -> None:
        fd = lock_fd(self.root, WRITER_LOCK)
        if fd is None:
            raise ConfigError(f"'{self.root}' is not writable")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DatasetBusyError(f"'{self.root}' is being written by another process") from None
        self._lock = fd

    def _open_work(self) -> None:
        """The private copy LeRobot writes in: new, or linked from the dataset (see the module docstring)."""
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        for k in itertools.count():
            work = self.root.parent / f".{self.root.name}{WORK_PREFIX}{os.getpid()}-{k}"
            with contextlib.suppress(FileExistsError):
                work.mkdir()
                break
        self._work, self._work_lock = work, try_lock(work / ".lock")
        wds = work / "ds"
        if self._birth_lock is not None:
            self.ds = LeRobotDataset.create(self.repo_id, F.fps_for(self.spec), F.features_for(self.spec), root=wds,
                                            robot_type=self.spec.name, use_videos=False, metadata_buffer_size=1)
            files = []
        else:
            files = relfiles(self.root)
            for rel in files:
                link(self.root / rel, wds / rel)
            for rel in MUTABLE:  # LeRobot rewrites these in place: a link would write into the dataset
                if (self.root / rel).is_file():
                    copy_replace(self.root / rel, wds / rel)
            self.ds = LeRobotDataset.resume(self.repo_id, root=wds)
        self._new_files = NewFiles(wds, set(files))
        self._configure_ds()

    def _configure_ds(self) -> None:
        self.ds.meta.update_chunk_settings(data_files_size_in_mb=TINY_MB, video_files_size_in_mb=TINY_MB)
        if self._threads:
            self.ds.writer.start_image_writer(num_threads=self._threads)

    def _resume_work(self) -> None:
        """After a commit: LeRobot's `finalize()` closes its writer for good, so the next episode is
        written by a fresh writer resumed on the (committed) work copy."""
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        self.ds = LeRobotDataset.resume(self.repo_id, root=self._work / "ds")  # the old one is finalized
        self._configure_ds()

    def _remove_work(self) -> None:
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None
        if self._work_lock is not None:
            os.close(self._work_lock)
            self._work_lock = None

    @property
    def num_episodes(self) -> int:
        return int(self.meta["total_episodes"])

    @property
    def num_frames(self) -> int:
        return int(self.meta["total_frames"])

    @property
    def frames_in_episode(self) -> int:
        return self._frames

    def _usable(self) -> None:
        if self.ds is None:
            why = f" after a failed commit: {self._broken}" if self._broken else ""
            raise DatasetError(f"DatasetWriter('{self.root}') is closed{why}")

    def add_frame(self, images: dict[str, np.ndarray], state: np.ndarray, command: np.ndarray,
                  action: np.ndarray, reward: float, task: str) -> None:
        self._usable()
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
        if self._frames and self.ds is not None:
            self.ds.clear_episode_buffer()
        self._frames = 0

    def commit_episode(self) -> int:
        """Write the buffered episode; returns its index. All or nothing, even under SIGKILL."""
        self._usable()
        if self._frames == 0:
            raise ConfigError("commit_episode: no frames added")
        t0 = time.perf_counter()
        n = self._frames
        counters = (self.meta["total_episodes"], self.meta["total_frames"],
                    self.session["episodes"], self.session["frames"])
        with _DeferSigint():
            self.meta["total_episodes"] += 1
            self.meta["total_frames"] += n
            self.session["episodes"] += 1
            self.session["frames"] += n
            try:
                self.ds.save_episode()
                self.ds.finalize()  # the episode's files are complete, in the work copy only
                F.atomic_write_json(self._work / "ds" / F.META_FILE, self.meta)
                self._birth() if self._birth_lock is not None else self._publish()
            except Exception as e:
                (self.meta["total_episodes"], self.meta["total_frames"],
                 self.session["episodes"], self.session["frames"]) = counters
                self._frames = 0
                self._reset(e)
                raise
            self._frames = 0
            try:  # the episode is committed; only the next one's writer is at stake
                self._resume_work()
            except Exception as e:
                self._broken = f"reopening after the commit failed ({type(e).__name__}: {e})"
                self._drop_dataset()
                self._remove_work()
                raise
            self.commit_seconds += time.perf_counter() - t0
        return self.num_episodes - 1

    def _publish(self) -> None:
        wds = self._work / "ds"
        new = self._new_files.take()
        with flock(self.root, COMMIT_LOCK, fcntl.LOCK_EX):
            begin_txn(self.root, new, self.num_episodes)
            staged = [(stage(wds / rel, self.root / rel), self.root / rel) for rel in MUTABLE if (wds / rel).is_file()]
            for rel in new:  # from here to the last rename, plain readers see extra files (see the docstring)
                link(wds / rel, self.root / rel)
            for tmp, dst in staged:
                os.replace(tmp, dst)  # info.json last: the commit point
            with contextlib.suppress(OSError):  # committed; a journal left here is completed by the next open
                end_txn(self.root)

    def _birth(self) -> None:
        """First commit of a new dataset: a complete copy, writer lock held, renamed into place."""
        wds, new = self._work / "ds", self.root.parent / f".{self.root.name}{NEW_PREFIX}{os.getpid()}"
        shutil.rmtree(new, ignore_errors=True)
        for rel in self._new_files.take():
            link(wds / rel, new / rel)
        for rel in MUTABLE:
            copy_replace(wds / rel, new / rel)
        fd = try_lock(new / WRITER_LOCK)
        try:
            os.rename(new, self.root)  # atomic; fails if the folder was filled meanwhile
        except OSError as e:
            os.close(fd)
            shutil.rmtree(new, ignore_errors=True)
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise DatasetBusyError(f"'{self.root}' was filled by another process while its first episode "
                                       "was recorded") from e
            raise
        self._lock = fd
        release_birth_lock(self.root, self._birth_lock)
        self._birth_lock = None

    def _reset(self, err: Exception) -> None:
        """After a failed commit: undo what reached the dataset and start a fresh work copy. If that
        fails too, say so on `err` (which the caller re-raises) and disable the writer."""
        self._drop_dataset()
        try:
            if self._birth_lock is not None:
                shutil.rmtree(self.root.parent / f".{self.root.name}{NEW_PREFIX}{os.getpid()}", ignore_errors=True)
            elif (self.root / TXN_FILE).exists():
                with flock(self.root, COMMIT_LOCK, fcntl.LOCK_EX):
                    rollback(self.root)
            self._remove_work()
            self._open_work()
        except Exception as e:
            pending = self._birth_lock is None and (self.root / TXN_FILE).exists()
            later = f"; the dataset's next open (or `physai data repair {self.root}`) finishes the undo" if pending else ""
            err.add_note(f"physai: undoing the failed commit failed too ({type(e).__name__}: {e}); the writer is closed "
                         f"and the episodes committed before are intact{later}")
            self._broken = f"{type(err).__name__}: {err}"
            self._drop_dataset()
            self._remove_work()

    def _drop_dataset(self) -> None:
        if self.ds is not None:
            for step in (self.ds.writer.stop_image_writer, self.ds.finalize):
                with contextlib.suppress(Exception):
                    step()
        self.ds = None
        gc.collect()  # LeRobot's __del__ closes (and flushes) parquet writers; make it happen now

    def close(self) -> None:
        """Drop the episode in progress and the work copy; release the locks. Safe after any failure."""
        if self.ds is not None:  # the work copy is thrown away: nothing in it matters now
            for step in (self.discard_episode, self.ds.writer.stop_image_writer, self.ds.finalize):
                with contextlib.suppress(Exception):
                    step()
        self.ds, self._frames = None, 0
        self._remove_work()
        if self._birth_lock is not None:  # nothing was committed: leave no trace
            shutil.rmtree(self.root.parent / f".{self.root.name}{NEW_PREFIX}{os.getpid()}", ignore_errors=True)
            release_birth_lock(self.root, self._birth_lock)
            self._birth_lock = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
