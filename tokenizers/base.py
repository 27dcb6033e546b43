"""Action tokenizer interface and registry.

An action tokenizer maps action chunks [N, H, A] (float) to integer token sequences and back:
`fit(data)`, `encode(actions)`, `decode(tokens)`, `save(dir)` / `load(dir)` (JSON, never pickle).
`fixed_length` is the number of tokens per chunk when it is constant (bins, longlat) and None for
variable-length schemes (fast). Builders register by name in `TOKENIZERS`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from physai.registry import Registry

TOKENIZERS: Registry = Registry("tokenizer")


class ActionTokenizer(ABC):
    name: str = "base"

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    def fixed_length(self) -> int | None:
        """Tokens per chunk if constant, else None."""
        return None

    @abstractmethod
    def fit(self, data: np.ndarray) -> "ActionTokenizer":
        """data: [N, H, A] float action chunks. Returns self."""

    @abstractmethod
    def encode(self, actions: np.ndarray) -> list[np.ndarray] | np.ndarray:
        """[N, H, A] -> int tokens ([N, L] if fixed_length else a list of 1-D arrays)."""

    @abstractmethod
    def decode(self, tokens) -> np.ndarray:
        """Inverse of encode -> [N, H, A] float32."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """JSON-serialisable state (includes everything `from_state` needs)."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> "ActionTokenizer": ...

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        path = d / "tokenizer.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"name": self.name, "state": self.state()}))
        tmp.replace(path)
        return path


def load_tokenizer(directory: str | Path) -> ActionTokenizer:
    obj = json.loads((Path(directory) / "tokenizer.json").read_text())
    return TOKENIZERS.get(obj["name"]).from_state(obj["state"])  # registered class
