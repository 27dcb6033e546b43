"""Crash-safe episode writer over LeRobot's `LeRobotDataset` v3: a kill loses at most the episode in
progress, and plain `LeRobotDataset(repo_id, root=...)` never meets a half-written file.

Why: LeRobot writes an episode's parquet files in place (footers only in `finalize()`) and rewrites
info.json, stats.json and tasks.parquet in place, so a kill inside `save_episode()` leaves a dataset
LeRobot cannot open (a parquet file without its footer) or one that counts an unwritten episode.

Commit protocol: LeRobot never writes in the dataset. Each writer gives it a private work copy, the
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
from physai.errors import ConfigError, DatasetError
from physai.fs import pid_alive

TXN_DIR, TXN_FILE = "meta/.physai_txn", "meta/.physai_txn/txn.json"
WRITER_LOCK, COMMIT_LOCK = "meta/.physai_writer.lock", "meta/.physai_commit.lock"
MUTABLE = ("meta/tasks.parquet", "meta/stats.json", F.META_FILE, "meta/info.json")  # publish order: info last
DATA_DIRS = ("data", "videos", "meta/episodes")  # new files only; publish order
TINY_MB = 1e-6  # file-size limit: every episode starts new parquet files
NEW_PREFIX, WORK_PREFIX, BIRTH_LOCK = ".physai-new-", ".physai-work-", ".physai-lock"  # hidden siblings
TMP = ".physai-tmp"
_NO_LINKS = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


class DatasetBusyError(ConfigError):
    """Another process is writing this dataset (or creating it)."""


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
    """Files under DATA_DIRS, in publish order (by folder, then by name)."""
    out = []
    for d in DATA_DIRS:
        if (root / d).is_dir():
            out += sorted(str(p.relative_to(root)) for p in (root / d).rglob("*") if p.is_file())
    return out


class _NewFiles:
    """Finds the files a commit added to a work copy without listing all of them: LeRobot's file
    indices only grow, so a chunk folder seen before is listed again only if it is its parent's last
    or its mtime changed. O(chunk folders + one chunk) per commit instead of O(episodes)."""

    def __init__(self, root: Path, known: set[str]):
        self.root, self.known, self.leaves = root, known, {}
        self.take()

    def take(self) -> list[str]:
        new: list[str] = []
        for d in DATA_DIRS:
            if (self.root / d).is_dir():
                self._visit(self.root / d, True, new)
        self.known.update(new)
        return new

    def _visit(self, folder: Path, last: bool, new: list[str]) -> None:
        mtime = folder.stat().st_mtime_ns
        if not last and self.leaves.get(folder) == mtime:
            return
        entries = list(os.scandir(folder))
        subdirs = sorted(e.path for e in entries if e.is_dir())
        files = sorted(str(Path(e.path).relative_to(self.root)) for e in entries if e.is_file())
        new += [f for f in files if f not in self.known]
        if not subdirs:
            self.leaves[folder] = mtime
        for i, sub in enumerate(subdirs):
            self._visit(Path(sub), i == len(subdirs) - 1, new)


def _stage(src: Path, dst: Path) -> Path:
    """A copy of `src` beside `dst` under a temporary name (which no LeRobot reader looks at)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}{TMP}")
    shutil.copyfile(src, tmp)
    return tmp


def _copy_replace(src: Path, dst: Path) -> None:
    """Make `dst` a copy of `src` atomically: readers see the old file or the whole new one."""
    os.replace(_stage(src, dst), dst)


