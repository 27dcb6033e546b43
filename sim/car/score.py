"""The car's driving score: a PDM-style score per episode (NAVSIM's PDMS), and the time to collision.

Per car episode, against the expert's episode on the same scenario (same env, seed, commands):

    driving_score = NC × DAC × (5·EP + 5·TTC + 2·C) / 12

- NC (no collision) = 1 if the ego never collided, else 0.
- DAC (drivable-area compliance) = 1 if the ego never left the road (`offroad_s` = 0), else 0.
- EP (ego progress) = progress along the road / the expert's progress on the same scenario, clipped
  to [0, 1] (an expert that did not move gives 1); without an expert episode the score is NaN.
- TTC = 1 if the time to collision with the nearest vehicle ahead in the ego lane (bumper-to-bumper
  gap / closing speed, from the env's radar-like `info["sensors"]`) never fell below 0.9 s, else 0.
- C (comfort) = the fraction of the episode's 4-s windows in which the longitudinal acceleration
  stays in [−4.05, 2.40] m/s² and |jerk| ≤ 4.13 m/s³, both taken from the executed speeds as
  centred differences over ±2 steps (0.8 s at 5 Hz: smoothed, as NAVSIM smooths its derivatives,
  rather than raw 0.2-s differences that one control tick would dominate). NAVSIM judges comfort
  pass/fail per 4-s trajectory; an episode is many such windows, so C is the share that passes.
- A collision or leaving the road makes the score 0 (with or without an expert episode).

The thresholds are NAVSIM's. `driving_score` returns the score and its components `ds_nc`, `ds_dac`,
`ds_ep`, `ds_ttc`, `ds_comfort`; `trace_metrics(trace, dt)` computes the episode numbers TTC and C
need (`min_ttc_s`, `ttc_violation_s`, `min_accel`, `max_accel`, `max_abs_jerk`, `comfort`) from the
per-step car trace; `ttc_from_sensors(sensors)` is the per-step time to collision (inf when nothing
ahead closes in, NaN for missing or malformed sensors).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

TTC_THRESHOLD_S = 0.9  # NAVSIM's time-to-collision limit
TTC_HORIZON_S = 10.0  # min_ttc_s is capped here (nothing closing within 10 s = no conflict; keeps JSON finite)
ACCEL_MIN, ACCEL_MAX = -4.05, 2.40  # m/s², NAVSIM's longitudinal acceleration bounds
JERK_MAX = 4.13  # m/s³, NAVSIM's longitudinal jerk bound
DERIV_WINDOW_S = 1.0  # derivatives are centred differences over about this span (0.8 s = ±2 steps at 5 Hz)
COMFORT_WINDOW_S = 4.0  # NAVSIM's trajectory horizon: comfort is judged per window of this length
WEIGHTS = {"ep": 5.0, "ttc": 5.0, "comfort": 2.0}  # NAVSIM's weighted-mean weights


def _nearest_ahead(sensors: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """(bumper-to-bumper gap m, relative speed dvx m/s) of the nearest object ahead in the ego lane;
    None when nothing is ahead; ValueError when `sensors` is missing or malformed.

    Objects are rows (dx, dy, dvx, dvy, length) in the ego lane's frame relative to the ego's centre;
    "in its lane" = |dy| < lane_width / 2; the gap is dx minus half of both lengths (0 when they
    overlap)."""
    try:
        width = float(sensors["lane_width"])
        ego_len = float(sensors["ego_length"])
        obj = np.asarray(sensors["objects"], dtype=np.float64)
    except (TypeError, KeyError, ValueError):
        raise ValueError("malformed sensors") from None
    if obj.size == 0:
        obj = obj.reshape(0, 5)
    if (obj.ndim != 2 or obj.shape[1] != 5 or not np.isfinite(obj).all()
            or not (math.isfinite(width) and width > 0 and math.isfinite(ego_len))):
        raise ValueError("malformed sensors")
    ahead = obj[(obj[:, 0] > 0) & (np.abs(obj[:, 1]) < width / 2)]  # [n, 5]
    if not len(ahead):
        return None
    gaps = np.maximum(ahead[:, 0] - (ahead[:, 4] + ego_len) / 2, 0.0)  # [n]
    k = int(np.argmin(gaps))
    return float(gaps[k]), float(ahead[k, 2])


def ttc_from_sensors(sensors: Mapping[str, Any] | None) -> float:
    """Seconds until the ego reaches the nearest object ahead in its lane at current speeds: gap /
    closing speed (−dvx). inf when that object is not closing in (or nothing is ahead), NaN when
    `sensors` is missing or malformed."""
    try:
        lead = _nearest_ahead(sensors)
    except ValueError:
        return math.nan
    if lead is None or lead[1] >= 0:
        return math.inf
    return lead[0] / -lead[1]


def lead_from_sensors(sensors: Mapping[str, Any] | None) -> tuple[float, float]:
    """(gap m, speed m/s) of the nearest object ahead in the ego lane; (inf, inf) when none is ahead,
    (NaN, NaN) for missing or malformed sensors. Speed instructions use it: behind a slower leader
    the car cannot hold a higher commanded speed."""
    try:
        lead = _nearest_ahead(sensors)
        ego_speed = float(sensors["ego_speed"])
    except (ValueError, KeyError, TypeError):
        return math.nan, math.nan
    if lead is None:
        return math.inf, math.inf
    return lead[0], ego_speed + lead[1]


def _centred_diff(x: np.ndarray, k: int, dt: float) -> np.ndarray:
    """(x[i+k] − x[i−k]) / (2k·dt) for every i with both neighbours: [len(x) − 2k]."""
    return (x[2 * k:] - x[:-2 * k]) / (2 * k * dt) if len(x) > 2 * k else np.zeros(0)


def trace_metrics(trace: Sequence[Mapping[str, Any]], dt: float) -> dict[str, float]:
    """Episode numbers for the driving score from the per-step car trace (`speed`, `ttc`)."""
    ttc = np.array([float(e.get("ttc", math.nan)) for e in trace], dtype=np.float64)  # [T]
    known = ttc[~np.isnan(ttc)]
    out = {
        "min_ttc_s": float(min(known.min(), TTC_HORIZON_S)) if known.size else math.nan,
        "ttc_violation_s": float((known < TTC_THRESHOLD_S).sum() * dt) if known.size else math.nan,
    }
    v = np.array([float(e["speed"]) for e in trace], dtype=np.float64)  # [T] m/s
    k = max(1, int(round(DERIV_WINDOW_S / (2 * dt))))
    acc = _centred_diff(v, k, dt)  # [T - 2k], centred on steps k .. T-k-1
    jerk = _centred_diff(acc, k, dt)  # [T - 4k], centred on steps 2k .. T-2k-1
    bad = np.zeros(len(v), dtype=bool)  # [T]: step where the comfort bounds were broken
    bad[k:k + len(acc)] |= (acc < ACCEL_MIN) | (acc > ACCEL_MAX)
    bad[2 * k:2 * k + len(jerk)] |= np.abs(jerk) > JERK_MAX
    per = max(1, int(round(COMFORT_WINDOW_S / dt)))
    windows = [bad[i:i + per] for i in range(0, len(bad), per)]
    out.update({
        "min_accel": float(acc.min()) if acc.size else 0.0,
        "max_accel": float(acc.max()) if acc.size else 0.0,
        "max_abs_jerk": float(np.abs(jerk).max()) if jerk.size else 0.0,
        "comfort": float(np.mean([not w.any() for w in windows])) if windows else 1.0,
    })
    return out


def driving_score(metrics: Mapping[str, float], reference: Mapping[str, float] | None) -> dict[str, float]:
    """The PDM-style score of one car episode (`metrics`: the car episode metrics plus
    `trace_metrics`) against the expert's episode on the same scenario (`reference`, or None)."""
    nc = 0.0 if float(metrics.get("collision", 0.0)) > 0 else 1.0
    dac = 0.0 if float(metrics.get("offroad_s", 0.0)) > 0 else 1.0
    if reference is None or not math.isfinite(float(reference.get("progress_m", math.nan))):
        ep = math.nan
    else:
        ref = float(reference["progress_m"])
        ep = 1.0 if ref <= 0 else float(np.clip(float(metrics.get("progress_m", 0.0)) / ref, 0.0, 1.0))
    min_ttc = float(metrics.get("min_ttc_s", math.nan))
    ttc = math.nan if math.isnan(min_ttc) else float(min_ttc >= TTC_THRESHOLD_S)
    comfort = float(metrics.get("comfort", math.nan))
    w = WEIGHTS
    # a collision or leaving the road is 0 whatever the rest (also without an expert episode)
    score = 0.0 if nc * dac == 0 else (w["ep"] * ep + w["ttc"] * ttc + w["comfort"] * comfort) / sum(w.values())
    return {"driving_score": score, "ds_nc": nc, "ds_dac": dac, "ds_ep": ep, "ds_ttc": ttc, "ds_comfort": comfort}
