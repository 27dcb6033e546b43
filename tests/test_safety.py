"""Safety guards outside the simulator: property tests over adversarial actions and garbage sensors
(bounds, rate limits, finiteness), shape errors, the car's emergency brake on synthetic radar
tracks and in the real highway env, the humanoid's first-step rate limit and fall stance,
`SafePolicy` with a tiny policy, and the envs' documented `info["sensors"]` and `episode_seconds`."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest

import physai.sim
from physai.embodiments import get_spec
from physai.embodiments.safety import CAR_RULES, HUMANOID_RULES, CarGuard, HumanoidGuard, SafePolicy
from physai.errors import ConfigError, ObservationError

CAR = get_spec("car")
G1 = get_spec("g1")
TOL = 1e-5  # float32 outputs


def _g1_pose() -> np.ndarray:
    return ((G1.low + G1.high) / 2).astype(np.float64)  # a stand-in default pose inside the bounds


def _sensors(dx, dy=0.0, dvx=0.0, dvy=0.0, speed=30.0, length=5.0):
    return {"ego_speed": speed, "ego_lane": 1, "lane_width": 4.0, "ego_length": 5.0,
            "objects": np.array([[dx, dy, dvx, dvy, length]], dtype=np.float32)}


def _adversarial_actions(rng, n, low, high):
    """[n, A] actions: NaN, ±inf, ±1e9, alternating extremes, random in and far out of bounds, repeats."""
    A = low.shape[0]
    span = high - low
    kind = rng.integers(0, 8, n)
    a = rng.uniform(low, high, (n, A))  # kind 0: in bounds
    out = rng.uniform(low - 3 * span, high + 3 * span, (n, A))
    a[kind == 1] = out[kind == 1]
    mask = rng.random((n, A)) < 0.3
    for k, val in ((2, np.nan), (3, np.inf), (4, -np.inf)):
        rows = kind == k
        a[rows] = np.where(mask[rows] | (rng.random((rows.sum(), 1)) < 0.2), val, a[rows])
    rows = kind == 5
    a[rows] = rng.choice([-1e9, 1e9], (rows.sum(), A))
    alt = np.where((np.arange(n) % 2 == 0)[:, None], high, low)  # alternating extremes
    a[kind == 6] = alt[kind == 6]
    a[kind == 7] = np.where((np.arange(n) % 2 == 0)[:, None], 10 * high, 10 * low)[kind == 7]
    return a


# ---- property tests --------------------------------------------------------------------------
def _car_sensor_state(rng):
    """Random radar states, a third of them garbage (which must brake)."""
    r = rng.random()
    if r < 0.66:
        n = int(rng.integers(0, 4))
        obj = np.column_stack([rng.uniform(-20, 100, n), rng.uniform(-8, 8, n), rng.uniform(-30, 10, n),
                               rng.uniform(-3, 3, n), rng.uniform(1, 6, n)]).astype(np.float32)
        return {"ego_speed": float(rng.uniform(0, 40)), "ego_lane": 1, "lane_width": 4.0, "ego_length": 5.0,
                "objects": obj}, False
    good = _sensors(30.0)
    g = int(rng.integers(0, 9))
    if g == 0:
        return None, True
    if g == 1:
        return {}, True
    if g == 2:
        return {k: v for k, v in good.items() if k != rng.choice(["ego_speed", "lane_width", "ego_length", "objects"])}, True
    if g == 3:
        return {**good, "ego_speed": float("nan")}, True
    if g == 4:
        return {**good, "objects": np.array([[np.nan, 0, 0, 0, 5]], np.float32)}, True
    if g == 5:
        return {**good, "objects": np.array([[10, np.inf, 0, 0, 5]], np.float32)}, True
    if g == 6:
        return {**good, "objects": np.zeros((2, 4), np.float32)}, True
    if g == 7:
        return {**good, "lane_width": -1.0}, True
    return {**good, "ego_speed": "fast"}, True


def test_car_guard_property_bounds_rates_finite():
    rng = np.random.default_rng(0)
    g = CarGuard(CAR)
    n = 100_000
    actions = _adversarial_actions(rng, n, CAR.low.astype(np.float64), CAR.high.astype(np.float64))
    low, high = CarGuard(CAR)._low, CarGuard(CAR)._high
    states = [_car_sensor_state(rng) for _ in range(64)]  # a pool, drawn from at random (fast)
    pick = rng.integers(0, len(states), n)
    violations = {"bounds": 0, "finite": 0, "accel_rate": 0, "steer_rate": 0, "fail_open": 0}
    last = np.zeros(2)
    total = dict.fromkeys(CAR_RULES, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(n):
            if i % 500 == 0:
                total = {k: total[k] + g.counts[k] for k in total}
                g.reset()
                last = np.zeros(2)
            sensors, garbage = states[pick[i]]
            out = g.filter(actions[i], sensors)
            assert out.shape == (2,) and out.dtype == np.float32
            o = out.astype(np.float64)
            violations["finite"] += not np.all(np.isfinite(o))
            violations["bounds"] += bool(np.any(o < low) or np.any(o > high))
            violations["steer_rate"] += abs(o[1] - last[1]) > g.max_steer_step + TOL
            # full braking (AEB, sensor failure, non-finite action) is the documented exception
            violations["accel_rate"] += abs(o[0] - last[0]) > g.max_accel_step + TOL and o[0] != low[0]
            violations["fail_open"] += garbage and o[0] != low[0]
            last = o
    assert violations == {k: 0 for k in violations}
    assert set(g.counts) == set(CAR_RULES) and all(v > 0 for v in total.values()), total  # every rule was hit


def _humanoid_sensor_state(rng, pose, fallen=False):
    r = 0.95 if fallen else rng.random() * 0.9
    A = pose.shape[0]
    if r < 0.1:
        return None
    if r < 0.2:  # garbage
        return {"gravity": np.array([np.nan, 0, -1]), "base_height": float("inf"), "stand_height": 0.76,
                "joint_pos": np.full(A + 1, 0.1), "joint_vel": np.zeros(A)}
    tilt = math.radians(rng.uniform(55, 120) if fallen else rng.uniform(0, 40))
    gravity = np.array([math.sin(tilt), 0.0, -math.cos(tilt)], np.float32)
    return {"gravity": gravity, "base_height": float(rng.uniform(0.5, 0.8)), "stand_height": 0.76,
            "joint_pos": (pose + rng.uniform(-0.5, 0.5, A)).astype(np.float32), "joint_vel": np.zeros(A, np.float32)}


def test_humanoid_guard_property_bounds_rates_finite():
    rng = np.random.default_rng(1)
    pose = _g1_pose()
    g = HumanoidGuard(G1, default_pose=pose)
    n = 100_000
    low, high = G1.low.astype(np.float64), G1.high.astype(np.float64)
    actions = _adversarial_actions(rng, n, low, high)
    states = [_humanoid_sensor_state(rng, pose) for _ in range(60)] + [_humanoid_sensor_state(rng, pose, True)
                                                                      for _ in range(4)]
    pick = np.where(rng.random(n) < 1e-3, rng.integers(60, 64, n), rng.integers(0, 60, n))  # ~1 fall per episode
    bad = {"bounds": 0, "finite": 0, "rate": 0}
    last = None
    total = dict.fromkeys(HUMANOID_RULES, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(n):
            sensors = states[pick[i]]
            if i % 500 == 0:
                total = {k: total[k] + g.counts[k] for k in total}
                g.reset(sensors)
                q = g._joint_pos(sensors)
                last = q  # None: the first filter's sensors, else the default pose
            out = g.filter(actions[i], sensors).astype(np.float64)
            if last is None:
                q = g._joint_pos(sensors)
                last = q if q is not None else pose
            bad["finite"] += not np.all(np.isfinite(out))
            bad["bounds"] += bool(np.any(out < low) or np.any(out > high))
            bad["rate"] += bool(np.any(np.abs(out - last) > g.max_step_rad + TOL))
            last = out
    assert bad == {"bounds": 0, "finite": 0, "rate": 0}
    assert set(g.counts) == set(HUMANOID_RULES) and all(v > 0 for v in total.values()), total


# ---- shapes, non-finite, counts --------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: CarGuard(CAR), lambda: HumanoidGuard(G1, default_pose=_g1_pose())],
                         ids=["car", "g1"])
def test_wrong_shapes_raise(make):
    g = make()
    A = g.spec.action_dim
    for bad in (np.array([0.3]), np.zeros((A, 1)), np.zeros(A + 1), np.zeros((1, A)), 0.3, np.float32(0.3), "go"):
        with pytest.raises(ObservationError, match="action") as e:
            g.filter(bad, None)
        assert f"({A},)" in e.value.expected


def test_counts_start_at_zero_and_nonfinite_warns_once_per_episode():
    g = CarGuard(CAR)
    assert g.counts == {k: 0 for k in CAR_RULES} and g.interventions == 0
    s = _sensors(200.0)
    g.filter(np.array([1.0, 0.1]), s)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        out = g.filter(np.array([np.nan, 0.0]), s)
    assert out[0] == CAR.low[0] and out[1] == pytest.approx(0.1)  # full brake, last steering
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning in the same episode would raise
        g.filter(np.array([0.0, np.inf]), s)
    assert g.counts["nonfinite"] == 2 and g.interventions >= 2
    g.reset()
    assert g.interventions == 0
    with pytest.warns(RuntimeWarning):
        g.filter(np.array([np.nan, np.nan]), s)


# ---- car AEB on synthetic radar tracks -------------------------------------------------------
def test_car_aeb_synthetic_sensors():
    brake = float(CAR.low[0])
    g = CarGuard(CAR)
    a = np.array([1.0, 0.05], np.float32)
    # a stopped object 30 m ahead, closing at 30 m/s: needs ~90 m to stop
    assert g.filter(a, _sensors(30.0, dvx=-30.0))[0] == brake and g.counts["aeb"] == 1
    g.reset()
    out = g.filter(a, _sensors(200.0, dvx=-30.0))  # far away: passes through unchanged
    assert np.array_equal(out, a) and g.interventions == 0
    out = g.filter(a, _sensors(30.0, dy=4.0, dvx=-30.0))  # stopped, but in the next lane
    assert np.array_equal(out, a) and g.interventions == 0
    out = g.filter(a, _sensors(60.0, dvx=0.0, speed=25.0))  # following at the same speed, 2.2 s
    assert np.array_equal(out, a) and g.interventions == 0
    # a car from the next lane cutting in 10 m ahead at our speed
    assert g.filter(a, _sensors(10.0, dy=4.0, dvy=-3.0, speed=25.0))[0] == brake
    # crossing traffic that clears the path long before the ego gets there
    g.reset()
    out = g.filter(a, {**_sensors(20.0, dy=-3.0, dvx=-10.0, dvy=15.0, speed=10.0)})
    assert np.array_equal(out, a) and g.interventions == 0
    # fail closed
    for bad in (None, {}, {k: v for k, v in _sensors(50.0).items() if k != "objects"},
                _sensors(float("nan")), {**_sensors(50.0), "ego_speed": float("inf")}):
        g.reset()
        assert g.filter(a, bad)[0] == brake and g.counts["sensor_fail"] == 1
    g.reset()  # no objects at all is a valid, free road
    assert np.array_equal(g.filter(a, {**_sensors(1.0), "objects": np.zeros((0, 5), np.float32)}), a)


def test_car_rate_limits_and_aeb_bypass():
    g = CarGuard(CAR)
    free = _sensors(300.0)
    out = g.filter(np.array([5.0, 0.7]), free)  # from (0, 0) at reset
    assert out[0] == pytest.approx(g.max_accel_step) and out[1] == pytest.approx(g.max_steer_step)
    assert g.counts["accel_rate"] == 1 and g.counts["steer_rate"] == 1 and g.counts["bounds"] == 0
    out = g.filter(np.array([5.0, 0.7]), _sensors(8.0, dvx=-10.0))  # emergency: full brake at once
    assert out[0] == CAR.low[0] and g.counts["aeb"] == 1
    out = g.filter(np.array([1e9, -1e9]), free)
    assert out[0] == pytest.approx(CAR.low[0] + g.max_accel_step) and g.counts["bounds"] == 1


# ---- car guard in the real highway env -------------------------------------------------------
def _full_throttle(env, seed, guard, steps=100):
    obs, info = env.reset(seed=seed)
    if guard is not None:
        guard.reset(info["sensors"])
    for _ in range(steps):
        a = np.array([5.0, 0.0], np.float32)
        if guard is not None:
            a = guard.filter(a, info["sensors"])
        obs, _, term, trunc, info = env.step(a)
        if info["collision"]:
            return True, info
        if term or trunc:
            break
    return False, info


def test_car_guard_prevents_full_throttle_crashes_in_highway_env():
    physai.sim.register_envs()
    env = gym.make("physai/car-highway")
    try:
        _, info = env.reset(seed=0)
        s = info["sensors"]
        assert set(s) == {"ego_speed", "ego_lane", "lane_width", "ego_length", "objects"}
        assert s["objects"].dtype == np.float32 and s["objects"].ndim == 2 and s["objects"].shape[1] == 5
        assert isinstance(s["ego_lane"], int) and s["lane_width"] > 0 and s["ego_length"] > 0
        assert np.all(np.hypot(s["objects"][:, 0], s["objects"][:, 1]) < 100.0)
        unguarded = [_full_throttle(env, seed, None)[0] for seed in (0, 1, 2)]
        assert any(unguarded)  # the test scenario is a real threat
        for seed in (0, 1, 2):
            guard = CarGuard(CAR)
            crashed, info = _full_throttle(env, seed, guard)
            assert not crashed, f"seed {seed}: collision with the guard on ({guard.counts})"
            assert info["time_s"] == pytest.approx(20.0) and guard.counts["aeb"] > 0
            assert info["progress_m"] > 300  # it brakes when needed, it does not just stop
            assert guard.counts["sensor_fail"] == 0
    finally:
        env.close()


def test_car_sensors_match_the_lead_vehicle():
    physai.sim.register_envs()
    env = gym.make("physai/car-highway")
    try:
        _, info = env.reset(seed=0)
        car = env.unwrapped
        ego = car.sim.vehicle
        front, _ = car.sim.road.neighbour_vehicles(ego, ego.lane_index)
        o = info["sensors"]["objects"]
        row = o[np.argmin(np.where(np.abs(o[:, 1]) < 1.0, np.where(o[:, 0] > 0, o[:, 0], np.inf), np.inf))]
        assert row[0] == pytest.approx(front.position[0] - ego.position[0], abs=1e-3)
        assert row[2] == pytest.approx(front.speed - ego.speed, abs=1e-3) and row[4] == pytest.approx(front.LENGTH)
        assert info["sensors"]["ego_speed"] == pytest.approx(info["speed"])
        _, _, _, _, info = env.step(np.zeros(2, np.float32))
        assert "sensors" in info and info["sensors"]["ego_lane"] == info["lane_id"]
    finally:
        env.close()


def test_car_merge_episode_seconds_truncates_without_duration_key():
    physai.sim.register_envs()
    env = gym.make("physai/car-merge", episode_seconds=3)
    try:
        env.reset(seed=0)
        for k in range(1, 40):
            _, _, term, trunc, info = env.step(np.zeros(2, np.float32))
            if term or trunc:
                break
        assert trunc and not term and k == 15 and info["time_s"] == pytest.approx(3.0)
        assert "duration" not in env.unwrapped.sim.config or env.unwrapped.sim.config.get("duration") == 40
    finally:
        env.close()
    for bad in (0, -1.0, float("nan"), float("inf"), True, "3"):
        with pytest.raises(ConfigError, match="episode_seconds"):
            gym.make("physai/car-merge", episode_seconds=bad)


# ---- humanoid --------------------------------------------------------------------------------
def test_humanoid_first_action_after_reset_is_rate_limited():
    pose = _g1_pose()
    g = HumanoidGuard(G1, default_pose=pose)
    q = np.clip(pose + 0.2, G1.low, G1.high)
    g.reset({"joint_pos": q})
    out = g.filter(G1.high, None)
    assert np.all(out <= q + g.max_step_rad + TOL) and g.counts["rate"] == 1
    g2 = HumanoidGuard(G1, default_pose=pose)  # no sensors at reset: the first filter's joint_pos
    g2.reset()
    out = g2.filter(G1.low, {"joint_pos": q})
    assert np.all(out >= q - g2.max_step_rad - TOL)
    g3 = HumanoidGuard(G1, default_pose=pose)
    g3.reset()
    assert np.all(np.abs(g3.filter(G1.high, None) - pose) <= g3.max_step_rad + TOL)  # none: the default pose


def test_humanoid_nonfinite_holds_last_target():
    pose = _g1_pose()
    g = HumanoidGuard(G1, default_pose=pose)
    g.reset({"joint_pos": pose})
    first = g.filter(pose + 0.1, None)
    bad = np.array(pose + 0.1)
    bad[3] = np.nan
    with pytest.warns(RuntimeWarning, match="non-finite"):
        out = g.filter(bad, None)
    assert np.array_equal(out, first) and g.counts["nonfinite"] == 1


def test_humanoid_fall_latches_a_stance_towards_the_default_pose():
    pose = _g1_pose()
    g = HumanoidGuard(G1, default_pose=pose)
    q = np.clip(pose + 0.3, G1.low, G1.high).astype(np.float32)
    upright = {"gravity": np.array([0, 0, -1], np.float32), "base_height": 0.75, "stand_height": 0.76,
               "joint_pos": q, "joint_vel": np.zeros(G1.action_dim, np.float32)}
    g.reset(upright)
    assert not g.fallen and np.allclose(g.filter(q, upright), q)
    tilted = {**upright, "gravity": np.array([math.sin(1.2), 0, -math.cos(1.2)], np.float32)}  # 69°
    prev = g.filter(G1.high, tilted)
    assert g.fallen and g.counts["fall"] == 1
    dist = [np.abs(prev - pose).max()]
    for _ in range(20):  # latched: an upright reading and a wild action change nothing
        out = g.filter(G1.low, upright)
        assert np.all(np.abs(out - prev) <= g.fall_step_rad + TOL)
        dist.append(np.abs(out - pose).max())
        prev = out
    assert g.counts["fall"] == 21 and all(b <= a + TOL for a, b in zip(dist, dist[1:]))
    assert np.allclose(prev, pose, atol=TOL)
    g.reset(upright)
    assert not g.fallen and g.counts["fall"] == 0
    low = {**upright, "base_height": 0.3}  # a base below 0.6 x stand height is a fall too
    g.filter(q, low)
    assert g.fallen


def test_humanoid_env_sensors_and_guard():
    from physai.sim.humanoid.env import HumanoidWalkEnv
    from physai.sim.humanoid.robots import robot_setup

    env = HumanoidWalkEnv("g1", render_images=False, episode_seconds=1.0)
    try:
        _, info = env.reset(seed=0)
        s = info["sensors"]
        A = G1.action_dim
        assert set(s) == {"gravity", "base_height", "stand_height", "joint_pos", "joint_vel"}
        assert s["gravity"].shape == (3,) and s["gravity"].dtype == np.float32 and s["gravity"][2] < -0.99
        assert s["joint_pos"].shape == (A,) and s["joint_vel"].shape == (A,) and s["joint_pos"].dtype == np.float32
        assert 0.5 < s["base_height"] / s["stand_height"] < 1.1
        g = HumanoidGuard(G1, default_pose=robot_setup("g1").default_pose)
        g.reset(s)
        for _ in range(5):
            a = g.filter(robot_setup("g1").default_pose, info["sensors"])
            _, _, term, _, info = env.step(a)
            assert not term and "sensors" in info
        assert g.counts["fall"] == 0
    finally:
        env.close()


def test_safe_policy_with_a_tiny_policy():
    import torch

    from physai.policy import Policy
    from physai.testing import make_obs, tiny_config

    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("g1",))).eval()
    pose = _g1_pose()
    guard = HumanoidGuard(G1, default_pose=pose)
    sp = SafePolicy(pol, guard, "g1")
    sp.reset({"joint_pos": pose})
    rng = np.random.default_rng(0)
    prev = pose
    for _ in range(3):
        a = sp.select_action(make_obs(G1, rng), {"joint_pos": pose})
        assert a.shape == (G1.action_dim,) and a.dtype == np.float32
        assert np.all(a >= G1.low) and np.all(a <= G1.high) and np.all(np.abs(a - prev) <= 0.35 + TOL)
        prev = a
    assert set(sp.counts) == {*HUMANOID_RULES, "policy_nonfinite"} and sp.interventions == sum(sp.counts.values())
    assert sp.counts["policy_nonfinite"] == 0
    with pytest.raises(ConfigError, match="embodiment 'car'"):
        SafePolicy(pol, CarGuard(CAR), "car")
