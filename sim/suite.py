"""Scenario files: evaluation suites as JSON, validated strictly before the first episode runs.

A file is a JSON list of objects::

    {"env": "physai/car-highway", "seed": 3, "seconds": 40, "options": {"vehicles_density": 1.5},
     "commands": [{"at": 0, "lane": "keep", "speed": 25}, {"at": 10, "lane": "left"}]}

`env` (a registered gymnasium id) and `seed` (an integer >= 0) are required; `seconds` (a finite
number in (0, MAX_SECONDS]) defaults to the env's episode length and works for every env (its body
family turns it into the env's own length argument); `options` go to the env and are checked by
the family (car: highway-env config keys such as `vehicles_density`, `lanes_count`; humanoids: env
keyword arguments such as `init_noise`); `commands` change the command at `at` seconds (finite,
>= 0, < `seconds`, no two at the same time) with the embodiment's command fields (car `lane`,
`speed`; G1/T1 `vx`, `vy`, `yaw_rate`), each value checked against its command schema; `name` is
a label. The whole list is checked before anything runs; every defect is a `ConfigError` whose
message starts with `<source>[<index>]` and names the field. `list_suites()` and
`load_suite(name)` read the suites shipped in `physai/sim/suites/*.json`.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from difflib import get_close_matches
from importlib import resources
from pathlib import Path
from typing import Any

from physai.embodiments import get_spec
from physai.errors import ConfigError, ObservationError
from physai.sim.family import embodiment_of, families, family_for_env

__all__ = ["SCENARIO_KEYS", "MAX_SECONDS", "Scenario", "parse_scenarios", "load_scenarios", "list_suites",
           "load_suite", "embodiment_of"]

SCENARIO_KEYS = {"env", "seed", "seconds", "options", "commands", "name"}
# an hour of simulated time: far beyond any suite (car 30 s, humanoids 20 s), small enough that a
# typo such as 36000 is an error instead of a silent night of CPU
MAX_SECONDS = 3600.0


@dataclass(frozen=True)
class Scenario:
    """One evaluation episode: which env, which seed, how long, which options and instructions."""

    env: str  # gymnasium id, e.g. physai/car-highway
    seed: int  # reset seed
    seconds: float | None = None  # episode length; None = env default
    options: dict[str, Any] = field(default_factory=dict)  # env config / kwargs
    commands: tuple[tuple[float, dict[str, Any]], ...] = ()  # (time s, command fields), sorted
    name: str = ""

    def __post_init__(self):
        where = f"Scenario({self.env!r}, seed={self.seed!r})"
        _check_env(self.env, f"{where}.env")
        _check_seed(self.seed, f"{where}.seed")
        if self.seconds is not None:
            _check_seconds(self.seconds, f"{where}.seconds")
        times = [at for at, _ in self.commands]
        if times != sorted(times):
            raise ConfigError(f"{where}.commands: expected (time, command) pairs sorted by time, got times {times}")

    @property
    def embodiment(self) -> str:
        return embodiment_of(self.env)


# ---- field checks (each raises ConfigError "<where>: expected ..., got ...") --------------------
def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_env(env: Any, where: str):
    """The env's body family; an id no family provides, or one in a family's namespace that gymnasium
    does not know (a typo), is an error naming close ids."""
    try:
        fam = family_for_env(env)
    except ConfigError as e:
        raise ConfigError(f"{where}: {str(e).removeprefix('env: ')}") from None
    if env not in fam.env_ids:
        import gymnasium

        fam.register_envs()
        if env not in gymnasium.registry:
            known = [e for f in families() for e in f.env_ids]
            known += [e for e in gymnasium.registry if e.startswith("physai/")]
            hint = get_close_matches(env, sorted(set(known)), n=3)
            raise ConfigError(f"{where}: unknown env '{env}'" + (f"; did you mean {hint}?" if hint else ""))
    return fam


def _check_seed(seed: Any, where: str) -> int:
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"{where}: expected an integer >= 0, got {seed!r}")
    return seed


def _check_seconds(seconds: Any, where: str) -> float:
    if not _is_number(seconds) or not math.isfinite(seconds) or not 0 < seconds <= MAX_SECONDS:
        raise ConfigError(f"{where}: expected a finite number in (0, {MAX_SECONDS:g}] (seconds), got {seconds!r}")
    return float(seconds)


def _check_at(at: Any, seconds: float | None, where: str) -> float:
    if not _is_number(at) or not math.isfinite(at) or at < 0:
        raise ConfigError(f"{where}: expected a finite number >= 0 (seconds), got {at!r}")
    if seconds is not None and at >= seconds:
        raise ConfigError(f"{where}: {at!r} s is not before the episode's end (seconds = {seconds:g})")
    return float(at)


def _check_command(spec: Any, c: Any, where: str) -> dict[str, Any]:
    """The command fields of one `commands` entry (without `at`), each checked against the spec."""
    fields = {f.name: f for f in spec.command}
    bad = set(c) - set(fields) - {"at"}
    if bad:
        raise ConfigError(f"{where}: unknown command field(s) {sorted(bad)} for {spec.name}; allowed: {sorted(fields)}")
    values = {k: v for k, v in c.items() if k != "at"}
    if not values:
        raise ConfigError(f"{where}: a command needs at least one of {sorted(fields)}")
    for k, v in values.items():
        if isinstance(v, bool) or (fields[k].kind != "discrete" and not _is_number(v)):
            raise ConfigError(f"{where}.{k}: {spec.name} command.{k} expects a number, got {v!r}")
        try:
            spec.encode_command({**spec.default_command(), k: v})
        except ObservationError as e:
            raise ConfigError(f"{where}.{k}: {spec.name} {e.field} expects {e.expected}, got {e.got}") from None
    # canonical values: a discrete field given as a choice index becomes its choice name ("lane": 1 ->
    # "left"), so scoring and the env read the same instruction
    decoded = spec.decode_command(spec.encode_command({**spec.default_command(), **values}))
    return {k: decoded[k] if fields[k].kind == "discrete" else v for k, v in values.items()}


def _parse_one(item: Any, where: str) -> Scenario:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected an object, got {type(item).__name__}")
    unknown = set(item) - SCENARIO_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(SCENARIO_KEYS)}")
    for req in ("env", "seed"):
        if req not in item:
            raise ConfigError(f"{where}: missing required field '{req}'")
    env = item["env"]
    fam = _check_env(env, f"{where}.env")
    spec = get_spec(fam.embodiment_of(env))
    seed = _check_seed(item["seed"], f"{where}.seed")
    seconds = item.get("seconds")
    seconds = None if seconds is None else _check_seconds(seconds, f"{where}.seconds")
    name = item.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name: expected a string, got {name!r}")
    options = item.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{where}.options: expected an object, got {type(options).__name__}")
    try:
        fam.check_options(env, options)
    except ConfigError as e:
        raise ConfigError(f"{where}.{e}" if str(e).startswith("options.") else f"{where}.options: {e}") from None
    commands = item.get("commands", [])
    if not isinstance(commands, list):
        raise ConfigError(f"{where}.commands: expected a list of objects, got {type(commands).__name__}")
    cmds, seen = [], {}
    for j, c in enumerate(commands):
        cw = f"{where}.commands[{j}]"
        if not isinstance(c, dict) or "at" not in c:
            raise ConfigError(f"{cw}: expected an object with 'at' (seconds)")
        at = _check_at(c["at"], seconds, f"{cw}.at")
        if at in seen:
            raise ConfigError(f"{cw}.at: {at:g} s repeats commands[{seen[at]}].at; put both changes in one command")
        seen[at] = j
        cmds.append((at, _check_command(spec, c, cw)))
    return Scenario(env=env, seed=seed, seconds=seconds, options=options,
                    commands=tuple(sorted(cmds, key=lambda x: x[0])), name=name)


def parse_scenarios(data: Any, source: str = "scenarios") -> list[Scenario]:
    """Validate a whole scenario list (parsed JSON) and return its `Scenario`s, in order."""
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{source}: expected a non-empty JSON list of scenario objects")
    return [_parse_one(item, f"{source}[{i}]") for i, item in enumerate(data)]


def _decode(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{what}: invalid JSON ({e})") from None


def load_scenarios(path: str | Path) -> list[Scenario]:
    """Read and validate a scenario file (errors start with the file's path)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"scenario file '{p}' not found") from None
    return parse_scenarios(_decode(text, f"scenario file '{p}'"), str(p))


# ---- shipped suites -------------------------------------------------------------------------------
def _suite_dir():
    return resources.files("physai.sim") / "suites"


def list_suites() -> list[str]:
    """Names of the suites shipped with physai (file names under `physai/sim/suites/` without `.json`)."""
    d = _suite_dir()
    return sorted(p.name.removesuffix(".json") for p in d.iterdir() if p.name.endswith(".json"))


def load_suite(name: str) -> list[Scenario]:
    """A shipped suite by name (e.g. "car-instructions"); an unknown name suggests close ones."""
    names = list_suites()
    if name not in names:
        hint = get_close_matches(str(name), names, n=3, cutoff=0.4)
        raise ConfigError(f"unknown suite {name!r}" + (f"; did you mean {hint}?" if hint else "")
                          + f" (shipped: {names})")
    text = (_suite_dir() / f"{name}.json").read_text()
    return parse_scenarios(_decode(text, f"suite '{name}'"), f"{name}.json")
