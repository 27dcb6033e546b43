"""Body families: one registered object per kind of body owns everything that differs between
bodies outside the model.

A `BodyFamily` (car, humanoid, or one a user registers) knows its gymnasium env ids and which
embodiment each drives, how to build an env for a given episode length and options, its expert,
its safety guard, its episode metrics and their table columns, what to record per step for
instruction scoring, its video frame rate, and its recording options (`RecordConfig`). Collection,
training, DAgger, evaluation and the CLI ask the family; none of them branches on a body's name.
This follows LeRobot's `EnvConfig` subclasses: adding a body means one family (plus its spec and
env), registered with `register_family`, and no edit to any library file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any, Mapping, Protocol

from physai.errors import ConfigError
from physai.registry import Registry

FAMILIES: Registry = Registry("body family")


@dataclass(frozen=True)
class RecordConfig:
    """How a family's expert recordings and DAgger roll-outs are made (families subclass it)."""

    seconds: float = 20.0  # episode length of recordings and DAgger roll-outs
    # frames in the transition_seconds after a command change are drawn this many times as often
    # in training (1 = uniform): the moments just after an instruction changes are rare but decisive
    transition_weight: float = 1.0
    transition_seconds: float = 1.5
    # switch instructions during recorded episodes (the family's `random_commands` timeline, a function
    # of the episode seed): the data instruction fine-tuning needs; off = the env's own commands
    instructions: bool = False

    def __post_init__(self):
        if not (isinstance(self.seconds, (int, float)) and math.isfinite(self.seconds) and self.seconds > 0):
            raise ConfigError(f"record.seconds must be a finite number > 0, got {self.seconds!r}")
        if not (math.isfinite(self.transition_weight) and self.transition_weight >= 1.0
                and math.isfinite(self.transition_seconds) and self.transition_seconds > 0):
            raise ConfigError(f"record.transition_weight must be >= 1 and record.transition_seconds > 0, "
                              f"got {self.transition_weight}, {self.transition_seconds}")

    def env_options(self) -> dict[str, Any]:
        """Extra env keyword arguments recordings use (beyond length and images)."""
        return {}

    def tag(self) -> str:
        """Suffix of a recording's cache folder for the settings that change the data ('' = defaults);
        subclasses add theirs to this one's."""
        return "-instr" if self.instructions else ""


class Expert(Protocol):
    def reset(self, env: Any) -> None: ...

    def act(self, env: Any) -> Any: ...


class EpisodeMetrics(Protocol):
    def reset(self, info: Mapping[str, Any]) -> None: ...

    def update(self, obs: Any, action: Any, info: Mapping[str, Any], reward: float) -> None: ...

    def result(self) -> dict[str, float]: ...


