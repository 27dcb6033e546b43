"""Output helpers shared by the commands: rich tables from rows of dicts, atomic JSON files,
and training-curve plots (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

# wide tables when piped to a file/CI log (rich would otherwise fold every column to 80 chars)
console = Console(width=None if sys.stdout.isatty() else 240)


def logger(style: str = ""):
    """A `log` callback printing each line in `style`, verbatim (brackets in paths or lists are text, not markup)."""
    from rich.text import Text

    return lambda m: console.print(Text(str(m), style=style))


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        a = abs(v)
        return f"{v:.3g}" if (a < 1e-2 and a > 0) or a >= 1e4 else f"{v:.3f}".rstrip("0").rstrip(".") if a < 100 else f"{v:.1f}"
    return str(v)


def table(rows: Sequence[dict[str, Any]], title: str, columns: Sequence[str] | None = None) -> Table:
    cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
    t = Table(title=title, header_style="bold")
    for c in cols:
        t.add_column(c, justify="left" if c in ("agent", "env", "name", "item", "embodiment", "policy", "family", "kind", "driver", "mode") else "right")
    for r in rows:
        t.add_row(*(fmt(r.get(c, float("nan"))) for c in cols))
    return t


def print_table(rows, title, columns=None) -> None:
    console.print(table(rows, title, columns))


def strict(data: Any) -> Any:
    """JSON-safe copy: numpy values as Python numbers/lists, NaN and ±inf as None (strict JSON)."""
    if isinstance(data, dict):
        return {str(k): strict(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict(v) for v in data]
    if hasattr(data, "tolist") and not isinstance(data, (str, bytes)):
        return strict(data.tolist())
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if data is None or isinstance(data, (str, int, float, bool)):
        return data
    return str(data)


def check_writable(path: str | Path) -> Path:
    """Fail now, with a ConfigError naming the path, if a file cannot be written there later."""
    from physai.errors import ConfigError

    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        probe = p.with_name(f".{p.name}.{os.getpid()}.probe")
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write '{p}': {e.strerror or e}") from None
    if p.is_dir():
        raise ConfigError(f"cannot write '{p}': it is a directory")
    return p


def write_json(path: str | Path, data: Any) -> Path:
    """Write `data` as strict JSON (no NaN/Infinity tokens: they become null), atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(strict(data), indent=2, allow_nan=False))
    os.replace(tmp, p)
    return p


def curve_figure(history: Iterable[dict[str, Any]], keys: Sequence[str] | None = None, title: str = "training",
                 marks: Sequence[int] = ()):
    """The training-curve figure: each loss key against the step (symlog: regulariser terms can be
    negative), the validation loss with a marker at each evaluation, a dashed vertical line at each
    step in `marks` (DAgger round boundaries, labelled "DAgger round k"), the legend outside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = list(history)
    keys = keys or sorted({k for h in hist for k in h
                           if k.endswith(("action_loss", "_ce", "flow_mse")) or k in ("loss", "val_loss")})
    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    ys: list[float] = []
    for k in keys:
        pts = [(h["step"], h[k]) for h in hist if k in h and h[k] is not None]
        if not pts:
            continue
        ys += [float(y) for _, y in pts if math.isfinite(float(y))]
        if k == "val_loss":  # sparse (one point per evaluation): markers, drawn above the training curves
            ax.plot(*zip(*pts), label=k, color="k", marker="o", markersize=4, lw=1.2, zorder=3)
        else:
            ax.plot(*zip(*pts), label=k, lw=1.0)
    for r, step in enumerate(marks, start=1):
        ax.axvline(step, color="0.35", ls="--", lw=0.9, zorder=1)
        ax.text(step, 0.98, f" DAgger round {r}", transform=ax.get_xaxis_transform(), rotation=90,
                va="top", ha="right", fontsize=7, color="0.35")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (symlog)")
    ax.set_yscale("symlog", linthresh=1e-2)  # regulariser terms can be negative
    if ys and min(ys) >= 0:
        ax.set_ylim(0, max(ys) * 1.5 or 1.0)  # no empty negative half
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    fig.tight_layout()  # makes room for the legend on the right
    return fig


def plot_curves(history: Iterable[dict[str, Any]], path: str | Path, keys: Sequence[str] | None = None,
                title: str = "training", marks: Sequence[int] = ()) -> Path:
    """`curve_figure` written as a PNG at `path`; returns the path."""
    return _save(curve_figure(history, keys, title, marks), path)


def closed_loop_tables(rows: Sequence[dict[str, Any]], title: str) -> list[Table]:
    """One table per body family of `summarize` rows, with that family's metric columns, plus the
    family's rule-based `reward` per episode and `nonfinite_actions` (NaN/inf actions the policy
    runtime replaced) where present."""
    from physai.sim.family import get_family

    tables = []
    for fam in dict.fromkeys(r["family"] for r in rows):
        sel = [r for r in rows if r["family"] == fam]
        extra = [k for k in ("reward", "nonfinite_actions") if any(k in r for r in sel)]
        tables.append(table(sel, f"{title} ({fam})", ["agent", "env", "episodes", *get_family(fam).metric_columns,
                                                       *extra]))
    return tables


def instruction_table(rows: Sequence[dict[str, Any]], title: str) -> Table | None:
    """The per-instruction success table (rows from `physai.sim.instructions.instruction_rows`)."""
    if not rows:
        return None
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return table(rows, title, ["family", "kind", "attempts", *[k for k in keys if k.endswith("_success")]])


def plot_reward_curves(history: Sequence[dict[str, Any]], path: str | Path, title: str = "RL") -> Path:
    """Two panels against env steps: the mean episode reward, and each reward term's mean per episode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = [h for h in history if "env_steps" in h]
    xs = [h["env_steps"] for h in hist]
    terms = sorted({k for h in hist for k in h if k.startswith("reward/")})
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    a.plot(xs, [h["reward"] for h in hist], marker="o", label="policy")
    if any("expert_reward" in h for h in hist):
        a.axhline(next(h["expert_reward"] for h in hist if "expert_reward" in h), color="k", ls="--", label="expert")
    a.set(xlabel="env steps", ylabel="reward per episode", title=f"{title}: reward")
    a.legend(fontsize=7)
    colors = plt.get_cmap("tab20").colors  # more terms than the default 10-colour cycle
    for i, k in enumerate(terms):
        b.plot(xs, [h.get(k, float("nan")) for h in hist], label=k[len("reward/"):], color=colors[i % len(colors)])
    b.set(xlabel="env steps", ylabel="contribution per episode", title="reward terms")
    b.set_yscale("symlog", linthresh=1.0)
    b.legend(fontsize=6, ncol=2)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p)
    plt.close(fig)
    return p
