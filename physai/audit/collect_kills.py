"""Kill audit: SIGKILL `physai collect` at random moments, then open the dataset with plain LeRobot.

    python -m physai.audit.collect_kills [--kills 16] [--episodes 40] [--max-steps 30] [--seed 0]
                                          [--out DIR] [--json audit_collect_kills.json]

Each round runs `physai collect --env physai/car-highway --episodes E --out DIR --max-steps S` in a
subprocess, appending to the same dataset; once that run has committed an episode of its own it is
SIGKILLed after a seeded random delay (0 to 3 s, while it records and commits). After each kill
the dataset is opened with plain `LeRobotDataset(repo_id, root=DIR)` - this script imports no
physai code, so nothing repairs the dataset first - and checked: it loads, the last frame
decodes, `ds.num_episodes == len(ds.meta.episodes) == info.json total_episodes`, and
`len(ds) == len(ds.hf_dataset) == sum of episode lengths == info.json total_frames`. At the end
`physai data repair DIR` runs once (as a command) and its verdict is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 200)


def _total_episodes(root: Path) -> int:
    try:
        return json.loads((root / "meta" / "info.json").read_text())["total_episodes"]
    except (OSError, ValueError, KeyError):  # not born yet, or mid-replace
        return -1


def check_plain(root: Path) -> dict:
    """Open `root` with plain LeRobot and compare every count it offers."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out: dict = {"loads": False, "consistent": False, "error": ""}
    try:
        info = json.loads((root / "meta" / "info.json").read_text())
        ds = LeRobotDataset(f"physai/{root.name}", root=root)
        lengths = list(ds.meta.episodes["length"])
        out.update(loads=True, info_episodes=info["total_episodes"], episodes=ds.num_episodes,
                   episode_rows=len(ds.meta.episodes), info_frames=info["total_frames"], frames=len(ds),
                   length_sum=int(sum(lengths)), data_rows=len(ds.hf_dataset))
        if len(ds):
            ds[len(ds) - 1]  # the last frame decodes
        out["consistent"] = (out["episodes"] == out["episode_rows"] == out["info_episodes"]
                             and out["frames"] == out["data_rows"] == out["length_sum"] == out["info_frames"])
    except Exception as e:  # what a user of plain LeRobot would meet
        out["error"] = f"{type(e).__name__}: {str(e)[:120]}"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=16)
    ap.add_argument("--episodes", type=int, default=40, help="episodes each collect run would add if not killed")
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0, help="seeds the kill delays")
    ap.add_argument("--out", help="work folder (default: a temporary one, deleted afterwards)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="physai-kill-audit-"))
    root = work / "ds"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": "egl", "HF_DATASETS_CACHE": str(work / "hf-cache")}
    os.environ.update({k: env[k] for k in ("HF_HUB_OFFLINE", "HF_DATASETS_CACHE")})  # before `datasets` loads
    cmd = [sys.executable, "-m", "physai.cli", "collect", "--env", "physai/car-highway", "--episodes",
           str(args.episodes), "--out", str(root), "--max-steps", str(args.max_steps)]
    rng, rows, t0 = random.Random(args.seed), [], time.time()
    try:
        for k in range(args.kills):
            before = max(_total_episodes(root), 0)
            start = time.time()
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            while p.poll() is None and _total_episodes(root) <= before and time.time() - start < 120:
                time.sleep(0.02)  # wait for this run's first commit
            delay = rng.uniform(0.0, 3.0)
            time.sleep(delay)
            finished = p.poll() is not None
            if not finished:
                p.send_signal(signal.SIGKILL)
            p.wait()
            err = p.stderr.read().decode(errors="replace")
            if finished and p.returncode != 0:
                console.print(f"[red]collect run {k} failed on its own (rc {p.returncode}):[/]\n{err[-2000:]}")
                return 2
            r = check_plain(root)
            r.update(kill=k + 1, at_s=time.time() - start, delay_s=delay, before=before, finished=finished)
            rows.append(r)
            verdict = "readable" if r["loads"] and r["consistent"] else f"NOT readable: {r['error'] or 'counts disagree'}"
            console.print(f"kill {k + 1}/{args.kills}: {r.get('info_episodes', '?')} episodes, {verdict}")
        repair = subprocess.run([sys.executable, "-m", "physai.cli", "data", "repair", str(root)], env=env,
                                capture_output=True, text=True)
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)
    t = Table(title=f"SIGKILL audit: physai collect physai/car-highway, --max-steps {args.max_steps}", header_style="bold")
    for c in ("kill", "killed after (s)", "episodes before", "info.json episodes", "meta/episodes rows",
              "info.json frames", "sum of lengths", "data rows", "loads", "counts agree", "error"):
        t.add_column(c, justify="left" if c == "error" else "right")
    for r in rows:
        g = lambda key: str(r.get(key, "-"))
        t.add_row(str(r["kill"]), f"{r['at_s']:.1f}" + (" (done)" if r["finished"] else ""), str(r["before"]),
                  g("info_episodes"), g("episode_rows"), g("info_frames"), g("length_sum"), g("data_rows"),
                  "yes" if r["loads"] else "[red]no[/]", "yes" if r["consistent"] else "[red]no[/]", r["error"])
    console.print(t)
    good = sum(r["loads"] and r["consistent"] for r in rows)
    console.print(f"physai data repair afterwards: rc {repair.returncode}; "
                  + "; ".join(": ".join(c.strip() for c in s.strip(" │").split("│") if c.strip())
                              for s in repair.stdout.splitlines() if "│" in s)
                  + (f" {repair.stderr[-300:]}" if repair.returncode else ""))
    console.print(f"readable by plain LeRobot: {good}/{len(rows)} "
                  f"(loads {sum(r['loads'] for r in rows)}/{len(rows)}), {time.time() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "readable": good, "kills": len(rows),
                                               "repair_rc": repair.returncode}, indent=2))
    return 0 if good == len(rows) and repair.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
