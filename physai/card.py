"""The model card written into every checkpoint: `card.json` (structured) and `README.md` (the Hub's
model card, rendered from it): the bodies the policy drives, the model, what it was trained on, and
the closed-loop results `physai eval` measured on it (each evaluation appends its summary rows).
The loader never reads either file: a card is documentation, not configuration.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

CARD_JSON, CARD_MD = "card.json", "README.md"
MAX_RESULTS = 20  # evaluations kept in a card (the newest)


def card_data(policy, training: Mapping[str, Any] | None = None, results: Sequence[Mapping] = ()) -> dict[str, Any]:
    import physai

    c = policy.config
    bodies = [{"name": e, "actions": list(s.action_names), "action_low": list(s.action_low),
               "action_high": list(s.action_high), "control_hz": s.control_hz,
               "cameras": [f"{cam.name} {cam.height}x{cam.width}" for cam in s.cameras], "proprio_dim": s.proprio_dim,
               "command": [f.name for f in s.command], "head": c.head_type(e, s.default_head)}
              for e, s in policy.specs.items()]
    return {"physai_version": physai.__version__, "bodies": bodies,
            "model": {"preset": c.preset, "trunk_width": c.trunk.width, "trunk_depth": c.trunk.depth,
                      "params": int(sum(p.numel() for p in policy.parameters())), "physical_tokens": c.n_readout,
                      "fsq_levels": list(c.fsq_levels), "chunk_size": c.head.chunk_size,
                      "world_model": policy.world_model is not None},
            "training": dict(training or {}), "results": list(results)[-MAX_RESULTS:]}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v).replace("|", "/")


def render(card: Mapping[str, Any], title: str = "physai policy") -> str:
    """Markdown with the Hub's YAML header."""
    lines = ["---", "library_name: physai", "license: apache-2.0",
             "tags:", "- robotics", "- physai", "- physical-ai", "- lerobot", "---", "", f"# {title}", "",
             f"A [physai](https://github.com/physai) policy (physai {card['physai_version']}): one vision-to-action "
             "transformer for every body below, through a shared discrete physical-token space.", "",
             "## Bodies", "", "| body | actions | cameras | control Hz | proprio | command | head |",
             "|---|---|---|---|---|---|---|"]
    for b in card["bodies"]:
        lines.append(f"| {b['name']} | {len(b['actions'])} ({', '.join(b['actions'][:4])}"
                     f"{', ...' if len(b['actions']) > 4 else ''}) | {', '.join(b['cameras'])} | {b['control_hz']:g} | "
                     f"{b['proprio_dim']} | {', '.join(b['command']) or '-'} | {b['head']} |")
    m = card["model"]
    lines += ["", "## Model", "", f"- trunk preset `{m['preset']}`: width {m['trunk_width']}, depth {m['trunk_depth']}, "
              f"{m['params'] / 1e6:.2f} M parameters", f"- {m['physical_tokens']} physical tokens per step "
              f"(FSQ levels {m['fsq_levels']}), action chunks of {m['chunk_size']}, world model: "
              f"{'yes' if m['world_model'] else 'no'}", "", "## Training", ""]
    t = card.get("training") or {}
    if not t:
        lines.append("Not recorded (saved outside `physai train`).")
    else:
        for k in ("recipe", "init_from", "steps", "samples_per_s", "finished"):
            if k in t:
                lines.append(f"- {k.replace('_', ' ')}: {_fmt(t[k])}")
        if t.get("datasets"):
            lines += ["", "| dataset | body | weight | episodes | frames |", "|---|---|---|---|---|"]
            for d in t["datasets"]:
                lines.append(f"| {d['path']} | {d.get('body', '')} | {_fmt(d.get('weight', ''))} | "
                             f"{d.get('episodes', '')} | {d.get('frames', '')} |")
    lines += ["", "## Closed-loop results", ""]
    if not card.get("results"):
        lines.append("None yet: `physai eval --checkpoint DIR ...` adds its summary here.")
    for r in card.get("results", []):
        lines += [f"### {r['what']} (safety {'on' if r.get('safety', True) else 'off'}, {r['date']})", ""]
        rows = r.get("rows") or []
        cols = [c for c in ("agent", "env", "episodes", *r.get("columns", [])) if any(c in row for row in rows)]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in cols) + " |" for row in rows]
        lines.append("")
    lines += ["## Use", "", "```python", "from physai import Policy", "",
              'policy = Policy.from_pretrained("<this folder or Hub repo id>")',
              f'action = policy.select_action(obs, "{card["bodies"][0]["name"] if card["bodies"] else "body"}")',
              "```", ""]
    return "\n".join(lines)


def write_card(directory: str | Path, card: Mapping[str, Any]) -> None:
    """Write card.json + README.md into a checkpoint directory (each atomically)."""
    d = Path(directory)
    for name, text in ((CARD_JSON, json.dumps(card, indent=2, default=str)), (CARD_MD, render(card, f"physai policy: {d.name}"))):
        tmp = d / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, d / name)


def read_card(directory: str | Path) -> dict[str, Any] | None:
    p = Path(directory) / CARD_JSON
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def add_results(directory: str | Path, what: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = (),
                safety: bool = True) -> bool:
    """Append an evaluation's summary rows to the checkpoint's card (False: no card to update)."""
    card = read_card(directory)
    if card is None:
        return False
    keep = [{k: v for k, v in r.items() if isinstance(v, (int, float, str, bool)) or v is None} for r in rows]
    card["results"] = (card.get("results", []) + [{"what": what, "safety": safety, "rows": keep, "columns": list(columns),
                                                   "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}])[-MAX_RESULTS:]
    write_card(directory, card)
    return True
