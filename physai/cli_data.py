"""CLI wiring for data: `physai collect ...` and `physai data repair PATH` (arguments parsed only here).

`add_parsers(sub)` adds `collect` and the `data` group to the top-level subparsers. `collect` calls
`physai.data.collect.collect` and prints a rich table at the end (episodes, frames, frames/s, path);
`data repair` calls `physai.data.journal.repair` (finish or undo an interrupted commit, delete dead
writers' work copies, check plain LeRobot loads it) and prints what it found and did.
`physai bench data` lives with the other benchmarks in `physai.cli_bench`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from physai.report import console


def _kv(s: str) -> tuple[str, object]:
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{s}'")
    k, v = s.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def cmd_collect(args) -> int:
    from physai.data.collect import collect

    kw = dict(args.env_kwarg or [])
    summary: dict | None = None
    try:
        summary = collect(args.env, args.episodes, args.out, seed=args.seed, dagger=args.dagger,
                          video_dir=args.video, max_steps=args.max_steps, env_kwargs=kw)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: the episode in progress was dropped, committed episodes are kept[/]")
    if summary is None:
        from physai.data.format import META_FILE

        meta = Path(args.out) / META_FILE
        n = json.loads(meta.read_text())["total_episodes"] if meta.is_file() else 0
        console.print(f"dataset {args.out}: {n} episodes")
        return 130
    t = Table(title=f"collect {args.env}", header_style="bold")
    for c in ("episodes", "frames", "frames/s", "total episodes", "path"):
        t.add_column(c, justify="right" if c != "path" else "left")
    t.add_row(str(summary["episodes"]), str(summary["frames"]), f"{summary['frames_per_s']:.1f}",
              str(summary["total_episodes"]), summary["path"])
    console.print(t)
    return 0


def cmd_data_repair(args) -> int:
    from physai.data.journal import repair

    r = repair(args.path)
    t = Table(title=f"data repair {r['path']}", header_style="bold")
    t.add_column("item")
    t.add_column("value")
    t.add_row("episodes", str(r["episodes"]))
    t.add_row("frames", str(r["frames"]))
    for i, what in enumerate(r["repaired"] or ["nothing to repair"]):
        t.add_row("repaired" if i == 0 else "", what)
    t.add_row("plain LeRobotDataset", "loads; episode and frame counts agree")
    console.print(t)
    return 0


def add_parsers(sub) -> None:
    """Add `collect` and `data {repair}` to the top-level `physai` subparsers."""
    p = sub.add_parser("collect", help="record expert (or DAgger) episodes into a LeRobot v3 dataset")
    p.add_argument("--env", required=True, help="gymnasium id, e.g. physai/car-highway, physai/g1-walk")
    p.add_argument("--episodes", type=int, required=True, help="episodes to add")
    p.add_argument("--out", required=True, help="dataset directory (created, or appended to)")
    p.add_argument("--seed", type=int, default=0, help="episode k is reset with seed S + k")
    p.add_argument("--dagger", metavar="CHECKPOINT", help="a physai Policy drives; the expert's actions are recorded")
    p.add_argument("--video", metavar="DIR", help="also write one MP4 roll-out per episode here")
    p.add_argument("--max-steps", type=int, help="cap episode length (default: the env's own limit)")
    p.add_argument("--env-kwarg", type=_kv, action="append", metavar="KEY=VALUE",
                   help="env constructor argument (JSON value), repeatable, e.g. render_images=true")
    p.set_defaults(fn=cmd_collect)

    d = sub.add_parser("data", help="dataset maintenance: repair")
    dsub = d.add_subparsers(dest="data_command", required=True)
    r = dsub.add_parser("repair", help="finish or undo a commit a killed writer left, delete its work copy, "
                                       "check that plain LeRobot loads the dataset")
    r.add_argument("path", help="dataset directory")
    r.set_defaults(fn=cmd_data_repair)
