"""Instruction scoring on synthetic traces (car lane/speed, humanoid segments), the car's driving
score and time to collision, and the per-instruction table over two agents."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physai.embodiments import get_spec
from physai.sim.car import instructions as CI
from physai.sim.car.instructions import score_instructions as score_car
from physai.sim.car.score import (TTC_THRESHOLD_S, driving_score, lead_from_sensors, trace_metrics,
                                  ttc_from_sensors)
from physai.sim.humanoid import instructions as HI
from physai.sim.humanoid.instructions import command_kind
from physai.sim.humanoid.instructions import score_instructions as score_humanoid
from physai.sim.instructions import instruction_rows

DT = 0.2  # car control period


# ---- car traces -------------------------------------------------------------------------------
def car_trace(seconds=30.0, lane=lambda t: 2, lane_error=lambda t: 0.0, speed=lambda t: 25.0,
              collision_at=None, **extra) -> list[dict]:
    """Per-step car trace (after-step times DT, 2 DT, ...); a collision ends it."""
    out = []
    for i in range(1, int(round(seconds / DT)) + 1):
        t = i * DT
        hit = collision_at is not None and t >= collision_at - 1e-9
        out.append({"t": t, "lane": lane(t), "lane_error": lane_error(t), "speed": speed(t), "collision": hit,
                    "offroad": False, "cmd_lane": "keep", "cmd_speed": 25.0, "ttc": math.inf,
                    **{k: (f(t) if callable(f) else f) for k, f in extra.items()}})
        if hit:
            break
    return out


def lane_change(at_s, origin=2, target=1):
    """Lane id / lateral error of a change that crosses at `at_s` and is centred 1 s later."""
    return (lambda t: origin if t < at_s else target,
            lambda t: 0.0 if t < at_s - 1 else (1.5 if t < at_s + 1 else 0.1))


def one(records, kind):
    got = [r for r in records if r["kind"] == kind]
    assert len(got) == 1, records
    return got[0]


def test_lane_change_that_succeeds():
    lane, err = lane_change(6.0)
    recs = score_car(((3.0, {"lane": "left"}),), car_trace(lane=lane, lane_error=err), 30)
    r = one(recs, "lane_left")
    assert r["success"] is True and r["from_lane"] == 2 and r["to_lane"] == 1
    assert r["time_s"] == pytest.approx(4.0, abs=DT + 1e-6)  # centred 1 s after crossing at 6 s


def test_lane_change_both_ways_and_kinds():
    lane, err = lane_change(6.0, origin=1, target=2)
    r = one(score_car(((3.0, {"lane": "right"}),), car_trace(lane=lane, lane_error=err), 30), "lane_right")
    assert r["success"] is True and r["to_lane"] == 2
    assert score_car(((3.0, {"lane": "keep"}),), car_trace(), 30) == []  # keep is no instruction


def test_lane_change_that_times_out():
    lane, err = lane_change(3.0 + CI.LANE_TIMEOUT_S + 1.0)  # reached, but too late
    r = one(score_car(((3.0, {"lane": "left"}),), car_trace(lane=lane, lane_error=err), 30), "lane_left")
    assert r["success"] is False and r["time_s"] is None
    r = one(score_car(((3.0, {"lane": "left"}),), car_trace(), 30), "lane_left")  # never changes
    assert r["success"] is False


def test_lane_change_in_the_target_lane_but_not_centred_fails():
    r = one(score_car(((3.0, {"lane": "left"}),),
                      car_trace(lane=lambda t: 2 if t < 5 else 1, lane_error=lambda t: 1.0), 30), "lane_left")
    assert r["success"] is False


def test_collision_fails_the_open_instructions_and_the_ones_never_reached():
    lane, err = lane_change(8.0)
    cmds = ((3.0, {"lane": "left", "speed": 20.0}), (15.0, {"lane": "right"}))
    recs = score_car(cmds, car_trace(lane=lane, lane_error=err, collision_at=5.0), 30)
    assert [r["kind"] for r in recs] == ["lane_left", "speed_down", "lane_right"]
    assert all(r["success"] is False for r in recs)
    assert [r["ended"] for r in recs] == [False, False, True]


def test_collision_after_the_lane_change_keeps_its_success():
    lane, err = lane_change(5.0)
    recs = score_car(((3.0, {"lane": "left"}),), car_trace(lane=lane, lane_error=err, collision_at=12.0), 30)
    assert one(recs, "lane_left")["success"] is True


def test_lane_changes_that_cannot_be_scored():
    # no lane left of lane 0; no lane right of the last one when the trace says how many there are
    assert one(score_car(((3.0, {"lane": "left"}),), car_trace(lane=lambda t: 0), 30), "lane_left")["success"] is None
    rec = one(score_car(((3.0, {"lane": "right"}),), car_trace(lane=lambda t: 2, lanes=3), 30), "lane_right")
    assert rec["success"] is None and rec["to_lane"] == 3
    # the scenario gives less than the timeout (next lane command 4 s later, or the episode ends)
    lane, err = lane_change(5.0)
    recs = score_car(((3.0, {"lane": "left"}), (7.0, {"lane": "left"})), car_trace(lane=lane, lane_error=err), 30)
    assert recs[0]["success"] is None
    assert score_car(((25.0, {"lane": "left"}),), car_trace(lane=lane, lane_error=err), 30)[0]["success"] is None


def ramp(v0, v1, t0, accel=2.0):
    """Speed v0 until t0, then towards v1 at `accel`."""
    return lambda t: v0 if t <= t0 else (min(v1, v0 + accel * (t - t0)) if v1 >= v0 else max(v1, v0 - accel * (t - t0)))


def test_speed_up_reached_and_held():
    r = one(score_car(((3.0, {"speed": 28.0}),), car_trace(speed=ramp(20, 28, 3.0)), 30), "speed_up")
    assert r["success"] is True and r["target"] == 28.0
    assert r["settle_s"] == pytest.approx((8 - CI.SPEED_TOL_MS) / 2.0, abs=DT + 1e-6)
    assert r["speed_error"] == pytest.approx(0.0, abs=1e-9)


def test_speed_up_never_reached_or_not_held():
    r = one(score_car(((3.0, {"speed": 28.0}),), car_trace(speed=lambda t: 20.0), 30), "speed_up")
    assert r["success"] is False and r["settle_s"] is None and r["speed_error"] == pytest.approx(8.0)
    # reached, then falls back to 22 m/s
    def speed(t):
        return ramp(20, 28, 3.0)(t) if t < 12 else 22.0

    r = one(score_car(((3.0, {"speed": 28.0}),), car_trace(speed=speed), 30), "speed_up")
    assert r["success"] is False and r["settle_s"] is not None and r["speed_error"] > CI.SPEED_HOLD_ERR_MS
    # reached far too slowly (0.3 m/s^2)
    r = one(score_car(((3.0, {"speed": 28.0}),), car_trace(speed=ramp(20, 28, 3.0, accel=0.3)), 30), "speed_up")
    assert r["success"] is False and r["settle_s"] is None


def test_speed_down_hold_and_short_segments():
    cmds = ((3.0, {"speed": 17.0}), (16.0, {"speed": 17.5}))  # 13 s >= 2 + 8 / 1 + 2 s
    recs = score_car(cmds, car_trace(speed=ramp(25, 17, 3.0, accel=3.0)), 30)
    assert [(r["kind"], r["success"]) for r in recs] == [("speed_down", True), ("speed_hold", True)]
    # a segment shorter than its settling allowance + the minimum hold is not scored
    recs = score_car(((3.0, {"speed": 15.0}), (8.0, {"speed": 25.0})), car_trace(speed=ramp(25, 15, 3.0)), 30)
    assert recs[0]["success"] is None and recs[0]["kind"] == "speed_down"


def test_speed_behind_a_slower_leader():
    """Following a slower leader holds the speed traffic allows; crawling behind it does not."""
    lead = {"lead_gap": 30.0, "lead_speed": 20.0}
    r = one(score_car(((3.0, {"speed": 28.0}),), car_trace(speed=lambda t: 19.0, **lead), 30), "speed_up")
    assert r["success"] is True and r["blocked_s"] > 20
    r = one(score_car(((3.0, {"speed": 28.0}),), car_trace(speed=lambda t: 12.0, **lead), 30), "speed_up")
    assert r["success"] is False
    far = {"lead_gap": 500.0, "lead_speed": 20.0}  # beyond the following distance: no excuse
    r = one(score_car(((3.0, {"speed": 28.0}),), car_trace(speed=lambda t: 19.0, **far), 30), "speed_up")
    assert r["success"] is False and r["blocked_s"] == 0


def test_lane_and_speed_in_one_command_give_two_records():
    lane, err = lane_change(6.0)
    recs = score_car(((3.0, {"lane": "left", "speed": 20.0}),),
                     car_trace(lane=lane, lane_error=err, speed=ramp(25, 20, 3.0)), 30)
    assert [(r["kind"], r["at"], r["success"]) for r in recs] == [("lane_left", 3.0, True), ("speed_down", 3.0, True)]


def stopping(at, v0=25.0, decel=1.5, ease=0.0):
    """Speed/progress of a car braking at `decel` from `at` to a standstill (starting after `ease` s)."""
    def speed(t):
        return v0 if t <= at + ease else max(0.0, v0 - decel * (t - at - ease))

    def progress(t):
        if t <= at + ease:
            return v0 * t
        dt = min(t - at - ease, v0 / decel)
        return v0 * (at + ease) + v0 * dt - 0.5 * decel * dt * dt
    return speed, progress


def test_stop_within_the_distance_succeeds_and_overshooting_fails():
    speed, progress = stopping(3.0)  # 25 m/s at 1.5 m/s^2: 208 m, standstill 16.7 s later
    trace = car_trace(speed=speed, progress=progress)
    r = one(score_car(((3.0, {"stop": 215.0}),), trace, 30), "stop")
    assert r["success"] is True and r["stop_m"] == pytest.approx(208.3, abs=6.0) and r["max_decel"] < 1.6
    assert r["time_s"] == pytest.approx(16.7, abs=0.5)
    assert one(score_car(((3.0, {"stop": 190.0}),), trace, 30), "stop")["success"] is False  # 208 > 190 + 2.5


def test_stop_harsh_braking_or_rolling_on_fails():
    speed, progress = stopping(3.0, decel=4.8, ease=6.0)  # late and hard: 4.8 m/s^2 > the comfort bound
    r = one(score_car(((3.0, {"stop": 230.0}),), car_trace(speed=speed, progress=progress), 30), "stop")
    assert r["success"] is False and r["max_decel"] == pytest.approx(4.8, abs=0.1)
    s0, p0 = stopping(3.0)
    creep = lambda t: s0(t) if t < 22 else 3.0  # noqa: E731  (stopped, then rolls on)
    r = one(score_car(((3.0, {"stop": 215.0}),), car_trace(speed=creep, progress=p0), 30), "stop")
    assert r["success"] is False and r["stop_m"] is not None  # reached a standstill but did not hold it


def test_stop_not_scored_when_infeasible_or_short_and_go_is_not_an_instruction():
    speed, progress = stopping(3.0)
    trace = car_trace(speed=speed, progress=progress)
    assert one(score_car(((3.0, {"stop": 40.0}),), trace, 30), "stop")["success"] is None  # 25 m/s cannot stop in 40 m
    short = score_car(((3.0, {"stop": 215.0}), (10.0, {"stop": 300.0})), trace, 30)
    assert one(short, "stop")["success"] is None and len(short) == 1  # 7 s is too short; "go" gives no record
    # a speed command under a requested stop is not scored; a stop ends a speed segment
    recs = score_car(((3.0, {"stop": 215.0}), (5.0, {"speed": 20.0})), trace, 30)
    assert one(recs, "speed_down")["success"] is None
    crash = car_trace(speed=speed, progress=progress, collision_at=10.0)
    assert one(score_car(((3.0, {"stop": 215.0}),), crash, 30), "stop")["success"] is False


def test_an_episode_that_ends_without_a_crash_leaves_later_instructions_unscored():
    """The end of the merge road ends an episode early with no crash: not a failure."""
    recs = score_car(((3.0, {"speed": 25.0}), (20.0, {"lane": "left"})), car_trace(seconds=18.8), 30)
    assert [r["success"] for r in recs] == [True, None]


# ---- humanoid traces --------------------------------------------------------------------------
HZ = 50


def walk_trace(segments, fall_at=None, lag=0.5, noise=0.02, seed=0):
    """50-Hz trace following `segments` [(seconds, cmd)], reaching each command after `lag` s."""
    rng = np.random.default_rng(seed)
    out, t, prev = [], 0.0, {"vx": 0.0, "vy": 0.0, "yaw_rate": 0.0}
    for dur, cmd in segments:
        cmd = {"vx": 0.0, "vy": 0.0, "yaw_rate": 0.0, **cmd}
        start = t
        for _ in range(int(round(dur * HZ))):
            t = round(t + 1 / HZ, 9)
            w = min(1.0, (t - start) / lag)
            vel = {k: prev[k] + w * (cmd[k] - prev[k]) + noise * rng.standard_normal() for k in cmd}
            fell = fall_at is not None and t >= fall_at
            out.append({"t": t, "vx": vel["vx"], "vy": vel["vy"], "yaw_rate": vel["yaw_rate"], "cmd": dict(cmd),
                        "fell": fell})
            if fell:
                return out
        prev = cmd
    return out


@pytest.mark.parametrize("cmd,kind", [
    ({}, "stand"), ({"vx": 0.01, "yaw_rate": -0.02}, "stand"), ({"yaw_rate": 0.6}, "turn"),
    ({"vx": 0.5}, "forward"), ({"vx": -0.3}, "backward"), ({"vy": 0.3}, "strafe"), ({"vy": -0.3}, "strafe"),
    ({"vx": 0.4, "vy": 0.2}, "mixed"), ({"vx": 0.5, "yaw_rate": 0.4}, "walk_turn"),
    ({"vy": 0.3, "yaw_rate": 0.4}, "walk_turn"),
])
def test_humanoid_command_kinds(cmd, kind):
    assert command_kind({"vx": 0.0, "vy": 0.0, "yaw_rate": 0.0, **cmd}) == kind


def test_humanoid_segments_of_each_kind_tracked_well_succeed():
    segs = [(2, {}), (3, {"vx": 0.5}), (3, {"vx": -0.3}), (3, {"vy": 0.3}), (3, {"yaw_rate": 0.6}),
            (3, {"vx": 0.5, "yaw_rate": 0.4}), (3, {"vx": 0.4, "vy": 0.2}), (3, {})]
    recs = score_humanoid((), walk_trace(segs), 23)
    kinds = ["stand", "forward", "backward", "strafe", "turn", "walk_turn", "mixed", "stand"]
    assert [r["kind"] for r in recs] == kinds
    assert [r["at"] for r in recs] == pytest.approx([0, 2, 5, 8, 11, 14, 17, 20])
    assert all(r["success"] and r["survived"] for r in recs)
    assert all(r["lin_vel_error"] < 0.05 and r["yaw_rate_error"] < 0.05 for r in recs)  # measured after SETTLE_S


def test_humanoid_poor_tracking_fails_with_its_errors():
    trace = walk_trace([(2, {}), (4, {"vx": 0.8}), (4, {"yaw_rate": 0.8})])
    for e in trace:
        e["vx"] *= 0.2  # walks at a fifth of the commanded speed
        e["yaw_rate"] = 0.0  # never turns
    recs = score_humanoid((), trace, 10)
    assert [r["success"] for r in recs] == [True, False, False]
    assert recs[1]["lin_vel_error"] == pytest.approx(0.64, abs=0.05)
    assert recs[2]["yaw_rate_error"] == pytest.approx(0.8, abs=0.05)
    lin_max, yaw_max = HI.limits(recs[2]["cmd"])
    assert recs[2]["lin_vel_error"] < lin_max and recs[2]["yaw_rate_error"] > yaw_max


def test_humanoid_fall_fails_its_segment_and_the_scripted_ones_after_it():
    cmds = ((0.0, {}), (2.0, {"vx": 0.5}), (6.0, {}), (9.0, {"vy": 0.3}))
    trace = walk_trace([(2, {}), (4, {"vx": 0.5}), (3, {}), (3, {"vy": 0.3})], fall_at=4.0)
    recs = score_humanoid(cmds, trace, 12)
    assert [(r["kind"], r["success"], r["survived"]) for r in recs] == [
        ("stand", True, True), ("forward", False, False), ("stand", False, False), ("strafe", False, False)]
    assert [r.get("ended", False) for r in recs] == [False, False, True, True]


def test_humanoid_short_segment_is_not_scored_and_random_schedules_are_split_by_cmd():
    recs = score_humanoid((), walk_trace([(3, {"vx": 0.3}), (0.8, {"vx": 0.6}), (3, {"yaw_rate": 0.5})]), 6.8)
    assert [(r["kind"], r["success"]) for r in recs] == [("forward", True), ("forward", None), ("turn", True)]


# ---- driving score ----------------------------------------------------------------------------
def sensors(objects, lane_width=4.0, ego_length=5.0, ego_speed=25.0):
    return {"ego_speed": ego_speed, "ego_lane": 1, "lane_width": lane_width, "ego_length": ego_length,
            "objects": np.asarray(objects, dtype=np.float32).reshape(-1, 5)}


def test_ttc_from_sensors():
    assert ttc_from_sensors(sensors([[30, 0.5, -5, 0, 5]])) == pytest.approx(25 / 5)  # bumper gap 25 m
    assert ttc_from_sensors(sensors([[30, 0, 2, 0, 5]])) == math.inf  # pulling away
    assert ttc_from_sensors(sensors([[30, 4.0, -5, 0, 5]])) == math.inf  # next lane
    assert ttc_from_sensors(sensors([[-20, 0, 5, 0, 5]])) == math.inf  # behind
    assert ttc_from_sensors(sensors([])) == math.inf
    # the nearest object ahead counts (a faster one in front of a slower one far ahead)
    assert ttc_from_sensors(sensors([[60, 0, -10, 0, 5], [20, 0, 1, 0, 5]])) == math.inf
    assert ttc_from_sensors(sensors([[60, 0, -10, 0, 5], [20, 0, -3, 0, 5]])) == pytest.approx(15 / 3)
    assert ttc_from_sensors(sensors([[4, 0, -1, 0, 5]])) == 0.0  # overlapping: gap 0
    for bad in (None, {}, {"lane_width": 4.0, "ego_length": 5.0}, sensors([[30, 0, math.nan, 0, 5]]),
                {**sensors([]), "objects": np.zeros((3, 4))}, sensors([], lane_width=0.0), "radar"):
        assert math.isnan(ttc_from_sensors(bad))
    assert lead_from_sensors(sensors([[30, 0, -5, 0, 5]])) == pytest.approx((25.0, 20.0))
    assert lead_from_sensors(sensors([])) == (math.inf, math.inf)
    assert all(math.isnan(x) for x in lead_from_sensors(None))


def test_trace_metrics_ttc_and_comfort():
    smooth = car_trace(speed=lambda t: 25.0, ttc=20.0)
    m = trace_metrics(smooth, DT)
    assert m["comfort"] == 1.0 and m["min_accel"] == 0.0 and m["max_abs_jerk"] == 0.0
    assert m["min_ttc_s"] == 10.0 and m["ttc_violation_s"] == 0.0  # capped at the horizon
    brake = car_trace(speed=ramp(25, 5, 10.0, accel=5.0), ttc=lambda t: 0.5 if 10 <= t < 11 else math.inf)
    m = trace_metrics(brake, DT)
    assert m["min_accel"] < -4.05 and 0 < m["comfort"] < 1
    assert m["min_ttc_s"] == 0.5 and m["ttc_violation_s"] == pytest.approx(1.0, abs=DT + 1e-6)
    assert math.isnan(trace_metrics(car_trace(ttc=math.nan), DT)["min_ttc_s"])  # no sensors: unknown


def test_driving_score_components():
    ok = {"collision": 0.0, "offroad_s": 0.0, "progress_m": 600.0, "min_ttc_s": 10.0, "comfort": 1.0}
    ref = {"progress_m": 600.0}
    s = driving_score(ok, ref)
    assert s == {"driving_score": 1.0, "ds_nc": 1.0, "ds_dac": 1.0, "ds_ep": 1.0, "ds_ttc": 1.0, "ds_comfort": 1.0}
    assert driving_score({**ok, "progress_m": 900.0}, ref)["driving_score"] == 1.0  # EP clipped at 1
    crash = driving_score({**ok, "collision": 1.0}, ref)
    assert crash["driving_score"] == 0.0 and crash["ds_nc"] == 0.0
    assert driving_score({**ok, "collision": 1.0}, None)["driving_score"] == 0.0  # 0 without a reference too
    off = driving_score({**ok, "offroad_s": 0.4}, ref)
    assert off["driving_score"] == 0.0 and off["ds_dac"] == 0.0
    half = driving_score({**ok, "progress_m": 300.0}, ref)
    assert half["ds_ep"] == 0.5 and half["driving_score"] == pytest.approx((5 * 0.5 + 5 + 2) / 12)
    close = driving_score({**ok, "min_ttc_s": TTC_THRESHOLD_S - 0.1}, ref)
    assert close["ds_ttc"] == 0.0 and close["driving_score"] == pytest.approx(7 / 12)
    harsh = driving_score({**ok, "comfort": 0.5}, ref)
    assert harsh["driving_score"] == pytest.approx(11 / 12)
    assert math.isnan(driving_score(ok, None)["driving_score"]) and math.isnan(driving_score(ok, None)["ds_ep"])


# ---- per-instruction table --------------------------------------------------------------------
def test_instruction_rows_aggregates_two_agents():
    def car_ep(*recs):
        return {"env": "physai/car-highway", "instructions": list(recs)}

    def g1_ep(*recs):
        return {"env": "physai/g1-walk", "instructions": list(recs)}

    def lane(ok, t):
        return {"kind": "lane_left", "at": 3.0, "success": ok, "time_s": t, "from_lane": 2, "ended": False}

    def walk(ok, e):
        return {"kind": "forward", "at": 2.0, "success": ok, "survived": True, "lin_vel_error": e,
                "yaw_rate_error": 0.1, "cmd": {"vx": 0.5, "vy": 0.0, "yaw_rate": 0.0}}
    results = {
        "physai": [car_ep(lane(True, 4.0), lane(False, None)), car_ep(lane(None, None)),
                   g1_ep(walk(True, 0.2), walk(False, 0.6))],
        "expert": [car_ep(lane(True, 2.0), lane(True, 3.0)), car_ep(lane(None, None)),
                   g1_ep(walk(True, 0.1), walk(True, 0.3))],
    }
    rows = {(r["family"], r["kind"]): r for r in instruction_rows(results)}
    assert list(rows) == [("car", "lane_left"), ("car", "all"), ("humanoid", "forward"), ("humanoid", "all")]
    r = rows[("car", "lane_left")]
    assert r["attempts"] == 2 and r["physai_attempts"] == 2 and r["expert_attempts"] == 2  # None is not scored
    assert r["physai_success"] == 0.5 and r["expert_success"] == 1.0
    assert r["physai_time_s"] == 4.0 and r["expert_time_s"] == 2.5  # mean over records that have one
    assert "physai_from_lane" not in r  # only *_error and *_s numbers are averaged
    h = rows[("humanoid", "forward")]
    assert h["physai_success"] == 0.5 and h["expert_success"] == 1.0
    assert h["physai_lin_vel_error"] == pytest.approx(0.4) and h["expert_lin_vel_error"] == pytest.approx(0.2)
    assert rows[("humanoid", "all")]["attempts"] == 2


def test_instruction_rows_with_an_agent_missing_a_kind():
    results = {"a": [{"env": "physai/g1-walk", "instructions": [{"kind": "turn", "at": 0.0, "success": True}]}],
               "b": [{"env": "physai/g1-walk", "instructions": []}]}
    (row, total) = instruction_rows(results)
    assert row["kind"] == "turn" and row["attempts"] == 1 and row["b_attempts"] == 0 and row["b_success"] is None
    assert total["kind"] == "all"


def test_instruction_rich_recordings_switch_commands_mid_episode(tmp_path):
    """record.instructions: each episode follows the family's random instruction timeline for its
    seed, so the recorded command changes during the episode (and the dataset folder says so)."""
    from physai.data.frames import load_frames
    from physai.pipeline import ensure_dataset
    from physai.sim.car.family import CarRecordConfig
    from physai.sim.family import get_family

    fam = get_family("car")
    t1 = fam.random_commands("physai/car-highway", np.random.default_rng([0, 13]), 20.0)
    assert t1 == fam.random_commands("physai/car-highway", np.random.default_rng([0, 13]), 20.0)  # a function of the seed
    assert len(t1) == 2 and 3 <= t1[0][0] <= 8 and 14 <= t1[1][0] <= 20
    rec = CarRecordConfig(seconds=9.0, instructions=True)
    path = ensure_dataset("physai/car-highway", 1, tmp_path, 3, rec, progress=False)
    assert path.name.endswith(f"-instr-spec{get_spec('car').digest()}")
    f = load_frames(path)
    assert len(np.unique(f.command, axis=0)) > 1  # the instruction changed during the one episode
    plain = load_frames(ensure_dataset("physai/car-highway", 1, tmp_path, 3, CarRecordConfig(seconds=9.0), progress=False))
    assert len(np.unique(plain.command, axis=0)) == 1


def test_dense_recordings_are_their_own_dataset_and_drive_in_dense_traffic(tmp_path):
    from physai.errors import ConfigError
    from physai.pipeline import ensure_dataset
    from physai.sim.car.family import CarRecordConfig

    with pytest.raises(ConfigError, match="record.density"):
        CarRecordConfig(density=0.0)
    path = ensure_dataset("physai/car-highway", 1, tmp_path, 3, CarRecordConfig(seconds=1.0, density=2.5), progress=False)
    assert path.name.endswith(f"-density2.5-spec{get_spec('car').digest()}")
    import json

    from physai.data import format as F

    sessions = json.loads((path / F.META_FILE).read_text())["sessions"]
    assert "2.5" in sessions[0]["env_kwargs"]["config"]  # the env was built with that density


def test_car_random_commands_include_stops_that_a_later_go_ends():
    from physai.sim.car import STOP_NONE_M
    from physai.sim.car.family import CarFamily

    fam = CarFamily()
    timelines = [fam.random_commands("physai/car-highway", np.random.default_rng(i), 30.0) for i in range(200)]
    stops = [t for t in timelines if "stop" in t[0][1]]
    assert 30 <= len(stops) <= 70  # about a quarter
    for t in stops:
        assert 110 <= t[0][1]["stop"] <= 220 and t[1][1] == {"stop": STOP_NONE_M} and t[1][0] >= 22.0
    assert all("stop" not in c for t in timelines for _, c in t[1:] if t not in stops)
    assert fam.random_commands("physai/car-highway", np.random.default_rng(0), 10.0)  # short episodes still get one


def test_car_task_string_names_a_stop_without_its_countdown():
    from physai.embodiments import get_spec
    from physai.sim.car.family import CarFamily

    fam, spec = CarFamily(), get_spec("car")
    near, far = (fam.task_string(spec, {"lane": "keep", "speed": 20.0, "stop": d}) for d in (12.0, 140.0))
    assert near == far and "stop" in near  # one dataset task per instruction, not one per metre
    assert "stop" not in fam.task_string(spec, {"lane": "keep", "speed": 20.0})
