"""Run an exported physai model with onnxruntime and numpy only (no torch, no training code).

`OnnxPolicy(path)` reads the model and its metadata (embodiment spec, chunk length, actions
executed per chunk) and offers what a deployment loop needs: `predict_action_chunk(obs)` ->
float32 [B, H, A] (or [H, A]) in physical units, and `select_action(obs, embodiment=None)` with an
action queue that re-plans every `n_action_steps` (all of the chunk when the policy executes whole
chunks), `reset()`. Observations are numpy: image uint8 [C, 3, H, W] (or [B, ...]), proprio [Dp],
command [Dc] already encoded (`EmbodimentSpec.encode_command`) or a dict of the spec's command
fields. It has `select_action(obs, embodiment)` and `reset()`, so `SafePolicy(OnnxPolicy(...),
guard, "car")` puts the same guard around it.
"""

from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path
from typing import Any, Mapping

import numpy as np


class RuntimeInputError(ValueError):
    """A bad observation for an exported model: names the field and the expected shape."""

    def __init__(self, field: str, expected: str, got: str):
        super().__init__(f"observation field '{field}': expected {expected}, got {got}")
        self.field = field


class OnnxPolicy:
    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        if "physai" not in props:
            raise ValueError(f"'{path}' is not a physai export (no 'physai' metadata)")
        self.meta = json.loads(props["physai"])
        self.spec = self.meta["spec"]
        self.embodiment = self.meta["embodiment"]
        self.low = np.asarray(self.spec["action_low"], np.float32)
        self.high = np.asarray(self.spec["action_high"], np.float32)
        self._queue: deque = deque()

    # ---- observations ----------------------------------------------------------------------------
    def encode_command(self, command: Mapping[str, Any]) -> np.ndarray:
        out: list[float] = []
        for f in self.spec["command"]:
            v = command.get(f["name"], f["default"])
            if f["kind"] == "discrete":
                if isinstance(v, (int, np.integer)) and 0 <= int(v) < len(f["choices"]):
                    v = f["choices"][int(v)]
                if v not in f["choices"]:
                    raise RuntimeInputError(f"command.{f['name']}", f"one of {f['choices']}", repr(v))
                out.extend(1.0 if c == v else 0.0 for c in f["choices"])
            else:
                x = float(np.asarray(v).reshape(-1)[0])
                if not math.isfinite(x) or not f["low"] <= x <= f["high"]:
                    raise RuntimeInputError(f"command.{f['name']}", f"a number in [{f['low']}, {f['high']}]", repr(v))
                out.append(2.0 * (x - f["low"]) / (f["high"] - f["low"]) - 1.0)
        return np.asarray(out, np.float32)

    def _inputs(self, obs: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
        cams, T = self.spec["cameras"], self.meta["n_obs_steps"]
        Dp = len(self.spec["proprio_names"])
        p = np.asarray(obs["proprio"], np.float32)
        batched = p.ndim == 2
        p = p if batched else p[None]
        if p.ndim != 2 or p.shape[1] != Dp or not np.isfinite(p).all():
            raise RuntimeInputError("proprio", f"finite [{Dp}] or [B, {Dp}] floats", f"shape {np.shape(obs['proprio'])}")
        B = p.shape[0]
        c = obs["command"]
        c = self.encode_command(c) if isinstance(c, Mapping) else np.asarray(c, np.float32)
        c = np.broadcast_to(c, (B, c.shape[-1])) if c.ndim == 1 else c
        img = np.asarray(obs["image"])
        want = (len(cams), 3, cams[0]["height"], cams[0]["width"])
        img = img if batched else img[None]
        if img.ndim == 4 and len(cams) == 1:
            img = img[:, None]
        if img.shape[1:] != want or img.dtype != np.uint8:
            raise RuntimeInputError("image", f"uint8 {list(want)} (or [B, ...])", f"{img.dtype} {tuple(np.shape(obs['image']))}")
        return {"image": np.ascontiguousarray(img[:, None].repeat(T, 1)), "proprio": p[:, None].repeat(T, 1),
                "command": np.ascontiguousarray(c, np.float32)}, batched

    # ---- actions -----------------------------------------------------------------------------------
    def predict_action_chunk(self, obs: Mapping[str, Any]) -> np.ndarray:
        feeds, batched = self._inputs(obs)
        chunk = self.session.run(None, feeds)[0]  # [B, H, A] bounded, physical units
        chunk = np.where(np.isfinite(chunk), chunk, (self.low + self.high) / 2)
        chunk = np.clip(chunk, self.low, self.high).astype(np.float32)
        return chunk if batched else chunk[0]

    def select_action(self, obs: Mapping[str, Any], embodiment: str | None = None) -> np.ndarray:
        if embodiment is not None and embodiment != self.embodiment:
            raise RuntimeInputError("embodiment", repr(self.embodiment), repr(embodiment))
        if not self._queue:
            chunk = self.predict_action_chunk(obs)
            if chunk.ndim != 2:
                raise RuntimeInputError("proprio", "one unbatched observation for select_action", "a batch")
            n = self.meta["n_action_steps"] or self.meta["chunk_size"]
            self._queue.extend(chunk[:n])
        return self._queue.popleft()

    def reset(self) -> None:
        self._queue.clear()
