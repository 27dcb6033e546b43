"""Malformed observations give typed errors naming the field; a hypothesis fuzz test checks that
nothing else ever escapes and that no NaN or out-of-bounds action is ever emitted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from physai.errors import ObservationError, PhysaiError
from physai.policy import Policy
from physai.testing import make_obs, tiny_config

_POL = None


def policy():
    global _POL
    if _POL is None:
        torch.manual_seed(0)
        _POL = Policy.build(tiny_config(embodiments=("car", "g1")))
    return _POL


@pytest.mark.parametrize("emb", ["car", "g1"])
@pytest.mark.parametrize("mutate,field", [
    (lambda o: o.pop("image"), "image"),
    (lambda o: o.pop("proprio"), "proprio"),
    (lambda o: o.update(extra=1), "extra"),
    (lambda o: o.update(image=o["image"][:, :32]), "image"),
    (lambda o: o.update(image=o["image"].transpose(1, 2, 0)), "image"),  # HWC instead of CHW
    (lambda o: o.update(image=o["image"].astype(np.int64)), "image"),
    (lambda o: o.update(image=o["image"].astype(np.float32)), "image"),  # floats must be in [0, 1]
    (lambda o: o.update(proprio=o["proprio"][:-1]), "proprio"),
    (lambda o: o.update(proprio=np.full_like(o["proprio"], np.nan)), "proprio"),
    (lambda o: o.update(proprio=np.full_like(o["proprio"], np.inf)), "proprio"),
    (lambda o: o.update(proprio="fast"), "proprio"),
    (lambda o: o.update(command=np.zeros(7, np.float32)), "command"),
    (lambda o: o.update(command={"bogus": 1}), "command"),
])
def test_malformed_observation_names_field(emb, mutate, field):
    pol = policy()
    obs = make_obs(pol.specs[emb])
    mutate(obs)
    with pytest.raises(ObservationError) as ei:
        pol.select_action(obs, emb)
    assert field in str(ei.value)
    assert "expected" in str(ei.value)


def test_accepts_batched_float_and_tensor_inputs():
    pol = policy()
    s = pol.specs["g1"]
    o = make_obs(s)
    batched = {"image": torch.as_tensor(o["image"][None]).float() / 255, "proprio": torch.as_tensor(o["proprio"][None]),
               "command": torch.as_tensor(s.encode_command(o["command"]))[None]}
    a = pol.predict_action_chunk(batched, "g1")
    b = pol.predict_action_chunk(o, "g1")
    assert a.shape == (1, *b.shape) and torch.allclose(a[0], b, atol=1e-5)


_dims = st.integers(min_value=0, max_value=5)
_shape = st.lists(st.sampled_from([0, 1, 2, 3, 6, 29, 64, 97]), min_size=0, max_size=5)
_dtype = st.sampled_from([np.uint8, np.float32, np.float64, np.int32, np.bool_, np.float16])
_special = st.sampled_from([None, np.nan, np.inf, -np.inf, 1e30, -1.0, 2.0, 300.0])


@st.composite
def arrays(draw):
    shape = tuple(draw(_shape))
    dtype = draw(_dtype)
    size = int(np.prod(shape)) if shape else 1
    if size > 200_000:
        shape, size = (3, 64, 64), 3 * 64 * 64
    arr = np.zeros(shape, dtype=dtype)
    sp = draw(_special)
    if sp is not None and size and np.issubdtype(dtype, np.floating):
        arr.reshape(-1)[draw(st.integers(0, size - 1))] = sp
    return arr


@st.composite
def observations(draw, spec):
    obs = make_obs(spec, np.random.default_rng(draw(st.integers(0, 1000))))
    for key in ("image", "proprio", "command"):
        choice = draw(st.sampled_from(["keep", "keep", "array", "drop", "junk"]))
        if choice == "array":
            obs[key] = draw(arrays())
        elif choice == "drop":
            obs.pop(key)
        elif choice == "junk":
            obs[key] = draw(st.sampled_from([None, "x", [1, 2], {"lane": "up"}, 3.5, object()]))
    if draw(st.booleans()):
        obs[draw(st.sampled_from(["images", "state", "cmd"]))] = 0
    return obs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), emb=st.sampled_from(["car", "g1"]))
def test_fuzz_only_typed_errors_never_nan(data, emb):
    pol = policy()
    spec = pol.specs[emb]
    obs = data.draw(observations(spec))
    pol.reset()
    try:
        a = pol.select_action(obs, emb)
    except PhysaiError:
        return
    a = a.numpy()
    assert np.isfinite(a).all()
    assert (a >= spec.low - 1e-6).all() and (a <= spec.high + 1e-6).all()


# ---- a NaN upstream is substituted, counted and warned about -----------------------------------
def _nan_policy():
    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("car",))).eval()
    with torch.no_grad():
        next(pol.heads["car"].parameters()).fill_(float("nan"))  # a poisoned weight
    return pol


def test_nonfinite_actions_are_substituted_counted_and_warned_once_per_episode():
    import warnings

    from physai.embodiments import get_spec
    from physai.validate import NonFiniteActionWarning

    pol, spec = _nan_policy(), get_spec("car")
    rng = np.random.default_rng(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            a = pol.select_action(make_obs(spec, rng), "car")
            assert torch.isfinite(a).all()
            assert torch.all(a >= torch.tensor(spec.low)) and torch.all(a <= torch.tensor(spec.high))
        pol.reset()
        pol.select_action(make_obs(spec, rng), "car")
    assert pol.nonfinite_actions == {"car": 4}
    assert sum(issubclass(w.category, NonFiniteActionWarning) for w in caught) == 2  # once per episode
    chunk = pol.predict_action_chunk(make_obs(spec, rng), "car")
    assert torch.isfinite(chunk).all() and pol.nonfinite_actions["car"] == 4 + chunk.shape[0]


def test_overflowing_proprio_is_counted_not_silent():
    """proprio=1e30 is finite (so no ObservationError) but overflows inside the model."""
    import warnings

    from physai.embodiments import get_spec
    from physai.validate import NonFiniteActionWarning

    torch.manual_seed(0)
    pol, spec = Policy.build(tiny_config(embodiments=("g1",))).eval(), get_spec("g1")
    obs = make_obs(spec, np.random.default_rng(0))
    obs["proprio"] = np.full_like(obs["proprio"], 1e30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = pol.select_action(obs, "g1")
    assert torch.isfinite(a).all()
    assert pol.nonfinite_actions.get("g1", 0) == 1
    assert any(issubclass(w.category, NonFiniteActionWarning) for w in caught)


def test_safe_policy_and_rollout_report_policy_substitutions():
    from physai.embodiments import get_spec
    from physai.embodiments.safety import CarGuard, SafePolicy
    from physai.sim.rollout import PolicyDriver, run_episodes
    from physai.sim.evaluate import seeded_scenarios
    from physai.sim.rollout import Episode

    pol, spec = _nan_policy(), get_spec("car")
    sp = SafePolicy(pol, CarGuard(spec), "car")
    sp.reset(None)
    rng = np.random.default_rng(0)
    with pytest.warns(Warning):
        for _ in range(2):
            sp.select_action(make_obs(spec, rng), None)
    assert sp.counts["policy_nonfinite"] == 2 and sp.interventions >= 2
    sp.reset(None)
    assert sp.counts["policy_nonfinite"] == 0

    eps = [Episode(scenario=sc, max_steps=5, safety=False) for sc in seeded_scenarios("physai/car-highway", 2, 7)]
    with pytest.warns(Warning):
        res = run_episodes(PolicyDriver(pol, "car", optimize=False), eps, slots=2)
    assert [r["metrics"]["nonfinite_actions"] for r in res] == [5.0, 5.0]
