"""The crash-safety machinery under `DatasetWriter`: locks, the commit journal, publishing files
into a dataset, recovery of an interrupted commit, stale-sibling cleanup, `reading()` for physai's
readers and `repair()` (`physai data repair`). `physai.data.writer` describes the commit protocol
these implement; this module makes no LeRobot writes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from physai.data import format as F
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


def lock_fd(root: Path, rel: str) -> int | None:
    try:
        return os.open(root / rel, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # read-only dataset: nobody can be writing it
        return None


@contextlib.contextmanager
def flock(root: Path, rel: str, mode: int) -> Iterator[None]:
    fd = lock_fd(root, rel)
    try:
        if fd is not None:
            fcntl.flock(fd, mode)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def relfiles(root: Path) -> list[str]:
    """Files under DATA_DIRS, in publish order (by folder, then by name)."""
    out = []
    for d in DATA_DIRS:
        if (root / d).is_dir():
            out += sorted(str(p.relative_to(root)) for p in (root / d).rglob("*") if p.is_file())
    return out


class NewFiles:
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


def stage(src: Path, dst: Path) -> Path:
    """A copy of `src` beside `dst` under a temporary name (which no LeRobot reader looks at)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}{TMP}")
    shutil.copyfile(src, tmp)
    return tmp


def copy_replace(src: Path, dst: Path) -> None:
    """Make `dst` a copy of `src` atomically: readers see the old file or the whole new one."""
    os.replace(stage(src, dst), dst)


def link(src: Path, dst: Path) -> None:
    """Hard-link `src` at `dst` (an atomic copy where the file system has no hard links)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in _NO_LINKS:
            raise
        copy_replace(src, dst)


# ---- the commit journal, in the dataset ---------------------------------------------------------
def begin_txn(root: Path, new: list[str], total_episodes: int) -> None:
    tdir = root / TXN_DIR
    shutil.rmtree(tdir, ignore_errors=True)
    (tdir / "backup").mkdir(parents=True)
    backups = {}
    for i, rel in enumerate(MUTABLE):
        backups[rel] = (root / rel).is_file()
        if backups[rel]:  # a link: publishing renames a new file over `rel`, the old inode stays here
            link(root / rel, tdir / "backup" / str(i))
    F.atomic_write_json(root / TXN_FILE, {"pid": os.getpid(), "total_episodes": total_episodes,
                                          "backups": backups, "new": new})


def end_txn(root: Path) -> None:
    os.unlink(root / TXN_FILE)
    shutil.rmtree(root / TXN_DIR, ignore_errors=True)


def rollback(root: Path) -> str:
    """Finish or undo the journaled commit (restartable: a kill while undoing is undone again)."""
    txn = json.loads((root / TXN_FILE).read_text())
    if "files" in txn:  # a journal of the earlier in-place writer
        return rollback_in_place(root, txn)
    ep = txn["total_episodes"] - 1
    info = root / "meta" / "info.json"
    if info.is_file() and json.loads(info.read_text()).get("total_episodes") == txn["total_episodes"]:
        end_txn(root)  # info.json was replaced: every file was published
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
    end_txn(root)
    return f"rolled back episode {ep} (its commit was interrupted)"


def rollback_in_place(root: Path, txn: dict) -> str:
    for i, (rel, existed) in enumerate(txn["backups"].items()):
        if existed:
            copy_replace(root / TXN_DIR / "backup" / str(i), root / rel)
        else:
            (root / rel).unlink(missing_ok=True)
    keep = set(txn["files"])
    for rel in relfiles(root):
        if rel not in keep:
            (root / rel).unlink()
    end_txn(root)
    return "rolled back an interrupted commit (journal of the in-place writer)"


# ---- hidden siblings: work copies, new datasets, the lock of a dataset not born yet ------------
def try_lock(path: Path) -> int | None:
    """An exclusive flock on `path` (created if missing), or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def take_birth_lock(root: Path) -> int:
    """Hold the lock of the not-yet-born dataset `root`, or raise DatasetBusyError."""
    path = root.parent / f".{root.name}{BIRTH_LOCK}"
    while True:
        fd = try_lock(path)
        if fd is None:
            raise DatasetBusyError(f"'{root}' is being created by another process")
        try:
            st, now = os.fstat(fd), os.stat(path)
            if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # we locked a file its holder deleted (the dataset was born meanwhile): again


def release_birth_lock(root: Path, fd: int) -> None:
    (root.parent / f".{root.name}{BIRTH_LOCK}").unlink(missing_ok=True)  # while holding it (see above)
    os.close(fd)


def clean_stale_siblings(root: Path, births: bool = False) -> list[str]:
    """Remove the work copies and new-dataset dirs of writers that died (their pid is gone, or is ours
    and the work copy's lock is free); with `births` (the caller holds the dataset's writer lock),
    also a leftover lock file of the not-yet-born dataset. Returns the names removed."""
    out = []
    for p in sorted(root.parent.glob(f".{root.name}.physai-*")):
        kind = p.name[len(root.name) + 1:]
        try:
            if kind == BIRTH_LOCK:
                fd = try_lock(p) if births else None
                if fd is not None:
                    release_birth_lock(root, fd)
                    out.append(p.name)
                continue
            pid = int(kind.split("-")[2])
            if not kind.startswith((WORK_PREFIX, NEW_PREFIX)) or (pid_alive(pid) and pid != os.getpid()):
                continue
            if kind.startswith(WORK_PREFIX) and (p / ".lock").exists():
                fd = try_lock(p / ".lock")  # held for its writer's whole life
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
        clean_stale_siblings(root)
    if not (root / TXN_DIR).exists():
        return None
    with flock(root, COMMIT_LOCK, fcntl.LOCK_EX):  # a live writer holds it for the whole publish
        if (root / TXN_FILE).exists():
            return rollback(root)
        shutil.rmtree(root / TXN_DIR, ignore_errors=True)  # died before the journal was complete
    return "removed an unfinished journal (nothing had been published)"


@contextlib.contextmanager
def reading(root: str | Path) -> Iterator[None]:
    """Hold while reading a dataset's files: waits for an in-flight commit, repairs a dead one."""
    root = Path(root)
    for _ in range(5):
        recover(root)
        with flock(root, COMMIT_LOCK, fcntl.LOCK_SH):
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
        stale = clean_stale_siblings(root) if root.parent.is_dir() else []
        gone = f"; removed {len(stale)} stale sibling(s) of a dataset that was never born" if stale else ""
        raise ConfigError(f"'{root}' is not a LeRobot dataset (no meta/info.json){gone}")
    fd = lock_fd(root, WRITER_LOCK)
    if fd is None:
        raise ConfigError(f"'{root}' is not writable")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetBusyError(f"'{root}' is being written by another process; repair it once that "
                                   "writer is done") from None
        stale = clean_stale_siblings(root, births=True)
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
