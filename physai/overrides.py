"""`--set key=value` overrides for nested frozen config dataclasses.

Keys are dotted paths (`train.steps=50`, `policy.trunk.width=64`, `policy.head.chunk_size=4`,
`data.record.humanoid.stand_prob=0.2` into a dict of config dataclasses); values are parsed by the field's annotated type (int, float, bool, str, optional, tuples as
comma-separated or JSON). An unknown key or an unparsable value raises `ConfigError` listing the
valid keys, so a typo never silently trains the wrong model.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from physai.errors import ConfigError


def flat_keys(cfg: Any, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out += flat_keys(v, f"{prefix}{f.name}.")
        elif _is_group_dict(v):
            for k, sub in v.items():
                out += flat_keys(sub, f"{prefix}{f.name}.{k}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def _is_group_dict(v: Any) -> bool:
    """A dict whose values are config dataclasses (e.g. `data.record`, one entry per body family)."""
    return isinstance(v, dict) and bool(v) and all(dataclasses.is_dataclass(x) for x in v.values())


def _parse(text: str, tp: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", "") and type(None) in args:
            return None
        errs = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _parse(text, a, key)
            except ConfigError as e:
                errs.append(str(e))
        raise ConfigError(f"--set {key}: cannot parse '{text}' as {tp}")
    if tp is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--set {key}: expected a bool (true/false), got '{text}'")
    if tp in (int, float, str):
        try:
            return tp(text)
        except ValueError:
            raise ConfigError(f"--set {key}: expected {tp.__name__}, got '{text}'") from None
    if origin is tuple:
        try:
            items = json.loads(text) if text.strip().startswith("[") else [t for t in text.split(",") if t.strip()]
        except json.JSONDecodeError as e:
            raise ConfigError(f"--set {key}: bad JSON list '{text}' ({e})") from None
        def item(i):  # nested lists go back to JSON, scalars to their text
            return json.dumps(i) if isinstance(i, (list, dict)) else str(i)

        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(item(i), args[0], key) for i in items)
        if len(args) != len(items):
            raise ConfigError(f"--set {key}: expected {len(args)} items, got {len(items)}")
        return tuple(_parse(item(i), a, key) for i, a in zip(items, args))
    if tp is tuple or tp is dict:  # an untyped JSON list (as a tuple, lists inside too) or object
        try:
            v = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--set {key}: bad JSON '{text}' ({e})") from None
        if not isinstance(v, list if tp is tuple else dict):
            raise ConfigError(f"--set {key}: expected a JSON {'list' if tp is tuple else 'object'}, got '{text}'")
        return _tuples(v)
    raise ConfigError(f"--set {key}: fields of type {tp} cannot be set from the command line")


def _tuples(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuples(x) for x in v)
    return {k: _tuples(x) for k, x in v.items()} if isinstance(v, dict) else v


def apply_overrides(cfg: Any, pairs: list[str]) -> Any:
    """Return a copy of `cfg` with each 'a.b.c=value' applied (validated by __post_init__)."""
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got '{pair}'")
        key, text = pair.split("=", 1)
        cfg = _set(cfg, key.strip().split("."), text, key.strip(), cfg)
    return cfg


def _set(cfg: Any, path: list[str], text: str, key: str, root: Any) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    if path[0] not in fields:
        raise ConfigError(f"unknown key '{key}'; valid keys: {', '.join(flat_keys(root))}")
    f = fields[path[0]]
    cur = getattr(cfg, f.name)
    if len(path) > 1:
        if _is_group_dict(cur):
            if len(path) < 3 or path[1] not in cur:
                raise ConfigError(f"unknown key '{key}'; valid keys: {', '.join(flat_keys(root))}")
            return dataclasses.replace(cfg, **{f.name: {**cur, path[1]: _set(cur[path[1]], path[2:], text, key, root)}})
        if not dataclasses.is_dataclass(cur):
            raise ConfigError(f"unknown key '{key}'; valid keys: {', '.join(flat_keys(root))}")
        return dataclasses.replace(cfg, **{f.name: _set(cur, path[1:], text, key, root)})
    if dataclasses.is_dataclass(cur):
        raise ConfigError(f"'{key}' is a group; set one of its fields: {', '.join(flat_keys(cur, key + '.'))}")
    hints = typing.get_type_hints(type(cfg))
    return dataclasses.replace(cfg, **{f.name: _parse(text, hints[f.name], key)})