def _link(src: Path, dst: Path) -> None:
    """Hard-link `src` at `dst` (an atomic copy where the file system has no hard links)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in _NO_LINKS:
            raise
        _copy_replace(src, dst)


# ---- the commit journal, in the dataset ---------------------------------------------------------
def _begin_txn(root: Path, new: list[str], total_episodes: int) -> None:
    tdir = root / TXN_DIR
    shutil.rmtree(tdir, ignore_errors=True)
    (tdir / "backup").mkdir(parents=True)
    backups = {}
    for i, rel in enumerate(MUTABLE):
        backups[rel] = (root / rel).is_file()
        if backups[rel]:  # a link: publishing renames a new file over `rel`, the old inode stays here
            _link(root / rel, tdir / "backup" / str(i))
    F.atomic_write_json(root / TXN_FILE, {"pid": os.getpid(), "total_episodes": total_episodes,
                                          "backups": backups, "new": new})


def _end_txn(root: Path) -> None:
    os.unlink(root / TXN_FILE)
    shutil.rmtree(root / TXN_DIR, ignore_errors=True)


def _rollback(root: Path) -> str:
    """Finish or undo the journaled commit (restartable: a kill while undoing is undone again)."""
    txn = json.loads((root / TXN_FILE).read_text())
    if "files" in txn:  # a journal of the earlier in-place writer
        return _rollback_in_place(root, txn)
    ep = txn["total_episodes"] - 1
    info = root / "meta" / "info.json"
    if info.is_file() and json.loads(info.read_text()).get("total_episodes") == txn["total_episodes"]:
        _end_txn(root)  # info.json was replaced: every file was published
        return f"completed the commit of episode {ep} (interrupted after its commit point)"
    for i, rel in reversed(list(enumerate(txn["backups"]))):  # info.json first
        backup = root / TXN_DIR / "backup" / str(i)
        if not txn["backups"][rel]:
            (root / rel).unlink(missing_ok=True)
        elif backup.exists():  # (gone: restored by an earlier, interrupted undo)
            os.replace(backup, root / rel)
        (root / rel).with_name(f".{Path(rel).name}{TMP}").unlink(missing_ok=True)
    for rel in reversed(txn["new"]):  # meta/episodes before the data they refer to
        (root / rel).unlink(missing_ok=True)
        (root / rel).with_name(f".{Path(rel).name}{TMP}").unlink(missing_ok=True)
    _end_txn(root)
    return f"rolled back episode {ep} (its commit was interrupted)"


def _rollback_in_place(root: Path, txn: dict) -> str:
    for i, (rel, existed) in enumerate(txn["backups"].items()):
        if existed:
            _copy_replace(root / TXN_DIR / "backup" / str(i), root / rel)
        else:
            (root / rel).unlink(missing_ok=True)
    keep = set(txn["files"])
    for rel in _relfiles(root):
        if rel not in keep:
            (root / rel).unlink()
    _end_txn(root)
    return "rolled back an interrupted commit (journal of the in-place writer)"


# ---- hidden siblings: work copies, new datasets, the lock of a dataset not born yet ------------
def _try_lock(path: Path) -> int | None:
    """An exclusive flock on `path` (created if missing), or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _take_birth_lock(root: Path) -> int:
    """Hold the lock of the not-yet-born dataset `root`, or raise DatasetBusyError."""
    path = root.parent / f".{root.name}{BIRTH_LOCK}"
    while True:
        fd = _try_lock(path)
        if fd is None:
            raise DatasetBusyError(f"'{root}' is being created by another process")
        try:
            st, now = os.fstat(fd), os.stat(path)
            if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # we locked a file its holder deleted (the dataset was born meanwhile): again


def _release_birth_lock(root: Path, fd: int) -> None:
    (root.parent / f".{root.name}{BIRTH_LOCK}").unlink(missing_ok=True)  # while holding it (see above)
    os.close(fd)


def _clean_stale_siblings(root: Path, births: bool = False) -> list[str]:
    """Remove the work copies and new-dataset dirs of writers that died (their pid is gone, or is ours
    and the work copy's lock is free); with `births` (the caller holds the dataset's writer lock),
    also a leftover lock file of the not-yet-born dataset. Returns the names removed."""
    out = []
    for p in sorted(root.parent.glob(f".{root.name}.physai-*")):
        kind = p.name[len(root.name) + 1:]
        try:
            if kind == BIRTH_LOCK:
                fd = _try_lock(p) if births else None
                if fd is not None:
                    _release_birth_lock(root, fd)
                    out.append(p.name)
                continue
            pid = int(kind.split("-")[2])
            if not kind.startswith((WORK_PREFIX, NEW_PREFIX)) or (pid_alive(pid) and pid != os.getpid()):
                continue
            if kind.startswith(WORK_PREFIX) and (p / ".lock").exists():
                fd = _try_lock(p / ".lock")  # held for its writer's whole life
                if fd is None:
                    continue
                os.close(fd)
            elif kind.startswith(NEW_PREFIX) and pid == os.getpid():
                continue  # ours: exists only inside a commit
        except (ValueError, IndexError, OSError):
            continue
        shutil.rmtree(p, ignore_errors=True)
        out.append(p.name)
    return out


