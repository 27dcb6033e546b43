"""int8 quantization with the frameworks' own tooling (no hand-written kernels).

- `quantize_int8(policy)`: PyTorch dynamic quantization (`torch.ao.quantization.quantize_dynamic`:
  int8 weights, activations quantized per call) of the policy's `nn.Linear` layers, in a copy.
  The embodiment heads stay fp32 (`KEEP_FP32`): they write the actions, and int8 error in them
  (their chunk decoders, the G1's proprio reflex path, a flow head's Euler steps) reaches the
  actuators directly (README: agreement with and without).
- `quantize_onnx_int8(src, dst)`: onnxruntime's dynamic int8 quantization of an exported ONNX
  model (`physai export`), the heads' nodes excluded likewise (including the MatMul that
  onnxruntime makes of each head Gemm before quantizing, which the Gemm's own name does not
  cover), metadata kept, so `physai.runtime.OnnxPolicy` runs it unchanged.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
import torch.nn as nn

# module-name prefixes that stay fp32: the embodiment heads (they write the actions)
KEEP_FP32 = ("heads.",)


def _fp32_modules(policy) -> set[int]:
    return {id(m) for name, m in policy.named_modules() if name.startswith(KEEP_FP32)}


def quantize_int8(policy):
    """A copy of `policy` whose Linear layers run int8 (dynamic), except `KEEP_FP32`."""
    q = copy.deepcopy(policy).eval()
    keep = _fp32_modules(q)
    targets = {name for name, m in q.named_modules() if isinstance(m, nn.Linear) and id(m) not in keep}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice (the API moves to torchao)
        torch.ao.quantization.quantize_dynamic(q, targets, dtype=torch.qint8, inplace=True)
    q._graphs.clear()
    q._jit = False  # quantized modules run eagerly
    return q


def _head_nodes(model) -> list[str]:
    """Names of the MatMul/Gemm nodes of the heads' Linear layers in an exported graph: those whose
    weight or bias initializer is a head parameter (`policy.heads.*`), directly or through the Add
    of the bias that follows a MatMul."""
    prefixes = tuple(f"policy.{k}" for k in KEEP_FP32)
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = []
    for n in model.graph.node:
        if n.op_type not in ("MatMul", "Gemm"):
            continue
        inputs = list(n.input) + [i for c in consumers.get(n.output[0], []) if c.op_type == "Add" for i in c.input]
        if any(i.startswith(prefixes) for i in inputs):
            out.append(n.name)
            if n.op_type == "Gemm":  # onnxruntime rewrites a Gemm as MatMul + Add under this name first
                out.append(f"{n.name}_MatMul")
    return out


def quantize_onnx_int8(src: str | Path, dst: str | Path) -> Path:
    """onnxruntime dynamic int8 (weights int8, activations per call) of an exported model."""
    import json

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    tmp = dst.with_name(".tmp-" + dst.name)
    quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, nodes_to_exclude=_head_nodes(onnx.load(str(src))))
    model = onnx.load(str(tmp))
    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    if "physai" not in {p.key for p in model.metadata_props}:
        e = model.metadata_props.add()
        e.key, e.value = "physai", meta["physai"]
    onnx.save(model, str(tmp))
    tmp.replace(dst)
    info = json.loads(meta["physai"])
    info["quantized"] = "onnxruntime dynamic int8"
    Path(str(dst) + ".json").write_text(json.dumps(info, indent=1))
    return dst
