"""Dataset durability as a plain LeRobot reader sees it: a writer killed at any moment (SIGKILL, or a
simulated kill at a chosen point of a commit), a full disk during a commit and during its undo, two
writers racing for a new folder, and `physai data repair`. "Plain" means
`LeRobotDataset(repo_id, root=...)` with no physai code (no `reading()`, no recovery) in between."""

from __future__ import annotations

import argparse
import atexit
import errno
import gc
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "datasets" not in sys.modules:  # keep HF `datasets`' Arrow copies of every opened dataset out of ~/.cache
    _HF_CACHE = tempfile.mkdtemp(prefix="physai-test-hf-")
    os.environ["HF_DATASETS_CACHE"] = _HF_CACHE
    atexit.register(shutil.rmtree, _HF_CACHE, True)

import numpy as np
import pytest

import physai.data.writer as W
from physai.fs import pid_alive
from physai import cli_data
from physai.data import format as F
from physai.embodiments import get_spec
from physai.errors import PhysaiError

pytestmark = pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0")
FRAME = ({"topdown": np.zeros((64, 64, 3), np.uint8)}, np.zeros(6), np.zeros(get_spec("car").command_dim), np.zeros(2), 0.0, "drive")


class _Kill(BaseException):
    """Raised inside a commit to leave the files as a SIGKILL at that point would (no cleanup runs)."""


def _episodes(w: W.DatasetWriter, n: int, length: int = 3) -> None:
    for _ in range(n):
        for _ in range(length):
            w.add_frame(*FRAME)
        w.commit_episode()


