"""`Policy.imagine`: shapes, causality, autoregression on its own predictions, action dependence,
the residual-action normalization, and typed errors."""

import numpy as np
import pytest
import torch

from physai.embodiments import get_spec
from physai.errors import ConfigError, ObservationError
from physai.policy import Policy
from physai.testing import SyntheticSource, make_obs, tiny_config

torch.manual_seed(0)


def _policy(emb="car", **kw):
    spec = get_spec(emb)
    policy = Policy.build(tiny_config(embodiments=(emb,), **kw), backend="math")
    SyntheticSource([spec]).fit_normalizer(policy)
    if emb in policy.config.residual_actions:
        policy.normalizer.fit(emb, "action_delta", np.random.default_rng(0).normal(0, 0.1, (64, spec.action_dim)))
    return policy.eval(), spec


def _obs(spec, B=3):
    rng = np.random.default_rng(1)
    obs = [make_obs(spec, rng) for _ in range(B)]
    return {k: np.stack([np.asarray(o[k]) for o in obs]) if k != "command" else
            np.stack([spec.encode_command(o[k]) for o in obs]) for k in obs[0]}


def _actions(spec, B, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(spec.low), torch.tensor(spec.high)
    return lo + (hi - lo) * torch.rand(B, T, spec.action_dim, generator=g)


def test_shapes_and_start_codes():
    policy, spec = _policy()
    H, K = policy.config.head.chunk_size, policy.config.n_readout
    obs = _obs(spec)
    out = policy.imagine(obs, _actions(spec, 3, 3 * H), "car")
    V, d = policy.bottleneck.vocab_size, policy.bottleneck.fsq.dim
    assert out.codes.shape == (3, 3, K) and out.logits.shape == (3, 3, K, V) and out.quantized.shape == (3, 3, K, d)
    assert torch.equal(out.start, policy.physical_tokens(obs, "car"))
    assert torch.equal(out.codes, out.logits.argmax(-1))
    assert ((out.codes >= 0) & (out.codes < V)).all()


def test_causal_and_autoregressive_on_its_own_predictions():
    policy, spec = _policy()
    H = policy.config.head.chunk_size
    obs, a = _obs(spec), _actions(spec, 3, 3 * H)
    out = policy.imagine(obs, a, "car")
    b = a.clone()
    b[:, 2 * H:] = torch.tensor(spec.low)  # change only the last chunk
    out2 = policy.imagine(obs, b, "car")
    assert torch.equal(out.logits[:, :2], out2.logits[:, :2])  # steps 0-1 never see chunk 2
    assert not torch.allclose(out.logits[:, 2], out2.logits[:, 2])  # step 2 does
    # step 1 is the world model applied to step 0's predicted codes (not to the real next codes)
    wm, fsq = policy.world_model, policy.bottleneck.fsq
    norm = policy.normalizer.normalize("car", "action", a[:, H:2 * H])
    with torch.no_grad():
        manual = wm(fsq.quantized_from_codes(out.codes[:, 0]), norm, "car")
    assert torch.allclose(manual, out.logits[:, 1], atol=1e-5)


def test_prediction_depends_on_the_action():
    policy, spec = _policy()
    H = policy.config.head.chunk_size
    obs = _obs(spec)
    brake = torch.tensor([spec.low[0], 0.0]).expand(3, H, 2)
    throttle = torch.tensor([spec.high[0], 0.0]).expand(3, H, 2)
    lb, lt = policy.imagine(obs, brake, "car").logits, policy.imagine(obs, throttle, "car").logits
    kl = torch.nn.functional.kl_div(lt.log_softmax(-1), lb.log_softmax(-1), log_target=True, reduction="batchmean")
    assert float(kl) > 1e-4


def test_residual_body_normalizes_each_chunk_against_the_action_before_it():
    policy, spec = _policy("g1", residual_actions=("g1",))
    H = policy.config.head.chunk_size
    obs = _obs(spec, B=2)
    a = _actions(spec, 2, 2 * H)
    out = policy.imagine(obs, a, "g1")
    idx = policy.residual_index("g1")
    base0 = torch.as_tensor(obs["proprio"][:, idx])
    wm, fsq, n = policy.world_model, policy.bottleneck.fsq, policy.normalizer
    with torch.no_grad():
        first = wm(policy.encode(policy._norm_obs(
            {"image": torch.as_tensor(obs["image"])[:, None, None].float() / 255, "proprio": torch.as_tensor(obs["proprio"])[:, None],
             "command": torch.as_tensor(obs["command"])}, "g1"), "g1")["quantized"],
            n.normalize("g1", "action_delta", a[:, :H] - base0[:, None]), "g1")
        second = wm(fsq.quantized_from_codes(out.codes[:, 0]), n.normalize("g1", "action_delta", a[:, H:] - a[:, H - 1:H]), "g1")
    assert torch.allclose(first, out.logits[:, 0], atol=1e-4)
    assert torch.allclose(second, out.logits[:, 1], atol=1e-5)


def test_typed_errors():
    policy, spec = _policy()
    H = policy.config.head.chunk_size
    obs = _obs(spec)
    for bad in (_actions(spec, 3, H + 1), _actions(spec, 2, H), torch.zeros(3, H, 3), torch.zeros(3, H)):
        with pytest.raises(ObservationError, match="actions"):
            policy.imagine(obs, bad, "car")
    nan = _actions(spec, 3, H)
    nan[0, 0, 0] = float("nan")
    with pytest.raises(ObservationError, match="actions"):
        policy.imagine(obs, nan, "car")
    with pytest.raises(ObservationError, match="batched"):
        policy.imagine(make_obs(spec), _actions(spec, 1, H)[0], "car")
    no_wm, _ = _policy(world_model=False)
    with pytest.raises(ConfigError, match="world model"):
        no_wm.imagine(obs, _actions(spec, 3, H), "car")


def test_bench_world_model_scores_against_real_rollouts(tmp_path, monkeypatch):
    """The bench on a tiny car checkpoint: one row per horizon, baselines and counterfactual present;
    an imagination that copies the start codes scores exactly the copy baseline (target alignment)."""
    from physai.bench import world_model as wmb

    policy, spec = _policy()
    policy.save_pretrained(tmp_path / "ck")
    res = wmb.bench_world_model(str(tmp_path / "ck"), episodes=2, seconds=4.0, horizon=2, stride=2,
                                png=tmp_path / "wm.png")
    rows = res["rows"]
    assert [r["horizon"] for r in rows] == [1, 2] and all(r["starts"] > 0 for r in rows)
    V = policy.bottleneck.vocab_size
    for r in rows:
        assert 0 <= r["wm_top1"] <= 1 and 0 <= r["copy_top1"] <= 1 and 0 < r["freq_ce"] <= np.log(V) + 1e-6
        assert np.isfinite(r["wm_ce"]) and r["seconds_ahead"] == pytest.approx(r["horizon"] * 4 / spec.control_hz)
    cf = res["counterfactual"]
    assert len(cf) == 2 and {"brake", "accelerate", "brake_higher", "probe_r2"} <= set(cf[0])
    assert (tmp_path / "wm.png").stat().st_size > 1000

    def copy_imagine(self, obs, actions, embodiment):
        out = wmb_imagine(self, obs, actions, embodiment)
        k = out.codes.shape[1]
        return type(out)(start=out.start, codes=out.start[:, None].expand(-1, k, -1), logits=out.logits,
                         quantized=out.quantized)

    from physai.world import imagine as wmb_imagine

    monkeypatch.setattr(Policy, "imagine", copy_imagine)
    res = wmb.bench_world_model(str(tmp_path / "ck"), episodes=2, seconds=4.0, horizon=2, stride=2)
    assert all(r["wm_top1"] == pytest.approx(r["copy_top1"]) for r in res["rows"])


def test_reward_to_go_truncates_at_the_episode_end():
    from physai.plan import reward_to_go

    r = np.array([1.0, 0.0, 2.0, -10.0])
    assert np.allclose(reward_to_go(r, 2, 0.5), [1.0, 1.0, -3.0, -10.0])
    assert np.allclose(reward_to_go(r[:1], 15, 0.9), [1.0])  # an episode shorter than the window


def test_planner_candidates_scores_and_round_trip(tmp_path):
    from physai.errors import CheckpointError
    from physai.plan import Planner, PlannerConfig, TokenValue

    policy, spec = _policy()
    value = TokenValue(policy.config.n_readout, policy.bottleneck.fsq.dim, spec.command_dim, hidden=16)
    plan = Planner(policy, value, PlannerConfig(embodiment="car", candidates=6, noise=0.5, hidden=16))
    obs = _obs(spec)
    head = policy.predict_action_chunk(obs, "car")
    cands = plan.candidates(head)
    assert cands.shape == (3, 6, *head.shape[1:]) and torch.equal(cands[:, 0], head)
    lo, hi = torch.tensor(spec.low), torch.tensor(spec.high)
    assert ((cands >= lo) & (cands <= hi)).all() and not torch.allclose(cands[:, 1], head)
    out = plan.predict_action_chunk(obs, "car")
    assert out.shape == head.shape and torch.isfinite(out).all()
    scores = plan.score(obs, plan.candidates(head))  # the executed chunk is the best-scoring candidate
    assert scores.shape == (3, 6)
    never = Planner(policy, value, PlannerConfig(embodiment="car", candidates=6, margin=1e9, hidden=16))
    assert torch.equal(never.predict_action_chunk(obs, "car"), head) and never.replaced == 0
    plan.save(tmp_path / "p")
    back = Planner.load(tmp_path / "p", policy)
    assert back.cfg == plan.cfg
    q = torch.zeros(2, policy.config.n_readout, policy.bottleneck.fsq.dim)
    c = torch.zeros(2, spec.command_dim)
    assert torch.equal(back.value(q, c), plan.value(q, c))
    lat = plan.latency_ms()
    assert lat["calls"] == 1 and lat["budget_ms"] == pytest.approx(1000 / spec.control_hz)
    with pytest.raises(CheckpointError, match="planner"):
        Planner.load(tmp_path / "nothing", policy)
    with pytest.raises(ConfigError, match="candidates"):
        PlannerConfig(candidates=0)
