"""Per-instruction success table: how often each agent followed each kind of instruction.

Every body family scores the instructions of an episode (`BodyFamily.score_instructions`) as
records `{"kind", "at", "success", ...}`, `success` None for an instruction that is not scored.
`instruction_rows(results)` takes the episode results of several agents on the same scenarios
(`{"physai": [...], "expert": [...]}`, each episode with its `env` and `instructions`) and returns
one row per (body family, instruction kind), plus an `all` row per family:
`{"family", "kind", "attempts", "<agent>_attempts", "<agent>_success", "<agent>_<field>", ...}`,
where `attempts` is the most scored instructions of any agent, `<agent>_success` the fraction of
its scored instructions that succeeded (None without any), and `<agent>_<field>` the mean of every
record number whose name ends in `_error` (tracking errors) or `_s` (durations), over the records
that have it. Families are found from the episode's env id, so no body is named here.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from physai.sim.family import family_for_env

ALL = "all"  # the kind of each family's summary row
_MEAN_SUFFIXES = ("_error", "_s")  # record numbers averaged into the table


def _averaged(rec: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in rec.items()
            if k.endswith(_MEAN_SUFFIXES) and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


def instruction_rows(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Rows (family, kind) x columns (attempts, per-agent success rate and mean errors)."""
    # (family, kind) -> agent -> list of scored records
    groups: dict[tuple[str, str], dict[str, list[Mapping[str, Any]]]] = {}
    fam_order: list[str] = []
    for agent, episodes in results.items():
        for ep in episodes:
            fam = family_for_env(ep["env"]).name
            if fam not in fam_order:
                fam_order.append(fam)
            for rec in ep.get("instructions") or ():
                if rec.get("success") is None:
                    continue
                for kind in (rec["kind"], ALL):
                    groups.setdefault((fam, kind), {}).setdefault(agent, []).append(rec)
    rows = []
    for (fam, kind) in sorted(groups, key=lambda k: (fam_order.index(k[0]), k[1] == ALL, k[1])):
        per_agent = groups[(fam, kind)]
        row: dict[str, Any] = {"family": fam, "kind": kind,
                               "attempts": max(len(per_agent.get(a, ())) for a in results)}
        for agent in results:
            recs = per_agent.get(agent, [])
            row[f"{agent}_attempts"] = len(recs)
            row[f"{agent}_success"] = sum(bool(r["success"]) for r in recs) / len(recs) if recs else None
            sums: dict[str, list[float]] = {}
            for r in recs:
                for k, v in _averaged(r).items():
                    sums.setdefault(k, []).append(v)
            for k in sorted(sums):
                row[f"{agent}_{k}"] = sum(sums[k]) / len(sums[k])
        rows.append(row)
    return rows
