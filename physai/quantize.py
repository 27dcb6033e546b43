"""int8 quantization with the frameworks' own tooling (no hand-written kernels).

- `quantize_int8(policy)`: PyTorch dynamic quantization (`torch.ao.quantization.quantize_dynamic`:
  int8 weights, activations quantized per call) of the policy's `nn.Linear` layers, in place of
  a copy. The layers that write actions stay fp32 (`KEEP_FP32`: each head's output projection;
  a flow head's integration is kept whole, since its Euler steps accumulate int8 error).
- `quantize_onnx_int8(src, dst)`: onnxruntime's dynamic int8 quantization of an exported ONNX
  model (`physai export`), metadata kept, so `physai.runtime.OnnxPolicy` runs it unchanged.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
import torch.nn as nn

# module names (relative to a head) that stay fp32: the projections that emit actions
KEEP_FP32 = ("out", "proj_out", "head_out")


def _fp32_modules(policy) -> set[int]:
    keep = set()
    for emb, head in policy.heads.items():
        if type(head).__name__ == "FlowHead":
            keep |= {id(m) for m in head.modules()}
            continue
        for name, m in head.named_modules():
            if name.split(".")[-1] in KEEP_FP32:
                keep.add(id(m))
    return keep


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


def quantize_onnx_int8(src: str | Path, dst: str | Path) -> Path:
    """onnxruntime dynamic int8 (weights int8, activations per call) of an exported model."""
    import json

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    tmp = dst.with_name(".tmp-" + dst.name)
    quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
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
