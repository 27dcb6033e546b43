"""Embodiment specs: registry, bounds from the MJCF, command encoding, compatibility checks."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from physai.embodiments import EMBODIMENTS, EmbodimentSpec, get_spec
from physai.embodiments.assets import menagerie_scene
from physai.errors import ObservationError, SpecMismatchError, UnknownNameError


@pytest.mark.parametrize("name", EMBODIMENTS.names())
def test_spec_roundtrip_and_self_compatible(name):
    s = get_spec(name)
    s2 = EmbodimentSpec.from_dict(s.to_dict())
    assert s2 == s
    s.check_compatible(s2.to_dict())
    assert len(s.action_names) == s.action_dim == len(s.action_low)
    assert (s.low < s.high).all()


def test_car_bounds_match_highway_env():
    s = get_spec("car")
    assert s.action_names == ("accel", "steer") and s.action_units == ("m/s^2", "rad")
    assert s.action_low == (-5.0, -math.pi / 4) and s.action_high == (5.0, math.pi / 4)


@pytest.mark.parametrize("name,robot,n", [("g1", "g1", 29), ("t1", "t1", 23)])
def test_humanoid_limits_read_from_mjcf(name, robot, n):
    s = get_spec(name)
    m = mujoco.MjModel.from_xml_path(str(menagerie_scene(robot)))
    assert s.action_dim == n == m.nu
    for i, jn in enumerate(s.action_names):
        j = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, jn)
        assert j >= 0
        assert s.action_low[i] == pytest.approx(m.jnt_range[j, 0]) and s.action_high[i] == pytest.approx(m.jnt_range[j, 1])
    assert s.control_hz == 50 and [f.name for f in s.command] == ["vx", "vy", "yaw_rate"]


def test_command_encoding():
    s = get_spec("car")
    v = s.encode_command({"lane": "left", "speed": 20.0})  # no stop requested: its 300 m default
    assert v.tolist() == [0.0, 1.0, 0.0, 0.0, 1.0]
    assert s.decode_command(v) == {"lane": "left", "speed": 20.0, "stop": 300.0}
    assert s.encode_command({"lane": 2, "speed": np.array([40.0], np.float32), "stop": 150.0}).tolist() == [0, 0, 1, 1, 0]
    with pytest.raises(ObservationError, match="command.stop"):
        s.encode_command({"stop": 301.0})
    with pytest.raises(ObservationError, match="command.lane"):
        s.encode_command({"lane": "up"})
    with pytest.raises(ObservationError, match="command.speed"):
        s.encode_command({"speed": 99})
    with pytest.raises(ObservationError, match="unknown"):
        s.encode_command({"speeed": 3})
    with pytest.raises(ObservationError, match="command.speed"):
        s.encode_command({"speed": float("nan")})


@pytest.mark.parametrize("field,change", [
    ("action_names", lambda d: d.update(action_names=["a", "b"])),
    ("action_units", lambda d: d.update(action_units=["m/s^2", "deg"])),
    ("action_high", lambda d: d.update(action_high=[5.0, 1.0])),
    ("proprio_names", lambda d: d.update(proprio_names=d["proprio_names"][:-1])),
])
def test_mismatch_is_typed_error(field, change):
    s = get_spec("car")
    d = s.to_dict()
    change(d)
    with pytest.raises(SpecMismatchError, match=field):
        s.check_compatible(d)


def test_dim_mismatch_between_bodies():
    with pytest.raises(SpecMismatchError):
        get_spec("g1").check_compatible(get_spec("t1").to_dict() | {"name": "g1"})


def test_unknown_name_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'car'"):
        get_spec("cra")


def test_clip_action_never_nan():
    s = get_spec("car")
    out = s.clip_action(np.array([np.nan, 10.0]))
    assert np.isfinite(out).all() and out[0] == 0.0 and out[1] == pytest.approx(math.pi / 4)


def test_spec_digest_changes_with_the_schema_and_survives_a_round_trip():
    import dataclasses

    car = get_spec("car")
    assert car.digest() == EmbodimentSpec.from_dict(car.to_dict()).digest() and len(car.digest()) == 6
    fewer = dataclasses.replace(car, command=car.command[:2])  # the schema before the stop field
    assert fewer.digest() != car.digest() and get_spec("g1").digest() != car.digest()