def recover(root: str | Path) -> str | None:
    """Finish or undo a commit whose writer died, and delete dead writers' work copies.
    Returns what was done to the dataset, or None if nothing was needed."""
    root = Path(root)
    if root.parent.is_dir():
        _clean_stale_siblings(root)
    if not (root / TXN_DIR).exists():
        return None
    with _flock(root, COMMIT_LOCK, fcntl.LOCK_EX):  # a live writer holds it for the whole publish
        if (root / TXN_FILE).exists():
            return _rollback(root)
        shutil.rmtree(root / TXN_DIR, ignore_errors=True)  # died before the journal was complete
    return "removed an unfinished journal (nothing had been published)"


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


def repair(root: str | Path) -> dict[str, Any]:
    """`physai data repair`: `recover()`, delete dead writers' siblings and scratch space, then check
    that plain LeRobot loads the dataset with consistent counts. Returns the counts and the repairs."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root).absolute()
    if not F.is_dataset(root):
        stale = _clean_stale_siblings(root) if root.parent.is_dir() else []
        gone = f"; removed {len(stale)} stale sibling(s) of a dataset that was never born" if stale else ""
        raise ConfigError(f"'{root}' is not a LeRobot dataset (no meta/info.json){gone}")
    fd = _lock_fd(root, WRITER_LOCK)
    if fd is None:
        raise ConfigError(f"'{root}' is not writable")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetBusyError(f"'{root}' is being written by another process; repair it once that "
                                   "writer is done") from None
        stale = _clean_stale_siblings(root, births=True)
        done = [a for a in [recover(root)] if a] + [f"removed stale {name}" for name in stale]
        if (root / "images").exists():
            shutil.rmtree(root / "images", ignore_errors=True)
            done.append("removed LeRobot's image scratch folder images/")
        try:
            ds = LeRobotDataset(f"physai/{root.name}", root=root)
        except Exception as e:
            raise DatasetError(f"'{root}': LeRobot cannot load it even after repair: {type(e).__name__}: {e}") from e
        info, lengths = F.read_info(root), ds.meta.episodes["length"]
        episodes = {"info.json": info["total_episodes"], "meta/episodes rows": len(ds.meta.episodes)}
        frames = {"info.json": info["total_frames"], "episode lengths": int(sum(lengths)), "data rows": len(ds.hf_dataset)}
        if (root / F.META_FILE).is_file():
            meta = json.loads((root / F.META_FILE).read_text())
            episodes["physai.json"], frames["physai.json"] = meta.get("total_episodes"), meta.get("total_frames")
        if len(set(episodes.values())) > 1 or len(set(frames.values())) > 1:
            raise DatasetError(f"'{root}': counts disagree even after repair: episodes {episodes}, frames {frames}")
        return {"path": str(root), "episodes": info["total_episodes"], "frames": info["total_frames"], "repaired": done}
    finally:
        os.close(fd)


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
        self._new_files: _NewFiles | None = None  # which files of the work copy the dataset lacks
        self._frames = 0
        self.root.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not F.is_dataset(self.root):
                self._check_empty()
                self._birth_lock = _take_birth_lock(self.root)
                if F.is_dataset(self.root):  # born between our look and our lock
                    _release_birth_lock(self.root, self._birth_lock)
                    self._birth_lock = None
            if self._birth_lock is None:
                self._take_writer_lock()
                _clean_stale_siblings(self.root, births=True)
                recover(self.root)
                shutil.rmtree(self.root / "images", ignore_errors=True)  # scratch space of the in-place writer
                self.meta, _ = F.read_physai_meta(self.root, spec)
            else:
                self._check_empty()
                _clean_stale_siblings(self.root)
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
        fd = _lock_fd(self.root, WRITER_LOCK)
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
        self._work, self._work_lock = work, _try_lock(work / ".lock")
        wds = work / "ds"
        if self._birth_lock is not None:
            self.ds = LeRobotDataset.create(self.repo_id, F.fps_for(self.spec), F.features_for(self.spec), root=wds,
                                            robot_type=self.spec.name, use_videos=False, metadata_buffer_size=1)
            files = []
        else:
            files = _relfiles(self.root)
            for rel in files:
                _link(self.root / rel, wds / rel)
            for rel in MUTABLE:  # LeRobot rewrites these in place: a link would write into the dataset
                if (self.root / rel).is_file():
                    _copy_replace(self.root / rel, wds / rel)
            self.ds = LeRobotDataset(self.repo_id, root=wds)
        self._new_files = _NewFiles(wds, set(files))
        self.ds.meta.update_chunk_settings(data_files_size_in_mb=TINY_MB, video_files_size_in_mb=TINY_MB)
        if self._threads:
            self.ds.start_image_writer(num_threads=self._threads)

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
            self.commit_seconds += time.perf_counter() - t0
        return self.num_episodes - 1

    def _publish(self) -> None:
        wds = self._work / "ds"
        new = self._new_files.take()
        with _flock(self.root, COMMIT_LOCK, fcntl.LOCK_EX):
            _begin_txn(self.root, new, self.num_episodes)
            staged = [(_stage(wds / rel, self.root / rel), self.root / rel) for rel in MUTABLE if (wds / rel).is_file()]
            for rel in new:  # from here to the last rename, plain readers see extra files (see the docstring)
                _link(wds / rel, self.root / rel)
            for tmp, dst in staged:
                os.replace(tmp, dst)  # info.json last: the commit point
            with contextlib.suppress(OSError):  # committed; a journal left here is completed by the next open
                _end_txn(self.root)

    def _birth(self) -> None:
        """First commit of a new dataset: a complete copy, writer lock held, renamed into place."""
        wds, new = self._work / "ds", self.root.parent / f".{self.root.name}{NEW_PREFIX}{os.getpid()}"
        shutil.rmtree(new, ignore_errors=True)
        for rel in self._new_files.take():
            _link(wds / rel, new / rel)
        for rel in MUTABLE:
            _copy_replace(wds / rel, new / rel)
        fd = _try_lock(new / WRITER_LOCK)
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
        _release_birth_lock(self.root, self._birth_lock)
        self._birth_lock = None

    def _reset(self, err: Exception) -> None:
        """After a failed commit: undo what reached the dataset and start a fresh work copy. If that
        fails too, say so on `err` (which the caller re-raises) and disable the writer."""
        self._drop_dataset()
        try:
            if self._birth_lock is not None:
                shutil.rmtree(self.root.parent / f".{self.root.name}{NEW_PREFIX}{os.getpid()}", ignore_errors=True)
            elif (self.root / TXN_FILE).exists():
                with _flock(self.root, COMMIT_LOCK, fcntl.LOCK_EX):
                    _rollback(self.root)
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
            for step in (self.ds.stop_image_writer, self.ds.finalize):
                with contextlib.suppress(Exception):
                    step()
        self.ds = None
        gc.collect()  # LeRobot's __del__ closes (and flushes) parquet writers; make it happen now

    def close(self) -> None:
        """Drop the episode in progress and the work copy; release the locks. Safe after any failure."""
        if self.ds is not None:  # the work copy is thrown away: nothing in it matters now
            for step in (self.discard_episode, self.ds.stop_image_writer, self.ds.finalize):
                with contextlib.suppress(Exception):
                    step()
        self.ds, self._frames = None, 0
        self._remove_work()
        if self._birth_lock is not None:  # nothing was committed: leave no trace
            shutil.rmtree(self.root.parent / f".{self.root.name}{NEW_PREFIX}{os.getpid()}", ignore_errors=True)
            _release_birth_lock(self.root, self._birth_lock)
            self._birth_lock = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
