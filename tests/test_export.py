"""Export: ONNX and torch.export match eager within 1e-4 (physical units), carry the spec and
normalization, run without torch (onnxruntime + numpy), sit inside SafePolicy, and refuse what
cannot be exported with typed errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from physai.embodiments import get_spec
from physai.embodiments.safety import SafePolicy
from physai.errors import ConfigError
from physai.export import export_policy, parity, random_observations
from physai.policy import Policy
from physai.runtime import OnnxPolicy, RuntimeInputError
from physai.testing import SyntheticSource, tiny_config

TOL = 1e-4  # max |exported - eager| in physical units (rad, m/s²)


@pytest.fixture(scope="module")
def policy():
    p = Policy.build(tiny_config(embodiments=("car", "g1"), residual_actions=("g1",)), backend="math")
    SyntheticSource([get_spec("car"), get_spec("g1")]).fit_normalizer(p)
    p.normalizer.fit("g1", "action_delta", np.random.default_rng(0).normal(0, 0.1, (64, 29)))
    return p.eval()


@pytest.mark.parametrize("emb", ["car", "g1"])
@pytest.mark.parametrize("fmt", ["onnx", "torch-export"])
def test_exported_actions_match_eager(policy, emb, fmt, tmp_path):
    out = export_policy(policy, emb, tmp_path / f"{emb}.{'onnx' if fmt == 'onnx' else 'pt2'}", fmt)
    assert parity(policy, emb, out, fmt, samples=6) < TOL
    meta = json.loads((tmp_path / f"{out.name}.json").read_text())
    assert meta["spec"]["name"] == emb and meta["chunk_size"] == policy.config.head.chunk_size
    assert not list(tmp_path.glob(".tmp-*"))  # written under a temporary name, then renamed


def test_onnx_runtime_batches_queues_and_validates(policy, tmp_path):
    out = export_policy(policy, "car", tmp_path / "car.onnx")
    rt = OnnxPolicy(out)
    obs = random_observations(policy.specs["car"], 3, seed=4)
    batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}
    chunks = rt.predict_action_chunk(batch)
    eager = policy.predict_action_chunk(batch, "car").numpy()
    assert chunks.shape == eager.shape and np.abs(chunks - eager).max() < TOL
    # a dict command is encoded like the spec does
    d = {**obs[0], "command": {"lane": "left", "speed": 20.0}}
    e = {**obs[0], "command": policy.specs["car"].encode_command({"lane": "left", "speed": 20.0})}
    assert np.array_equal(rt.predict_action_chunk(d), rt.predict_action_chunk(e))
    n = policy.config.n_action_steps or policy.config.head.chunk_size
    first = [rt.select_action(obs[0]) for _ in range(n)]
    assert np.allclose(np.stack(first), chunks[0][:n])
    for bad, field in (({**obs[0], "image": obs[0]["image"][:, :, :8]}, "image"),
                       ({**obs[0], "proprio": np.full(6, np.nan, np.float32)}, "proprio"),
                       ({**obs[0], "command": {"lane": "up"}}, "command.lane")):
        with pytest.raises(RuntimeInputError, match=field):
            rt.predict_action_chunk(bad)


def test_safety_wrapper_around_the_exported_model(policy, tmp_path):
    from physai.sim.family import get_family

    rt = OnnxPolicy(export_policy(policy, "car", tmp_path / "car.onnx"))
    guard = get_family("car").make_guard(policy.specs["car"])
    safe = SafePolicy(rt, guard, "car")
    obs = random_observations(policy.specs["car"], 1)[0]
    # a car 3 m ahead, stopped, while we drive 25 m/s: the guard must brake whatever the model says
    sensors = {"ego_speed": 25.0, "ego_lane": 1, "lane_width": 4.0, "ego_length": 5.0,
               "objects": np.array([[8.0, 0.0, -25.0, 0.0, 5.0]], np.float32)}
    safe.reset(sensors)
    a = safe.select_action(obs, sensors)
    assert a[0] <= policy.specs["car"].low[0] + 1e-6 and safe.counts["aeb"] >= 1


def test_runtime_needs_no_torch(policy, tmp_path):
    out = export_policy(policy, "car", tmp_path / "car.onnx")
    code = (f"import sys, numpy as np; from physai.runtime import OnnxPolicy; rt = OnnxPolicy({str(out)!r}); "
            "s = rt.spec; obs = {'image': np.zeros((1, 3, 64, 64), np.uint8), 'proprio': np.zeros(6, np.float32), "
            "'command': {'lane': 'keep', 'speed': 25.0}}; a = rt.select_action(obs); "
            "assert a.shape == (2,) and np.isfinite(a).all(); assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]


def test_export_refuses_what_it_cannot_export(policy, tmp_path):
    with pytest.raises(ConfigError, match="format"):
        export_policy(policy, "car", tmp_path / "x.bin", "tflite")
    with pytest.raises(ConfigError, match="embodiment"):
        export_policy(policy, "t1", tmp_path / "x.onnx")
    flow = Policy.build(tiny_config(embodiments=("car",), head_types=(("car", "flow"),)), backend="math")
    with pytest.raises(ConfigError, match="cannot be exported"):
        export_policy(flow, "car", tmp_path / "f.onnx")
    assert not (tmp_path / "f.onnx").exists()


def test_int8_variants_keep_action_layers_fp32_and_stay_close(policy, tmp_path):
    from physai.quantize import quantize_int8, quantize_onnx_int8

    q = quantize_int8(policy)
    qlinear = torch.ao.nn.quantized.dynamic.Linear
    mods = dict(q.named_modules())
    assert not isinstance(mods["heads.car.out"], qlinear)  # the action projection stays fp32
    assert isinstance(mods["trunk.blocks.0.self_attn.q"], qlinear)  # the trunk runs int8
    assert not isinstance(policy.trunk.blocks[0].self_attn.q, qlinear)  # the original is untouched
    obs = random_observations(policy.specs["car"], 6, seed=2)
    half = (np.asarray(policy.specs["car"].high) - np.asarray(policy.specs["car"].low)) / 2
    for o in obs:
        a, b = policy.predict_action_chunk(o, "car").numpy(), q.predict_action_chunk(o, "car").numpy()
        assert np.isfinite(b).all() and (np.abs(a - b) <= 0.25 * half).all()
    src = export_policy(policy, "car", tmp_path / "car.onnx")
    dst = quantize_onnx_int8(src, tmp_path / "car.int8.onnx")
    rt = OnnxPolicy(dst)
    assert rt.embodiment == "car" and dst.stat().st_size < src.stat().st_size
    for o in obs:
        a, b = policy.predict_action_chunk(o, "car").numpy(), rt.predict_action_chunk(o)
        assert (np.abs(a - b) <= 0.25 * half).all()


def test_eval_plays_variants_on_the_same_seeds(policy, tmp_path):
    from physai.pipeline import evaluate_checkpoint
    from physai.sim.suite import Scenario

    car = Policy.build(tiny_config(embodiments=("car",)), backend="math")
    SyntheticSource([get_spec("car")]).fit_normalizer(car)
    car.save_pretrained(tmp_path / "ck")
    res = evaluate_checkpoint(tmp_path / "ck", [Scenario("physai/car-highway", 9100, 2.0)], with_expert=False,
                              slots=1, workers=False, progress=False, variants=("onnx", "int8"))
    eps = res["episodes"]
    assert set(eps) == {"physai", "physai onnx", "physai int8"}
    # the ONNX export drives the same episode as eager (same seed, actions equal within 1e-4)
    assert eps["physai onnx"][0]["metrics"]["progress_m"] == pytest.approx(eps["physai"][0]["metrics"]["progress_m"], abs=1e-3)
    with pytest.raises(ConfigError, match="variant"):
        evaluate_checkpoint(tmp_path / "ck", [Scenario("physai/car-highway", 9100, 2.0)], with_expert=False,
                            slots=1, workers=False, progress=False, variants=("fp8",))


def test_onnx_int8_leaves_every_head_weight_fp32(policy, tmp_path):
    """onnxruntime rewrites a Gemm as `<name>_MatMul` before quantizing: the exclusion must cover
    that name too, or a head's Gemm layers (the G1's proprio reflex path) run int8."""
    import onnx

    from physai.quantize import quantize_onnx_int8

    src = export_policy(policy, "g1", tmp_path / "g1.onnx")
    assert any(n.op_type == "Gemm" and any(i.startswith("policy.heads.") for i in n.input)
               for n in onnx.load(str(src)).graph.node)  # the case this guards exists in the export
    q = onnx.load(str(quantize_onnx_int8(src, tmp_path / "g1.int8.onnx")))
    int8_inputs = [i for n in q.graph.node if n.op_type == "MatMulInteger" for i in n.input]
    assert int8_inputs and not any(i.startswith("policy.heads.") for i in int8_inputs)
    assert any(i.startswith(("policy.trunk.", "onnx::MatMul")) for i in int8_inputs)  # the trunk is int8