def _plain(root: Path, consistent: bool = True):
    """Open with plain LeRobot; with `consistent`, check every count agrees. Returns the dataset."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(f"physai/{root.name}", root=root)
    if consistent:
        info = json.loads((root / "meta" / "info.json").read_text())
        assert ds.num_episodes == len(ds.meta.episodes) == info["total_episodes"]
        assert len(ds) == len(ds.hf_dataset) == sum(ds.meta.episodes["length"]) == info["total_frames"]
    return ds


def _agree_or_window(root: Path, ds) -> None:
    """Counts agree, or the kill hit the documented publish window (~0.3 ms per commit): then the
    extra files are complete, one episode beyond info.json, and the journal lets physai undo them."""
    info = json.loads((root / "meta" / "info.json").read_text())
    assert ds.num_episodes == info["total_episodes"] and len(ds) == info["total_frames"]
    rows, data = len(ds.meta.episodes), len(ds.hf_dataset)
    if (rows, data) != (info["total_episodes"], info["total_frames"]):
        assert (root / W.TXN_FILE).exists() and rows - info["total_episodes"] in (0, 1) and data > info["total_frames"]
        W.recover(root)
        _plain(root)


def _die(w: W.DatasetWriter) -> None:
    """What the kernel does to a killed writer: its locks go, nothing else runs."""
    for fd in (w._lock, w._work_lock, w._birth_lock):
        if fd is not None:
            os.close(fd)
    w._lock = w._work_lock = w._birth_lock = None


def _kill_before_info(monkeypatch, root: Path) -> None:
    """A kill at the commit point: everything but info.json is published."""
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst, *a, **k: (_ for _ in ()).throw(_Kill())
                        if Path(dst) == root / "meta" / "info.json" else real(src, dst, *a, **k))


def _siblings(root: Path) -> list[Path]:
    return sorted(root.parent.glob(f".{root.name}.physai-*"))


def test_a_kill_inside_finalize_leaves_no_partial_file(tmp_path, monkeypatch):
    """LeRobot writes parquet footers in finalize(): a kill before them must not reach the dataset."""
    from lerobot.datasets.dataset_writer import DatasetWriter

    root = tmp_path / "ds"
    with W.DatasetWriter(root, get_spec("car")) as w:
        _episodes(w, 1)
    w = W.DatasetWriter(root, get_spec("car"))
    real = DatasetWriter.close_writer
    monkeypatch.setattr(DatasetWriter, "close_writer",  # killed before the open parquet file gets its footer
                        lambda self: (_ for _ in ()).throw(_Kill()) if self._pq_writer is not None else real(self))
    for _ in range(3):
        w.add_frame(*FRAME)
    with pytest.raises(_Kill):
        w.commit_episode()
    assert _plain(root).num_episodes == 1  # while the killed writer's half-written file exists
    monkeypatch.undo()
    _die(w)
    del w
    gc.collect()
    with W.DatasetWriter(root, get_spec("car")) as w2:  # cleans the dead writer's work directory, appends
        assert w2.num_episodes == 1
        _episodes(w2, 1)
    assert _plain(root).num_episodes == 2 and _siblings(root) == []


def _killed_before_info(tmp_path, monkeypatch) -> Path:
    """A 2-episode dataset whose writer was killed in the publish of a third, just before info.json."""
    root = tmp_path / "ds"
    with W.DatasetWriter(root, get_spec("car")) as w:
        _episodes(w, 2)
    w = W.DatasetWriter(root, get_spec("car"))
    _kill_before_info(monkeypatch, root)
    with pytest.raises(_Kill):
        _episodes(w, 1)
    monkeypatch.undo()
    _die(w)
    return root


def test_kills_inside_the_publish_step_are_undone_or_completed(tmp_path, monkeypatch):
    root = _killed_before_info(tmp_path, monkeypatch)
    assert _plain(root, consistent=False).num_episodes == 2  # loads; the extra complete files are the window
    assert "rolled back" in W.recover(root) and _plain(root).num_episodes == 2 and not (root / W.TXN_DIR).exists()
    w = W.DatasetWriter(root, get_spec("car"))  # killed after info.json: the commit had happened, keep it
    monkeypatch.setattr(W, "end_txn", lambda root: (_ for _ in ()).throw(_Kill()))
    with pytest.raises(_Kill):
        _episodes(w, 1)
    monkeypatch.undo()
    _die(w)
    assert _plain(root).num_episodes == 3 and (root / W.TXN_FILE).exists()
    assert "completed" in W.recover(root) and _plain(root).num_episodes == 3
    assert json.loads((root / F.META_FILE).read_text())["total_episodes"] == 3


def _full_disk(monkeypatch, names: list[str], when=lambda *a: True) -> list[str]:
    """Make `names` (module.attr) raise ENOSPC; the first failure says [commit], later ones [rollback]."""
    calls: list[str] = []
    for name in names:
        mod, attr = name.rsplit(".", 1)
        target = {"os": os, "shutil": shutil}[mod]
        real = getattr(target, attr)

        def fail(*a, _real=real, _name=name, **k):
            if not when(*a):
                return _real(*a, **k)
            calls.append(_name)
            raise OSError(errno.ENOSPC, f"No space left on device [{'commit' if len(calls) == 1 else 'rollback'}]")

        monkeypatch.setattr(target, attr, fail)
    return calls


@pytest.mark.parametrize("where", ["finalize", "publish"])
def test_full_disk_reports_the_original_error_and_keeps_committed_episodes(tmp_path, monkeypatch, where):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / "ds"
    with W.DatasetWriter(root, get_spec("car")) as w:
        _episodes(w, 2)
    w = W.DatasetWriter(root, get_spec("car"))
    for _ in range(3):
        w.add_frame(*FRAME)
    if where == "finalize":  # LeRobot's own writes fail, then every copy/link the undo would need
        calls = _full_disk(monkeypatch, ["shutil.copyfile", "os.link"])
        monkeypatch.setattr(LeRobotDataset, "finalize", lambda self: (calls.append("finalize"), (_ for _ in ()).throw(
            OSError(errno.ENOSPC, "No space left on device [commit]")))[1])
    else:  # writing a metadata file into the dataset fails, and so does every restore
        calls = _full_disk(monkeypatch, ["os.replace"],
                           when=lambda src, dst, *a: Path(dst).parent == root / "meta")
    with pytest.raises(OSError) as e:
        w.commit_episode()
    assert e.value.errno == errno.ENOSPC and "[commit]" in str(e.value) and len(calls) >= 2
    w.close()  # tolerates the writer the failure left behind
    with pytest.raises(PhysaiError):
        w.add_frame(*FRAME)
    monkeypatch.undo()
    assert _plain(root, consistent=False).num_episodes == 2
    W.recover(root)
    assert _plain(root).num_episodes == 2 and _siblings(root) == []
    with W.DatasetWriter(root, get_spec("car")) as w2:
        _episodes(w2, 1)
    assert _plain(root).num_episodes == 3


def test_two_writers_for_one_new_folder(tmp_path):
    root = tmp_path / "new"
    a = W.DatasetWriter(root, get_spec("car"))
    with pytest.raises(W.DatasetBusyError):  # at open, before either recorded anything
        W.DatasetWriter(root, get_spec("car"))
    _episodes(a, 1)
    with pytest.raises(W.DatasetBusyError):  # born: now its own writer lock says so
        W.DatasetWriter(root, get_spec("car"))
    a.close()
    with W.DatasetWriter(root, get_spec("car")) as b:
        _episodes(b, 1)
    assert _plain(root).num_episodes == 2
    other = tmp_path / "other"  # a folder filled by a non-physai process while the first episode records
    c = W.DatasetWriter(other, get_spec("car"))
    other.mkdir()
    (other / "x.txt").write_text("someone else's")
    with pytest.raises(W.DatasetBusyError):
        _episodes(c, 1)
    c.close()
    assert [p.name for p in other.iterdir()] == ["x.txt"] and _siblings(other) == []


def test_cli_data_repair(tmp_path, monkeypatch, capsys):
    from physai.cli import build_parser

    root = _killed_before_info(tmp_path, monkeypatch)
    assert (root / W.TXN_FILE).exists() and _siblings(root)
    args = build_parser().parse_args(["data", "repair", str(root)])
    assert args.fn(args) == 0
    out = capsys.readouterr().out
    assert "rolled back" in out and "stale" in out and "episodes" in out
    assert _plain(root).num_episodes == 2 and _siblings(root) == [] and not (root / W.TXN_DIR).exists()
    assert args.fn(args) == 0 and "nothing to repair" in capsys.readouterr().out
    collect_args = build_parser().parse_args(["collect", "--env", "x", "--episodes", "1", "--out", "y"])
    assert collect_args.fn is cli_data.cmd_collect
    missing = build_parser().parse_args(["data", "repair", str(tmp_path / "nope")])
    with pytest.raises(PhysaiError):
        missing.fn(missing)


ZYGOTE = r"""
import os, signal, sys
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # imported once; every writer is a fork
from physai.data.writer import DatasetWriter
from physai.embodiments import get_spec
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # reap killed writers at once
root, spec = sys.argv[1], get_spec("car")
frame = ({"topdown": np.zeros((64, 64, 3), np.uint8)}, np.zeros(6), np.zeros(get_spec("car").command_dim), np.zeros(2), 0.0, "drive")
for _ in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            w = DatasetWriter(root, spec)
            while True:
                for _ in range(3):
                    w.add_frame(*frame)
                print(f"committed {w.commit_episode() + 1}", flush=True)
        except BaseException:
            import traceback
            traceback.print_exc()
        os._exit(1)
    print(f"pid {pid}", flush=True)
