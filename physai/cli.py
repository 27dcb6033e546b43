"""The `physai` command line. Arguments are parsed only here; each subcommand calls library code.

Subcommands: info, collect, data, train, eval, rl, demo, bench {data, policies, latency, train, rollout, guard}.
`physai info` prints versions, the attention backend `auto` picks and why, trunk presets with
parameter counts, and every registered embodiment, head, tokenizer and recipe.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import sys
import warnings

# the CLI draws its own rich progress; LeRobot saves every episode through `datasets`, whose "Map:"
# bar it re-enables after each save. Read when `datasets` is first imported (not at `import physai`).
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
warnings.filterwarnings("ignore", message="Cannot (en|dis)able progress bars")  # LeRobot's re-enabling, refused

from rich.table import Table
from rich.text import Text

from physai.report import console  # noqa: E402  (one console, wide when not a terminal)


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def cmd_info(args) -> int:
    import torch

    import physai
    import physai.heads
    import physai.recipes
    import physai.tokenizers
    from physai.attention import default_backend
    from physai.embodiments import EMBODIMENTS, get_spec
    from physai.heads import HEADS
    from physai.recipes import RECIPES
    from physai.tokenizers import TOKENIZERS
    from physai.trunk import TRUNK_PRESETS, Trunk, count_params

    t = Table(title="physai info", show_header=True, header_style="bold")
    t.add_column("item")
    t.add_column("value")
    t.add_row("physai", physai.__version__)
    for dist in ("torch", "lerobot", "mujoco", "timm", "highway-env", "xformers"):
        t.add_row(dist, _version(dist))
    t.add_row("cuda", f"{torch.cuda.is_available()} ({torch.cuda.device_count()} devices)")
    backend, why = default_backend()
    t.add_row("attention backend", f"{backend} - {why}")
    console.print(t)

    p = Table(title="trunk presets", header_style="bold")
    for c in ("preset", "width", "depth", "heads", "trunk params"):
        p.add_column(c, justify="right" if c != "preset" else "left")
    with torch.device("meta"):
        for name in TRUNK_PRESETS.names(sort=False):
            cfg = TRUNK_PRESETS.get(name)
            p.add_row(name, str(cfg.width), str(cfg.depth), str(cfg.heads), f"{count_params(Trunk(cfg, 'math')) / 1e6:.2f} M")
    console.print(p)

    e = Table(title="embodiments", header_style="bold")
    for c in ("name", "actions", "proprio", "command", "cameras", "Hz", "default head"):
        e.add_column(c)
    for name in EMBODIMENTS.names():
        s = get_spec(name)
        cmd = ", ".join(f.name for f in s.command)
        cams = ", ".join(f"{c.name} {c.height}x{c.width}" for c in s.cameras)
        e.add_row(name, str(s.action_dim), str(s.proprio_dim), cmd, cams, f"{s.control_hz:g}", s.default_head)
    console.print(e)

    import gymnasium

    import physai.sim  # noqa: F401  (registers the envs)
    from physai.sim.family import families

    v = Table(title="envs (gymnasium ids)", header_style="bold")
    for c in ("env id", "family", "body", "control Hz", "max_episode_steps"):
        v.add_column(c)
    for fam in families():
        for env_id in fam.env_ids:
            emb = fam.embodiment_of(env_id)
            hz = get_spec(emb).control_hz if emb in EMBODIMENTS else float("nan")
            spec = gymnasium.registry.get(env_id)
            v.add_row(env_id, fam.name, emb, f"{hz:g}", str(getattr(spec, "max_episode_steps", "")))
    console.print(v)

    r = Table(title="registries", header_style="bold")
    r.add_column("registry")
    r.add_column("names")
    r.add_row("heads", ", ".join(HEADS.names()))
    r.add_row("tokenizers", ", ".join(TOKENIZERS.names()))
    r.add_row("recipes", ", ".join(RECIPES.names()) or "(none)")
    from physai.sim.suite import list_suites

    r.add_row("body families", "; ".join(f"{f.name} ({', '.join(f.env_ids)})" for f in families()))
    r.add_row("scenario suites", ", ".join(list_suites()))
    console.print(r)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="physai", description="physai: physical-AI policies for cars and humanoids")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, attention backend, presets, registries").set_defaults(fn=cmd_info)
    from physai import cli_bench, cli_data, cli_deploy, cli_rl, cli_run, cli_world

    cli_data.add_parsers(sub)
    cli_run.add_parsers(sub)
    cli_rl.add_parsers(sub)
    cli_world.add_parsers(sub)
    cli_deploy.add_parsers(sub)
    cli_bench.add_parsers(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    from physai.errors import PhysaiError

    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except PhysaiError as e:
        console.print(Text.assemble(("error: ", "bold red"), str(e)))  # the message verbatim, never markup
        return 2


if __name__ == "__main__":
    sys.exit(main())