class BodyFamily:
    """Base class: subclass it, set the class attributes, implement the `make_*` methods."""

    name: str = ""  # registry name ("car", "humanoid")
    env_ids: tuple[str, ...] = ()  # gymnasium ids this family provides
    record_config: type[RecordConfig] = RecordConfig  # its recording options (defaults = the family's)
    metric_columns: tuple[str, ...] = ()  # per-episode metrics shown in tables, in order
    default_reward: str = ""  # the `physai.rl.reward.REWARDS` model RL uses for this family by default
    rollout_processes: int = 1  # processes a DAgger round gives each of this family's datasets
    # its envs may run in worker processes (spawned: they import the family's module by name, so it
    # must be importable there); False keeps them in the caller's process (still batched inference)
    spawnable: bool = False
    # the world-model bench's probe: a trace key (`trace_step`) read back from the physical tokens by
    # a linear probe, clipped at `probe_cap`; "" = none. See `counterfactual_actions`
    probe_key: str = ""
    probe_cap: float = float("inf")
    # the flywheel's hard cases: a trace key that marks a failure (car: collision; humanoid: fell) and
    # one whose low values mark a near miss (car: time-to-collision s); "" = none
    failure_key: str = ""
    risk_key: str = ""

    # ---- envs ------------------------------------------------------------------------------------
    def owns(self, env_id: str) -> bool:
        """Whether this family drives `env_id` (its registered ids; families may claim a namespace)."""
        return env_id in self.env_ids

    def register_envs(self) -> None:
        """Register `env_ids` with gymnasium (idempotent)."""

    def embodiment_of(self, env_id: str) -> str:
        """The embodiment (spec name) that env drives."""
        raise ConfigError(f"body family '{self.name}' does not say which embodiment '{env_id}' drives")

    def env_kwargs(self, env_id: str, seconds: float | None = None, options: Mapping[str, Any] | None = None,
                   images: bool = True) -> dict[str, Any]:
        """`gym.make` keyword arguments for an episode of `seconds` (None = env default) with the
        user's `options` (a scenario's), rendering camera images or not."""
        raise ConfigError(f"body family '{self.name}' cannot build env kwargs (implement env_kwargs)")

    def episode_seconds(self, env: Any) -> float | None:
        """The env's episode length (instructions cut off by a crash still count), None if unknown."""
        return None

    def check_options(self, env_id: str, options: Mapping[str, Any]) -> None:
        """Raise `ConfigError` naming an option the env does not take (before any episode runs)."""

    # ---- the pieces around the model -------------------------------------------------------------
    def make_expert(self, embodiment: str) -> Expert:
        raise ConfigError(f"body family '{self.name}' has no expert (implement make_expert)")

    def make_guard(self, spec: Any) -> Any:
        """The safety guard for a spec of this family (`physai.embodiments.safety`); None = no guard."""
        return None

    def make_metrics(self, env: Any) -> EpisodeMetrics:
        raise ConfigError(f"body family '{self.name}' has no episode metrics (implement make_metrics)")

    def trace_step(self, info: Mapping[str, Any]) -> dict[str, Any]:
        """What one step contributes to instruction scoring (small, JSON-able)."""
        return {}

    def trace_metrics(self, trace: list[dict[str, Any]], dt: float) -> dict[str, float]:
        """Episode metrics computed from the whole trace (e.g. the car's minimum time to collision)."""
        return {}

    def score_instructions(self, commands: tuple, trace: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
        """One record per instruction of a scenario's command timeline: kind, success, errors."""
        return []

    def episode_summary(self, metrics: dict[str, float], reference: dict[str, float] | None) -> dict[str, float]:
        """Extra per-episode scores that need the expert's episode on the same scenario (or None)."""
        return {}

    def video_fps(self, spec: Any) -> float:
        """The frame rate roll-out videos aim for. The runner keeps one frame every
        round(control_hz / video_fps) control steps and writes the video at the rate those frames
        were captured in simulated time, so it always plays in real time."""
        return float(spec.control_hz)

    def random_commands(self, env_id: str, rng, seconds: float | None) -> tuple[tuple[float, dict], ...]:
        """A random instruction timeline ((time s, command fields), sorted) for instruction-rich
        recordings (`record.instructions`) and RL training episodes; () = the env's own commands.
        Families whose instructions are set from outside override it."""
        return ()

    def counterfactual_actions(self, spec: Any) -> tuple[tuple[str, Any], tuple[str, Any]] | None:
        """Two constant actions ((name, [A]), (name, [A])) whose imagined futures must order the probe:
        the first's `probe_key` higher than the second's (the world model's counterfactual check).
        None: the family has none."""
        return None

    def task_string(self, spec: Any, command: Mapping[str, Any]) -> str:
        """The human-readable task of a command, stored per recorded frame."""
        vals = spec.decode_command(spec.encode_command(command))
        parts = [f"{k} {v if isinstance(v, str) else _num(v)}" for k, v in vals.items()]
        return f"{spec.name}: " + " ".join(parts)

    def default_record(self) -> RecordConfig:
        return self.record_config()


def _num(x: float) -> str:
    """Short number for task strings: 25 -> '25', 0.5 -> '0.5', -0.04 -> '0' (one decimal)."""
    x = round(float(x), 1)
    return f"{0.0 if x == 0 else x:g}"


def register_family(family: BodyFamily) -> BodyFamily:
    """Register a family instance under `family.name` (idempotent for the same class)."""
    if not family.name:
        raise ConfigError(f"{type(family).__name__}: a body family needs a non-empty `name`")
    if family.name in FAMILIES:
        if type(FAMILIES.get(family.name)) is type(family):
            return FAMILIES.get(family.name)
        raise ConfigError(f"body family '{family.name}' is already registered by {type(FAMILIES.get(family.name)).__name__}")
    FAMILIES.register(family.name)(family)
    return family


def _builtins() -> None:
    import physai.sim.car.family  # noqa: F401  (registers "car")
    import physai.sim.humanoid.family  # noqa: F401  (registers "humanoid")


def families() -> list[BodyFamily]:
    _builtins()
    return [FAMILIES.get(n) for n in FAMILIES.names(sort=False)]


def get_family(name: str) -> BodyFamily:
    _builtins()
    return FAMILIES.get(name)


def family_for_env(env_id: Any) -> BodyFamily:
    """The family that provides `env_id`; a `ConfigError` with close names otherwise."""
    if not isinstance(env_id, str):
        raise ConfigError(f"env: expected a gymnasium id string, got {type(env_id).__name__} {env_id!r}")
    fams = families()
    for fam in fams:
        if env_id in fam.env_ids:
            return fam
    for fam in fams:
        if fam.owns(env_id):
            return fam
    known = [e for f in fams for e in f.env_ids]
    hint = get_close_matches(env_id, known, n=3)
    raise ConfigError(f"unknown env '{env_id}'" + (f"; did you mean {hint}?" if hint else f"; known envs: {known}"))


def family_for_embodiment(embodiment: str) -> BodyFamily:
    """The family whose envs drive `embodiment`."""
    for fam in families():
        if any(fam.embodiment_of(e) == embodiment for e in fam.env_ids):
            return fam
    raise ConfigError(f"no body family drives embodiment '{embodiment}' "
                      f"(families: {[f.name for f in families()]})")


def embodiment_of(env_id: str) -> str:
    return family_for_env(env_id).embodiment_of(env_id)


def register_envs() -> None:
    for fam in families():
        fam.register_envs()


def record_config_from(family: BodyFamily, value: Any) -> RecordConfig:
    """A family's RecordConfig from a dataclass, a dict of its fields (JSON) or None (defaults)."""
    cls = family.record_config
    if value is None:
        return family.default_record()
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        known = {f.name for f in dataclasses.fields(cls)}
        bad = set(value) - known
        if bad:
            raise ConfigError(f"data.record.{family.name}: unknown field(s) {sorted(bad)}; valid: {sorted(known)}")
        return dataclasses.replace(family.default_record(), **dict(value))
    raise ConfigError(f"data.record.{family.name}: expected {cls.__name__} or a dict, got {type(value).__name__}")