"""


def test_sigkill_at_random_times_plain_lerobot_reads_every_committed_episode(tmp_path):
    """A real writer process SIGKILLed at random moments: plain LeRobot opens the dataset after every kill."""
    root, rng = tmp_path / "ds", random.Random(7)
    z = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(s.split()) for s in z.stdout], daemon=True).start()
    printed = 0

    def read(deadline: float, until) -> None:
        nonlocal printed
        while not until():
            try:
                msg = lines.get(timeout=max(0.0, deadline - time.time()))
            except queue.Empty:
                pytest.fail("the writer stopped reporting")
            if msg[0] == "committed":
                printed = int(msg[1])
            elif msg[0] == "pid":
                pids.append(int(msg[1]))

    try:
        pids: list[int] = []
        for kill in range(3):
            z.stdin.write("go\n")
            z.stdin.flush()
            start = printed
            read(time.time() + 30, lambda: len(pids) > kill and printed > start)
            time.sleep(rng.uniform(0.0, 0.25))
            os.kill(pids[-1], signal.SIGKILL)
            while pid_alive(pids[-1]):
                time.sleep(0.005)
            time.sleep(0.05)
            while not lines.empty():  # a line printed just before the kill
                read(time.time() + 1, lambda: lines.empty())
            ds = _plain(root, consistent=False)  # plain LeRobot, no physai recovery first: it loads
            _agree_or_window(root, ds)
            n = ds.num_episodes
            assert printed <= n <= printed + 1  # the episode in flight may have reached its commit point
            printed = n
    finally:
        z.stdin.close()
        z.kill()
        z.wait()
    with W.DatasetWriter(root, get_spec("car")) as w:  # physai agrees, and appends
        assert w.num_episodes == printed
        _episodes(w, 1)
    assert _plain(root).num_episodes == printed + 1 and _siblings(root) == []
