"""Policy: losses per head, bounded actions, chunk queue / temporal ensembling, physical tokens,
normalization, fine-tuning a head with the trunk frozen, adding a new embodiment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physai.testing import SyntheticSource, make_batch, make_obs, tiny_config
from physai.embodiments import get_spec
from physai.errors import ConfigError, ObservationError
from physai.heads import HEADS
from physai.heads.base import HeadConfig
from physai.config import PolicyConfig, policy_config
from physai.policy import Policy
from physai.validate import prepare_observation


@pytest.mark.parametrize("head", HEADS.names())
@pytest.mark.parametrize("emb", ["car", "g1"])
def test_each_head_trains_and_outputs_bounded_chunks(head, emb):
    pol = Policy.build(tiny_config(embodiments=(emb,), head_types=((emb, head),)))
    spec = pol.specs[emb]
    batch = make_batch(spec, B=4)
    pol.normalizer.fit(emb, "action", batch["action"].reshape(-1, spec.action_dim).numpy())
    opt = torch.optim.AdamW(pol.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):  # overfit one batch: the loss must fall
        loss, m = pol(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(m[f"{emb}/action_loss"])
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), losses
    assert {"loss", f"{emb}/world_model_ce", f"{emb}/codebook_usage", f"{emb}/perplexity"} <= set(m)
    chunk = pol.predict_action_chunk({k: batch[k] for k in ("image", "proprio", "command")}, emb)
    assert chunk.shape == (4, 4, spec.action_dim)
    assert torch.isfinite(chunk).all()
    assert (chunk >= torch.tensor(spec.low) - 1e-6).all() and (chunk <= torch.tensor(spec.high) + 1e-6).all()


def test_outputs_clamped_even_when_head_explodes():
    pol = Policy.build(tiny_config(embodiments=("car",)))
    with torch.no_grad():
        pol.heads["car"].out.bias.fill_(1e6)
    a = pol.select_action(make_obs(pol.specs["car"]), "car")
    assert a.tolist() == pytest.approx([5.0, np.pi / 4])
    with torch.no_grad():
        pol.heads["car"].out.bias.fill_(float("nan"))
    pol.reset()
    a = pol.select_action(make_obs(pol.specs["car"]), "car")
    assert torch.isfinite(a).all() and a.tolist() == pytest.approx([0.0, 0.0])


def test_chunk_queue_replans_every_n_steps():
    pol = Policy.build(tiny_config(embodiments=("car",), n_action_steps=2))
    calls = []
    orig = pol._predict
    pol._predict = lambda o, e: calls.append(1) or orig(o, e)
    obs = make_obs(pol.specs["car"])
    for _ in range(5):
        pol.select_action(obs, "car")
    assert len(calls) == 3  # steps 0, 2, 4
    pol.reset()
    pol.select_action(obs, "car")
    assert len(calls) == 4


def test_set_inference_changes_replanning_without_touching_weights():
    pol = Policy.build(tiny_config(embodiments=("car",)))  # re-plans every step by default
    before = {k: v.clone() for k, v in pol.state_dict().items()}
    calls = []
    orig = pol._predict
    pol._predict = lambda o, e: calls.append(1) or orig(o, e)
    obs = make_obs(pol.specs["car"])
    pol.select_action(obs, "car")
    pol.set_inference(n_action_steps=4)  # drops the queued plan and executes 4 actions per chunk
    for _ in range(5):
        pol.select_action(obs, "car")
    assert len(calls) == 1 + 2  # the first call, then steps 0 and 4 after the change
    assert pol.config.n_action_steps == 4
    assert all(torch.equal(before[k], v) for k, v in pol.state_dict().items())
    with pytest.raises(ConfigError, match="n_action_steps must be in"):
        pol.set_inference(n_action_steps=99)
    with pytest.raises(ConfigError, match="not runtime settings"):
        pol.set_inference(n_readout=2)
    assert pol.config.n_action_steps == 4  # a refused change leaves the settings as they were


def test_queue_pops_chunk_in_order():
    pol = Policy.build(tiny_config(embodiments=("g1",)))
    obs = make_obs(pol.specs["g1"])
    chunk = pol.predict_action_chunk(obs, "g1")
    got = torch.stack([pol.select_action(obs, "g1") for _ in range(4)])
    assert torch.allclose(got, chunk, atol=1e-6)


def test_temporal_ensembling_averages_overlapping_chunks():
    pol = Policy.build(tiny_config(embodiments=("car",), temporal_ensemble=0.0))  # m=0: plain mean
    spec = pol.specs["car"]
    rng = np.random.default_rng(1)
    obs = [make_obs(spec, rng) for _ in range(3)]
    chunks = [pol.predict_action_chunk(o, "car") for o in obs]
    outs = [pol.select_action(o, "car") for o in obs]
    expected = (chunks[0][2] + chunks[1][1] + chunks[2][0]) / 3
    assert torch.allclose(outs[2], expected, atol=1e-6)


def test_physical_tokens_are_codes_in_vocab():
    pol = Policy.build(tiny_config(embodiments=("car", "g1")))
    for emb in ("car", "g1"):
        spec = pol.specs[emb]
        b = make_batch(spec, B=5)
        codes = pol.physical_tokens({k: b[k] for k in ("image", "proprio", "command")}, emb)
        assert codes.shape == (5, pol.config.n_readout) and codes.dtype == torch.long
        assert (codes >= 0).all() and (codes < pol.bottleneck.vocab_size).all()
        single = pol.physical_tokens(make_obs(spec), emb)
        assert single.shape == (pol.config.n_readout,)


def test_fsq_roundtrip_codes():
    from physai.tokenizers import FSQ

    fsq = FSQ((8, 5, 5, 5))
    z = torch.randn(64, 4) * 3
    q, codes = fsq(z)
    assert torch.equal(fsq.codes_from_quantized(fsq.quantized_from_codes(codes)), codes)
    assert torch.allclose(fsq.quantized_from_codes(codes), q)
    assert codes.max() < 1000 and q.abs().max() <= 1
    z.requires_grad_(True)
    fsq(z)[0].sum().backward()  # straight-through: gradients flow
    assert z.grad.abs().sum() > 0
    st = fsq.code_stats(torch.arange(10))
    assert st["perplexity"] == pytest.approx(10.0, rel=1e-5) and st["codebook_usage"] == pytest.approx(0.01)


def test_per_position_code_entropy_closes_the_constant_per_position_loophole():
    from physai.tokenizers.fsq import FSQ

    fsq = FSQ((5, 5))
    B, K = 64, 4
    g = torch.Generator().manual_seed(0)
    # each position always holds the same (extreme) level, different positions different levels
    const = torch.tensor([-9.0, 9.0, -9.0, 9.0])[None, :, None].expand(B, K, 2).clone()
    spread = torch.randn(B, K, 2, generator=g) * 3  # codes vary over the batch at every position
    assert fsq.entropy_loss(const) < -0.2  # pooled: looks well spread
    assert fsq.entropy_loss(const, per_position=True) > -0.05  # per position: nothing spread
    assert fsq.entropy_loss(spread, per_position=True) < fsq.entropy_loss(const, per_position=True) - 0.2
    with pytest.raises(ValueError, match="per_position"):
        fsq.entropy_loss(spread[0], per_position=True)


def test_normalization_applied_outside_modules():
    pol = Policy.build(tiny_config(embodiments=("car",)))
    spec = pol.specs["car"]
    acts = np.random.default_rng(0).uniform(spec.low, spec.high, (500, 2)).astype(np.float32) * 0.5
    pol.normalizer.fit("car", "action", acts)
    pol.normalizer.fit("car", "proprio", np.random.default_rng(1).normal(3.0, 2.0, (500, 6)))
    x = torch.as_tensor(acts[:10])
    n = pol.normalizer.normalize("car", "action", x)
    assert n.abs().max() <= 1.0 + 1e-5
    assert torch.allclose(pol.normalizer.unnormalize("car", "action", n), x, atol=1e-5)
    assert not any("normaliz" in k for k in pol.state_dict())


def test_finetune_head_freezes_everything_else():
    pol = Policy.build(tiny_config(embodiments=("car", "g1")))
    params = pol.finetune_head("g1")
    trainable = {n for n, p in pol.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("heads.g1.") for n in trainable)
    assert len(params) == len(trainable)
    before = {n: p.detach().clone() for n, p in pol.named_parameters()}
    opt = torch.optim.SGD(params, lr=0.1)
    loss, _ = pol(make_batch(pol.specs["g1"]))
    loss.backward()
    opt.step()
    for n, p in pol.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == (n in trainable) or (n in trainable and p.grad is None)
    pol.finetune_head("g1", train_stem=True)
    assert any(p.requires_grad for p in pol.stems["g1"].parameters())


def test_add_new_embodiment_and_train_its_head():
    pol = Policy.build(tiny_config(embodiments=("car", "g1")))
    car_before = pol.predict_action_chunk(make_obs(pol.specs["car"]), "car")
    pol.add_embodiment(get_spec("t1"), head="flow")
    assert pol.config.embodiments == ("car", "g1", "t1")
    params = pol.finetune_head("t1", train_stem=True)
    loss, m = pol(make_batch(pol.specs["t1"]))
    loss.backward()
    assert "t1/flow_mse" in m and all(p.grad is not None for p in params if p.requires_grad)
    assert torch.equal(car_before, pol.predict_action_chunk(make_obs(pol.specs["car"]), "car"))
    with pytest.raises(ConfigError):
        pol.add_embodiment(get_spec("t1"))


def test_replace_head_keeps_the_rest_and_survives_a_round_trip(tmp_path):
    pol = Policy.build(tiny_config(embodiments=("car", "g1")))
    SyntheticSource([pol.specs["car"], pol.specs["g1"]]).fit_normalizer(pol)
    trunk = {k: v.clone() for k, v in pol.trunk.state_dict().items()}
    g1_before = pol.predict_action_chunk(make_obs(pol.specs["g1"]), "g1")
    pol.replace_head("car", "flow")
    assert type(pol.heads["car"]).__name__ == "FlowHead" and pol.config.head_type("car", "l1") == "flow"
    assert all(torch.equal(v, pol.trunk.state_dict()[k]) for k, v in trunk.items())
    assert torch.equal(g1_before, pol.predict_action_chunk(make_obs(pol.specs["g1"]), "g1"))
    loss, m = pol(make_batch(pol.specs["car"]))
    assert "car/flow_mse" in m and torch.isfinite(loss)
    pol.save_pretrained(tmp_path / "ck")
    back = Policy.from_pretrained(tmp_path / "ck")
    assert type(back.heads["car"]).__name__ == "FlowHead"


def test_tokens_head_with_longlat_tokenizer():
    pol = Policy.build(tiny_config(embodiments=("car",), head_types=(("car", "tokens"),),
                                   head=HeadConfig(chunk_size=4, depth=1, heads=2, tokenizer="longlat")))
    loss, m = pol(make_batch(pol.specs["car"]))
    assert "car/token_acc" in m and torch.isfinite(loss)
    with pytest.raises(ConfigError, match="2-DoF"):
        Policy.build(tiny_config(embodiments=("g1",), head_types=(("g1", "tokens"),),
                                 head=HeadConfig(chunk_size=4, depth=1, heads=2, tokenizer="longlat")))


def test_unknown_embodiment_and_missing_action_are_typed():
    pol = Policy.build(tiny_config(embodiments=("car",)))
    with pytest.raises(ObservationError, match="embodiment"):
        pol.select_action(make_obs(pol.specs["car"]), "boat")
    b = make_batch(pol.specs["car"])
    del b["action"]
    with pytest.raises(ObservationError, match="action"):
        pol(b)
    b = make_batch(pol.specs["car"])
    b["action"] = b["action"][:, :2]
    with pytest.raises(ObservationError, match=r"H=4"):
        pol(b)


def test_timm_model_by_name_as_image_stem():
    from physai.stems import StemConfig

    pol = Policy.build(tiny_config(embodiments=("car",), stem=StemConfig(image_model="resnet10t")))
    loss, _ = pol(make_batch(pol.specs["car"], B=2))
    assert torch.isfinite(loss)
    with pytest.raises(ConfigError):
        Policy.build(tiny_config(embodiments=("car",), stem=StemConfig(image_model="no_such_model_xyz")))


def test_residual_actions_are_relative_to_last_action():
    pol = Policy.build(tiny_config(embodiments=("g1",), residual_actions=("g1",)))
    spec = pol.specs["g1"]
    idx = pol.residual_index("g1")
    assert [spec.proprio_names[i] for i in idx[:2]] == [f"last_action_{a}" for a in spec.action_names[:2]]
    with torch.no_grad():  # a head that predicts zero delta must repeat the last action
        pol.heads["g1"].out.weight.zero_()
        pol.heads["g1"].out.bias.zero_()
        pol.heads["g1"].reflex[-1].weight.zero_()
        pol.heads["g1"].reflex[-1].bias.zero_()
    obs = make_obs(spec)
    last = (spec.low + spec.high) / 2 + 0.05
    obs["proprio"][idx] = last
    chunk = pol.predict_action_chunk(obs, "g1")
    assert torch.allclose(chunk, torch.as_tensor(last).expand_as(chunk), atol=1e-5)
    b = make_batch(spec)
    loss, m = pol(b)
    assert torch.isfinite(loss)
    with pytest.raises(ConfigError, match="residual_actions"):
        Policy.build(tiny_config(embodiments=("car",), residual_actions=("car",))).predict_action_chunk(
            make_obs(get_spec("car")), "car")


def test_reflex_path_reads_proprio_and_old_configs_load_without_it(tmp_path):
    from physai.config import PolicyConfig

    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("car",))).eval()
    head = pol.heads["car"]
    assert head.reflex is not None
    spec = pol.specs["car"]
    obs = make_obs(spec)
    with torch.no_grad():
        head.reflex[-1].weight.normal_(0, 1.0)
        a = pol.predict_action_chunk(obs, "car")
        obs2 = dict(obs, proprio=obs["proprio"] + 1.0)
        b = pol.predict_action_chunk(obs2, "car")
        head.reflex[-1].weight.zero_()
        c = pol.predict_action_chunk(obs, "car")
    assert not torch.allclose(a, b) and not torch.allclose(a, c)
    d = pol.config.to_dict()
    del d["head"]["reflex_hidden"]  # a config.json written before the reflex path existed
    old = PolicyConfig.from_dict(d)
    assert old.head.reflex_hidden == 0 and Policy.build(old).heads["car"].reflex is None
    assert PolicyConfig.from_dict(pol.config.to_dict()).head.reflex_hidden == pol.config.head.reflex_hidden > 0


def test_optimized_inference_matches_eager_and_is_dropped_when_training():
    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("car", "g1"), head_types=(("g1", "tokens"),))).eval()
    rng = np.random.default_rng(0)
    obs = [make_obs(pol.specs["car"], rng) for _ in range(3)]
    eager = [pol.predict_action_chunk(o, "car") for o in obs]
    pol.optimize_for_inference()
    fast = [pol.predict_action_chunk(o, "car") for o in obs]
    for a, b in zip(eager, fast):
        assert torch.allclose(a, b, atol=1e-5)
    assert len(pol._graphs) == 1  # one graph per embodiment and input shapes, reused
    g1 = pol.predict_action_chunk(make_obs(pol.specs["g1"], rng), "g1")  # tokens head: stays eager
    assert torch.isfinite(g1).all() and len(pol._graphs) == 1
    with torch.no_grad():  # new weights: after train() the stale graph must not be used
        pol.train()
        for p in pol.heads["car"].out.parameters():
            p.add_(0.5)
        pol.eval()
    changed = pol.predict_action_chunk(obs[0], "car")
    pol.optimize_for_inference(False)
    assert torch.allclose(changed, pol.predict_action_chunk(obs[0], "car"), atol=1e-5)
    assert not torch.allclose(changed, fast[0], atol=1e-4)


def test_position_perplexity_reports_constant_codes_per_position():
    from physai.tokenizers.fsq import FSQ

    fsq = FSQ((8, 5, 5, 5))
    const = torch.tensor([3, 70, 500, 999]).expand(32, 4)  # each position fixed, positions differ
    st = fsq.code_stats(const)
    assert st["perplexity"] == pytest.approx(4.0, rel=1e-5)  # pooled: looks like 4 codes in use
    assert st["position_perplexity"] == pytest.approx(1.0)  # per position: nothing varies
    varied = torch.arange(32 * 4).reshape(32, 4) % 1000
    assert fsq.code_stats(varied)["position_perplexity"] == pytest.approx(32.0, rel=1e-5)


@pytest.mark.parametrize("trains_encoder", [False, True])
def test_world_model_loss_trains_the_encoder_only_when_asked(trains_encoder):
    torch.manual_seed(0)
    pol = Policy.build(tiny_config(embodiments=("car",), world_model_trains_encoder=trains_encoder,
                                   code_entropy_weight=0.0)).train()
    b = make_batch(pol.specs["car"], B=4, H=pol.config.head.chunk_size, seed=1)
    obs, _ = prepare_observation({k: b[k] for k in ("image", "proprio", "command")}, pol.specs["car"], pol.device,
                                 pol.config.stem.n_obs_steps)
    feats = pol.encode(pol._norm_obs(obs, "car"), "car")
    action = pol._to_target(torch.as_tensor(b["action"]), obs, "car")
    pol.world_model_loss(feats, action, {**b, "embodiment": "car"}, pol.specs["car"]).backward()
    trunk_grad = sum(float(p.grad.abs().sum()) for p in pol.trunk.parameters() if p.grad is not None)
    wm_grad = sum(float(p.grad.abs().sum()) for p in pol.world_model.parameters() if p.grad is not None)
    assert wm_grad > 0  # the predictor always learns
    assert (trunk_grad > 0) == trains_encoder


def test_old_configs_keep_the_world_model_training_the_encoder():
    d = tiny_config(embodiments=("car",)).to_dict()
    del d["world_model_trains_encoder"], d["code_entropy_per_position"]
    old = PolicyConfig.from_dict(d)
    assert old.world_model_trains_encoder is True and old.code_entropy_per_position is False
    assert PolicyConfig().world_model_trains_encoder is False and PolicyConfig().code_entropy_per_position is True


def test_state_token_and_pooled_readout_shrink_the_trunk_sequence(tmp_path):
    from physai.stems import StemConfig

    torch.manual_seed(0)
    spec = get_spec("car")
    base = Policy.build(tiny_config(embodiments=("car",), stem=StemConfig(patch_size=16, state_token=False)))
    lean = Policy.build(tiny_config(embodiments=("car",), stem=StemConfig(patch_size=16, state_token=True),
                                    readout="pool"))
    seen = {}
    for name, pol in (("base", base), ("lean", lean)):
        pol.trunk.register_forward_hook(lambda m, inp, out, name=name: seen.__setitem__(name, inp[0].shape[1]))
    batch = make_batch(spec, B=4, H=4)
    lean.normalizer.fit("car", "action", batch["action"].reshape(-1, spec.action_dim).numpy())
    base(batch)
    opt = torch.optim.AdamW(lean.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):  # the lean layout learns: overfit one batch
        loss, m = lean(batch)
        opt.zero_grad()
        loss.backward()
        if not losses:  # the pooling queries and the embodiment embedding are trained, not constants
            assert lean.bottleneck.queries.grad.abs().sum() > 0
            assert lean.stems["car"].embodiment_token.grad.abs().sum() > 0
        opt.step()
        losses.append(m["car/action_loss"])
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), losses
    # 4x4 patches; base: embodiment + command + proprio + 4 registers; lean: one state token
    assert seen == {"base": 16 + 3 + 4, "lean": 16 + 1}
    assert lean.stems["car"].num_tokens == 17 and base.stems["car"].num_tokens == 19
    lean.eval()
    obs = make_obs(spec)
    assert lean.physical_tokens(obs, "car").shape == (lean.config.n_readout,)
    # the command reaches the trunk through the state token only
    stem = lean.stems["car"]
    o = lean._norm_obs(prepare_observation(obs, spec, "cpu", 1)[0], "car")
    o2 = dict(o, command=o["command"] + 1.0)
    with torch.no_grad():
        t1, t2 = stem(o), stem(o2)
    assert not torch.allclose(t1[:, 0], t2[:, 0]) and torch.equal(t1[:, 1:], t2[:, 1:])
    # saved and reloaded (config.json carries the layout); the traced graph matches eager
    SyntheticSource([lean.specs["car"]]).fit_normalizer(lean)  # a saved policy carries its stats
    eager = lean.predict_action_chunk(obs, "car")
    lean.save_pretrained(tmp_path / "lean")
    back = Policy.from_pretrained(tmp_path / "lean").eval()
    assert back.config.readout == "pool" and back.config.stem.state_token
    assert torch.allclose(back.predict_action_chunk(obs, "car"), eager, atol=1e-6)
    back.optimize_for_inference()
    for _ in range(2):
        assert torch.allclose(back.predict_action_chunk(obs, "car"), eager, atol=1e-5)
    # configs written before these settings existed keep the registers and the separate tokens
    d = lean.config.to_dict()
    del d["readout"], d["stem"]["state_token"]
    old = PolicyConfig.from_dict(d)
    assert old.readout == "trunk" and not old.stem.state_token
    with pytest.raises(ConfigError, match="readout"):
        tiny_config(readout="mean")


def test_the_library_default_is_the_recipes_model():
    """`policy_config("nano", ...)` (the README's example) builds what the recipes train."""
    import dataclasses

    from physai.recipes import get_recipe

    recipe = get_recipe("cotrain")().policy
    default = policy_config("nano", embodiments=("car", "g1"))
    assert dataclasses.replace(recipe, residual_actions=()) == default  # every architecture field
    assert (default.readout, default.n_readout, default.stem.patch_size, default.stem.state_token) == ("pool", 4, 32, True)
    assert PolicyConfig() == dataclasses.replace(default, preset="custom")
    assert Policy.build(policy_config("nano", embodiments=("car",))).stems["car"].num_tokens == 2 * 2 + 1


def test_a_config_without_the_layout_keys_loads_the_old_layout():
    """A config.json written before a key existed (or before its default changed) keeps the value
    that checkpoint was trained with, not today's default."""
    from physai.config import OLD_DEFAULTS
    from physai.trunk import TrunkConfig

    new = policy_config("nano", trunk=TrunkConfig(width=32, depth=2, heads=2), embodiments=("car",),
                        head=HeadConfig(chunk_size=4, depth=1, heads=2))
    assert PolicyConfig.from_dict(new.to_dict()) == new  # saved keys win over OLD_DEFAULTS
    d = new.to_dict()
    for part, old in OLD_DEFAULTS.items():
        for k in old:
            del (d if part == "policy" else d[part])[k]
    cfg = PolicyConfig.from_dict(d)
    assert (cfg.n_readout, cfg.readout, cfg.head_reads_trunk, cfg.world_model_fraction, cfg.n_action_steps) == \
        (16, "trunk", False, 1.0, None)
    assert (cfg.stem.patch_size, cfg.stem.state_token, cfg.head.reflex_hidden) == (8, False, 0)
    assert (cfg.world_model_trains_encoder, cfg.code_entropy_per_position) == (True, False)
    for part, old in OLD_DEFAULTS.items():  # every recorded old value differs from today's default
        now = new if part == "policy" else getattr(new, part)
        assert all(getattr(now, k) != v for k, v in old.items()), part
    pol = Policy.build(cfg)
    assert pol.stems["car"].num_tokens == 8 * 8 + 3 and pol.heads["car"].reflex is None


def test_device_choice_is_checked_before_anything_runs():
    import torch

    from physai.device import pick_device

    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="expected auto, cpu, cuda"):
        pick_device("tpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            pick_device("cuda")


@pytest.mark.cuda
def test_a_policy_trains_and_acts_on_cuda():
    import torch

    from physai.embodiments import get_spec
    from physai.policy import Policy
    from physai.testing import make_batch, make_obs, tiny_config

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    spec = get_spec("car")
    pol = Policy.build(tiny_config(embodiments=("car",))).to("cuda")
    loss, _ = pol(make_batch(spec))
    loss.backward()
    assert all(p.grad is None or p.grad.is_cuda for p in pol.parameters())
    a = pol.select_action(make_obs(spec), "car")
    assert torch.isfinite(torch.as_tensor(a)).all()


def test_a_timm_vit_stem_is_built_at_the_cameras_size():
    from physai.stems import EmbodimentStem, ImageEncoder, StemConfig

    stem = EmbodimentStem(get_spec("car"), 32, StemConfig(image_model="vit_tiny_patch16_224"))  # 64 px camera
    obs = {"image": torch.zeros(2, 1, 1, 3, 64, 64, dtype=torch.uint8), "proprio": torch.zeros(2, 1, 6),
           "command": torch.zeros(2, get_spec("car").command_dim)}
    assert stem(obs).shape == (2, stem.num_tokens, 32) and stem.image.num_tokens == 17  # 4x4 patches + cls
    with pytest.raises(ConfigError, match="cannot read 8x8 px images"):
        ImageEncoder(StemConfig(image_model="vit_tiny_patch16_224"), 8, 8, 32)


def test_train_refuses_a_stem_that_cannot_read_the_cameras_before_recording(tmp_path):
    from physai.overrides import apply_overrides
    from physai.pipeline import train_recipe
    from physai.recipes import get_recipe

    recipe = apply_overrides(get_recipe("car_only")(), [f"data.root={tmp_path / 'data'}", "policy.stem.patch_size=48"])
    with pytest.raises(ConfigError, match="not divisible by patch_size 48"):
        train_recipe(recipe, tmp_path / "run", progress=False)
    assert not (tmp_path / "data").exists()  # refused before a single episode was recorded


def test_hidden_proprio_fields_do_not_reach_the_model(tmp_path):
    """A hidden field (the car's previous action) cannot change the action; the others still do; the
    setting survives a save/load, and a name the spec lacks is a ConfigError naming the field."""
    torch.manual_seed(0)
    hide = (("car", ("prev_accel", "prev_steer")),)
    pol = Policy.build(tiny_config(embodiments=("car",), hidden_proprio=hide, proprio_norm="identity",
                                   action_norm="identity", head=HeadConfig(chunk_size=4, depth=1, heads=2, reflex_hidden=16)))
    spec = pol.specs["car"]
    obs = make_obs(spec)
    base = pol.predict_action_chunk(obs, "car")
    for name in ("prev_accel", "prev_steer"):
        o = {**obs, "proprio": obs["proprio"].copy()}
        o["proprio"][spec.proprio_names.index(name)] += 5.0
        assert torch.equal(pol.predict_action_chunk(o, "car"), base)
    o = {**obs, "proprio": obs["proprio"].copy()}
    o["proprio"][spec.proprio_names.index("speed")] += 5.0
    assert not torch.allclose(pol.predict_action_chunk(o, "car"), base)
    pol.save_pretrained(tmp_path / "ck")
    back = Policy.from_pretrained(tmp_path / "ck")
    assert back.config.hidden_proprio == hide
    assert torch.allclose(back.predict_action_chunk(obs, "car"), base, atol=1e-6)
    with pytest.raises(ConfigError, match="hidden_proprio.*no_such"):
        Policy.build(tiny_config(embodiments=("car",), hidden_proprio=(("car", ("no_such",)),)))
    with pytest.raises(ConfigError, match="hidden_proprio"):
        tiny_config(embodiments=("car",), hidden_proprio=(("g1", ("q_x",)),))
