"""A tiny name -> builder registry, as timm's `@register_model`.

Embodiments, heads, tokenizers, recipes and presets each keep one `Registry`. Builders are plain
functions; `get` returns the builder and an unknown name raises `UnknownNameError` listing close
matches, so a typo on the command line gets a useful answer.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from physai.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(fn: T) -> T:
            key = name or getattr(fn, "__name__")
            if key in self._items:
                raise ValueError(f"{self.kind} '{key}' is already registered")
            self._items[key] = fn
            return fn

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{hint} (registered: {', '.join(sorted(self._items))})"
            ) from None

    def names(self, sort: bool = True) -> list[str]:
        """Registered names, sorted (or in registration order with sort=False)."""
        return sorted(self._items) if sort else list(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)
