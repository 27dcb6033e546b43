"""Scenario files: user-written evaluation suites (JSON).

A file is a JSON list of objects::

    {"env": "physai/car-highway", "seed": 3, "seconds": 40, "options": {"vehicles_density": 1.5},
     "commands": [{"at": 0, "lane": "keep", "speed": 25}, {"at": 10, "lane": "left"}]}

`env` and `seed` are required; `seconds` defaults to the env's episode length; `options` go to the
env (car: highway-env config keys such as `vehicles_density`, `lanes_count`; humanoids: env
keyword arguments such as `init_noise`); `commands` change the command at the given times in
seconds (car fields `lane`, `speed`; G1/T1 fields `vx`, `vy`, `yaw_rate`). Any unknown field is a
`ConfigError` naming it; command values are checked against the embodiment's command schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from physai.embodiments import get_spec
from physai.errors import ConfigError

SCENARIO_KEYS = {"env", "seed", "seconds", "options", "commands", "name"}


def embodiment_of(env_id: str) -> str:
    for prefix, emb in (("physai/car-", "car"), ("physai/g1-", "g1"), ("physai/t1-", "t1")):
        if env_id.startswith(prefix):
            return emb
    raise ConfigError(f"env '{env_id}': not a physai env (physai/car-*, physai/g1-*, physai/t1-*)")


@dataclass(frozen=True)
class Scenario:
    env: str  # gymnasium id, e.g. physai/car-highway
    seed: int  # reset seed
    seconds: float | None = None  # episode length; None = env default
    options: dict[str, Any] = field(default_factory=dict)  # env config / kwargs
    commands: tuple[tuple[float, dict[str, Any]], ...] = ()  # (time s, command fields), sorted
    name: str = ""

    @property
    def embodiment(self) -> str:
        return embodiment_of(self.env)


def parse_scenarios(data: Any, source: str = "scenarios") -> list[Scenario]:
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{source}: expected a non-empty JSON list of scenario objects")
    out = []
    for i, item in enumerate(data):
        where = f"{source}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected an object, got {type(item).__name__}")
        unknown = set(item) - SCENARIO_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(SCENARIO_KEYS)}")
        for req in ("env", "seed"):
            if req not in item:
                raise ConfigError(f"{where}: missing required field '{req}'")
        env = item["env"]
        spec = get_spec(embodiment_of(env))
        if not isinstance(item["seed"], int) or isinstance(item["seed"], bool):
            raise ConfigError(f"{where}.seed: expected an integer")
        seconds = item.get("seconds")
        if seconds is not None and (not isinstance(seconds, (int, float)) or seconds <= 0):
            raise ConfigError(f"{where}.seconds: expected a positive number")
        options = item.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{where}.options: expected an object")
        cmds = []
        fields = {f.name for f in spec.command}
        for j, c in enumerate(item.get("commands", [])):
            cw = f"{where}.commands[{j}]"
            if not isinstance(c, dict) or "at" not in c:
                raise ConfigError(f"{cw}: expected an object with 'at' (seconds)")
            bad = set(c) - fields - {"at"}
            if bad:
                raise ConfigError(f"{cw}: unknown command field(s) {sorted(bad)} for {spec.name}; allowed: {sorted(fields)}")
            values = {k: v for k, v in c.items() if k != "at"}
            try:
                spec.encode_command({**spec.default_command(), **values})
            except Exception as e:
                raise ConfigError(f"{cw}: {e}") from None
            cmds.append((float(c["at"]), values))
        out.append(Scenario(env=env, seed=item["seed"], seconds=seconds, options=options,
                            commands=tuple(sorted(cmds, key=lambda x: x[0])), name=item.get("name", "")))
    return out


def load_scenarios(path: str | Path) -> list[Scenario]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"scenario file '{p}' not found") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"scenario file '{p}': invalid JSON ({e})") from None
    return parse_scenarios(data, str(p))
