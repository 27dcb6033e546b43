"""Export one embodiment of a policy for deployment: ONNX (run by onnxruntime) or `torch.export`.

The exported graph is the whole inference path of `Policy.predict_action_chunk` for one body:
(image uint8 [B, T, C, 3, H, W], proprio [B, T, Dp] in physical units, command [B, Dc] encoded) ->
action chunk [B, H, A] in physical units within the spec's bounds (NaN/inf replaced by the range
midpoint). Proprio normalization, action unnormalization and residual actions are inside the graph
as constants, so the model carries its normalization. The embodiment spec, the chunk length and
the number of actions executed per chunk travel in the file's metadata (ONNX `metadata_props`) and
in a `<out>.json` sidecar, so `physai.runtime.OnnxPolicy` needs neither torch nor physai's training
code. Heads whose sampling is deterministic torch export (`l1`); `flow` draws noise and `tokens`
decodes in numpy, and are refused.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from physai.errors import ConfigError

FORMATS = ("onnx", "torch-export")


class ExportGraph(nn.Module):
    """Raw obs tensors -> bounded physical action chunk, for one embodiment (what gets exported)."""

    def __init__(self, policy, embodiment: str):
        super().__init__()
        if embodiment not in policy.specs:
            raise ConfigError(f"export: the policy has no embodiment '{embodiment}' (has {sorted(policy.specs)})")
        if not getattr(policy.heads[embodiment], "jit_safe", False):
            raise ConfigError(f"export: the '{type(policy.heads[embodiment]).__name__}' head of '{embodiment}' "
                              "samples outside torch and cannot be exported")
        self.policy, self.embodiment = policy, embodiment
        spec = policy.specs[embodiment]
        self.register_buffer("low", torch.tensor(spec.low, dtype=torch.float32), persistent=False)
        self.register_buffer("high", torch.tensor(spec.high, dtype=torch.float32), persistent=False)

    def forward(self, image: torch.Tensor, proprio: torch.Tensor, command: torch.Tensor) -> torch.Tensor:
        p, e = self.policy, self.embodiment
        o = {"image": image, "proprio": proprio, "command": command}
        norm = p.heads[e].sample_actions(p.encode(p._norm_obs(o, e), e))  # [B, H, A] normalized
        act = p._from_output(norm.float(), o, e)  # physical units (+ the last action for residual bodies)
        act = torch.where(torch.isfinite(act), act, (self.low + self.high) / 2)
        return torch.minimum(torch.maximum(act, self.low), self.high)


def example_inputs(policy, embodiment: str, batch: int = 1) -> tuple[torch.Tensor, ...]:
    spec, T = policy.specs[embodiment], policy.config.stem.n_obs_steps
    cams = spec.cameras
    img = torch.zeros(batch, T, len(cams), 3, cams[0].height, cams[0].width, dtype=torch.uint8)
    return img, torch.zeros(batch, T, spec.proprio_dim), torch.zeros(batch, spec.command_dim)


def metadata(policy, embodiment: str) -> dict[str, Any]:
    cfg = policy.config
    return {"format": "physai-export", "embodiment": embodiment, "spec": policy.specs[embodiment].to_dict(),
            "chunk_size": cfg.head.chunk_size, "n_action_steps": cfg.n_action_steps, "n_obs_steps": cfg.stem.n_obs_steps,
            "inputs": ["image", "proprio", "command"], "output": "actions"}


def export_policy(policy, embodiment: str, out: str | Path, fmt: str = "onnx") -> Path:
    """Write the exported model to `out` (+ `out.json`); returns the path."""
    if fmt not in FORMATS:
        raise ConfigError(f"export format must be one of {FORMATS}, got '{fmt}'")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    policy.eval()
    graph = ExportGraph(policy, embodiment).eval()
    args = example_inputs(policy, embodiment, batch=2)
    meta = metadata(policy, embodiment)
    tmp = out.with_name(".tmp-" + out.name)  # same suffix (torch.export wants .pt2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            torch.onnx.export(graph, args, str(tmp), input_names=meta["inputs"], output_names=[meta["output"]],
                              dynamic_axes={k: {0: "batch"} for k in (*meta["inputs"], meta["output"])},
                              opset_version=17, dynamo=False)
            import onnx

            model = onnx.load(str(tmp))
            entry = model.metadata_props.add()
            entry.key, entry.value = "physai", json.dumps(meta)
            onnx.save(model, str(tmp))
        else:
            batch = torch.export.Dim("batch", min=1, max=1024)
            prog = torch.export.export(graph, args, dynamic_shapes=({0: batch}, {0: batch}, {0: batch}))
            torch.export.save(prog, str(tmp), extra_files={"physai.json": json.dumps(meta)})
    tmp.replace(out)  # a crash never leaves a half-written model under the final name
    Path(str(out) + ".json").write_text(json.dumps(meta, indent=1))
    return out


def random_observations(spec, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Observations within the spec's ranges (images uniform, proprio ~N(0, 1), default command)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    cams = spec.cameras
    return [{"image": rng.integers(0, 256, (len(cams), 3, cams[0].height, cams[0].width), dtype=np.uint8),
             "proprio": rng.standard_normal(spec.proprio_dim).astype(np.float32),
             "command": spec.encode_command(spec.default_command())} for _ in range(n)]


def load_exported(path: str | Path, fmt: str):
    """A callable obs -> chunk [H, A] (numpy) for an exported file."""
    import numpy as np

    if fmt == "onnx":
        from physai.runtime import OnnxPolicy

        rt = OnnxPolicy(path)
        return rt.predict_action_chunk
    prog = torch.export.load(str(path))
    meta = json.loads(Path(str(path) + ".json").read_text())
    T = meta["n_obs_steps"]

    def run(obs):
        img = torch.as_tensor(obs["image"])[None, None].repeat(1, T, 1, 1, 1, 1)
        p = torch.as_tensor(obs["proprio"])[None, None].repeat(1, T, 1)
        c = torch.as_tensor(np.asarray(obs["command"], np.float32))[None]
        return prog.module()(img, p, c)[0].detach().numpy()

    return run


def parity(policy, embodiment: str, path: str | Path, fmt: str, samples: int = 16) -> float:
    """max |exported - eager| over `samples` random observations (physical units)."""
    import numpy as np

    run = load_exported(path, fmt)
    worst = 0.0
    for obs in random_observations(policy.specs[embodiment], samples):
        eager = policy.predict_action_chunk(obs, embodiment).numpy()
        worst = max(worst, float(np.abs(run(obs) - eager).max()))
    return worst


class ExportedPolicy:
    """An exported ONNX model behind the interface the roll-out runner's `PolicyDriver` uses
    (`specs`, `config`, `predict_action_chunk`), so `physai eval --variant onnx|onnx-int8` plays it
    in the same closed loop, guard included, as the eager policy."""

    def __init__(self, path: str | Path, policy, threads: int | None = None):
        from physai.runtime import OnnxPolicy

        self.runtime = OnnxPolicy(path, threads)
        emb = self.runtime.embodiment
        self.specs = {emb: policy.specs[emb]}
        self.config = policy.config

    def eval(self) -> "ExportedPolicy":
        return self

    def optimize_for_inference(self, enabled: bool = True) -> "ExportedPolicy":
        return self

    def predict_action_chunk(self, obs, embodiment: str, substitute: bool = True) -> torch.Tensor:
        import numpy as np

        o = {k: (v.cpu().numpy() if hasattr(v, "cpu") else np.asarray(v)) for k, v in obs.items()}
        if o["image"].ndim == 6:  # [B, T, C, 3, H, W] -> the latest step
            o["image"] = o["image"][:, -1]
        if o["proprio"].ndim == 3:
            o["proprio"] = o["proprio"][:, -1]
        return torch.from_numpy(self.runtime.predict_action_chunk(o))


VARIANTS = ("int8", "onnx", "onnx-int8")


def build_variant(policy, embodiment: str, variant: str, directory: str | Path, threads: int | None = None):
    """A deployment variant of `policy` for one body, behind `predict_action_chunk(obs, body)`:
    `int8` (PyTorch dynamic int8, a `Policy`), `onnx` (the export under onnxruntime) or `onnx-int8`
    (onnxruntime's int8 of it), both `ExportedPolicy` (onnxruntime on `threads`); ONNX files are
    written into `directory`."""
    from physai.quantize import quantize_int8, quantize_onnx_int8

    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant '{variant}'; expected one of {VARIANTS}")
    if variant == "int8":
        return quantize_int8(policy)
    path = export_policy(policy, embodiment, Path(directory) / f"{embodiment}.onnx")
    if variant == "onnx-int8":
        path = quantize_onnx_int8(path, Path(directory) / f"{embodiment}.int8.onnx")
    return ExportedPolicy(path, policy, threads)
