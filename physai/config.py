"""PolicyConfig: everything needed to rebuild a policy, as a flat frozen dataclass + JSON.

Nested configs (trunk, stem, head) are frozen dataclasses too; `to_dict`/`from_dict` round-trip
through `config.json`. `policy_config(preset=..., **overrides)` builds one from a trunk preset.
The defaults are the benchmarked token layout the recipes train (5 trunk tokens, 4 physical tokens
pooled after the trunk); `from_dict` reads a key missing from an older `config.json` as the value
that checkpoint was trained with (`OLD_DEFAULTS`), so old checkpoints keep loading unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

from physai.errors import ConfigError
from physai.heads.base import HeadConfig
from physai.stems import StemConfig
from physai.trunk import TRUNK_PRESETS, TrunkConfig

FORMAT_VERSION = 1

# What a config.json without a key meant: the value the model used before the key existed, or its
# default before that default changed. `from_dict` fills missing keys from here, not from today's
# defaults, so an old checkpoint rebuilds the model it was trained as. Changing a field's default
# means recording its old value here.
OLD_DEFAULTS: dict[str, dict[str, Any]] = {
    "policy": {
        # the library's layout before the recipes' lean one became the default
        "n_readout": 16, "readout": "trunk", "head_reads_trunk": False, "world_model_fraction": 1.0,
        "n_action_steps": None,
        "world_model_trains_encoder": True, "code_entropy_per_position": False,  # before those switches
    },
    "stem": {"patch_size": 8, "state_token": False},  # 8x8 patches and separate state tokens
    "head": {"reflex_hidden": 0},  # before the l1 head's reflex path
}


@dataclass(frozen=True)
class PolicyConfig:
    trunk: TrunkConfig = TrunkConfig()  # shared transformer size (the "nano" preset's)
    # how observations become tokens; the default is 2x2 patches of 32 px plus one state token (5
    # trunk tokens for a 64x64 camera), see StemConfig
    stem: StemConfig = StemConfig()
    head: HeadConfig = HeadConfig()  # decoder settings shared by every head
    embodiments: tuple[str, ...] = ("car", "g1")  # bodies this policy drives
    head_types: tuple[tuple[str, str], ...] = ()  # (embodiment, head) overrides of spec.default_head
    # K physical tokens per observation. 4 pooled tokens (with the 5-token stem) against 16-px
    # patches, separate tokens and 8 registers riding through the trunk (27 tokens): the default
    # cotrain went 241 -> 369 samples/s (53 -> 38 min) with its car and G1 goals still met
    n_readout: int = 4
    # where the K physical tokens are read: "trunk" = K register tokens ride through every trunk layer
    # with the observation tokens (Octo-style readouts), then cross-attend once more; "pool" = the
    # trunk sees only the observation tokens and K learned queries cross-attend to its output
    # (attention pooling): the trunk's cost no longer grows with K
    readout: str = "pool"
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)  # FSQ vocabulary = prod(levels) = 1000 codes
    # heads see trunk features as well as the physical tokens: on 2 CPU cores and a few thousand steps
    # the token-only path learns markedly slower (measured: G1 L1 0.22 vs 0.14 after 200 steps)
    head_reads_trunk: bool = True
    world_model: bool = True  # predict next physical tokens from (tokens, action)
    world_model_depth: int = 2  # blocks in the world-model predictor
    world_model_weight: float = 0.5  # weight of the world-model loss in forward()
    # share of each batch the world-model loss is computed on (it costs a second encode): a quarter,
    # with 8 instead of 16 physical tokens, gave 1.6x the samples/s of the full batch (246 vs 157 on
    # 2 cores), which closed-loop humanoid control needed more than the extra world-model signal
    world_model_fraction: float = 0.25
    # False: the world-model loss trains only the predictor, not the encoder that makes the codes it
    # predicts. True lets it shape the encoder too, which rewards constant codes (trivial to predict):
    # measured, every position held one code for every input and the CE went to 0.
    world_model_trains_encoder: bool = False
    code_entropy_weight: float = 0.5  # FSQ code-usage regulariser (keeps physical tokens from collapsing)
    # spread codes over the batch per token position (see FSQ.entropy_loss). With the predictor-only
    # world model this keeps every position informative: measured over 250 co-training steps, mean
    # per-position perplexity 6-7 (car, G1) vs 1.1-2.1 with the pooled term; action losses equal
    code_entropy_per_position: bool = True
    temporal_ensemble: float | None = None  # ACT-style ensembling coefficient; None = chunk queue
    # actions executed per predicted chunk (None = chunk_size); 1 = re-plan every control step,
    # which closed-loop humanoid control needs
    n_action_steps: int | None = 1
    residual_actions: tuple[str, ...] = ()  # embodiments predicting actions relative to proprio's last_action_*
    # (embodiment, proprio names) the model does not read: set to the normalized mean (0) in training
    # and at inference. A behaviour-cloned car that sees its previous action copies it instead of
    # reading the scene and the command ("copycat"); hiding it makes it act on what it sees
    hidden_proprio: tuple[tuple[str, tuple[str, ...]], ...] = ()
    proprio_norm: str = "mean_std"  # normalization mode for proprioception
    action_norm: str = "min_max"  # normalization mode for actions
    preset: str = "custom"  # name of the trunk preset this came from (informational)

    def __post_init__(self):
        if self.n_readout < 1:
            raise ConfigError("n_readout must be >= 1")
        if self.readout not in ("trunk", "pool"):
            raise ConfigError(f"readout must be 'trunk' or 'pool', got {self.readout!r}")
        if not self.embodiments:
            raise ConfigError("a policy needs at least one embodiment")
        if self.n_action_steps is not None and not 1 <= self.n_action_steps <= self.head.chunk_size:
            raise ConfigError(f"n_action_steps must be in [1, chunk_size={self.head.chunk_size}]")
        if not 0.0 < self.world_model_fraction <= 1.0:
            raise ConfigError(f"world_model_fraction must be in (0, 1], got {self.world_model_fraction}")
        if self.temporal_ensemble is not None and not (math.isfinite(self.temporal_ensemble) and self.temporal_ensemble >= 0):
            raise ConfigError(f"temporal_ensemble coefficient must be a finite number >= 0, got {self.temporal_ensemble!r}")
        for k in ("world_model_weight", "code_entropy_weight"):
            if not (math.isfinite(getattr(self, k)) and getattr(self, k) >= 0):
                raise ConfigError(f"{k} must be a finite number >= 0, got {getattr(self, k)!r}")
        for k, names in (("residual_actions", self.residual_actions), ("head_types", [e for e, _ in self.head_types]),
                         ("hidden_proprio", [e for e, _ in self.hidden_proprio])):
            if not set(names) <= set(self.embodiments):
                raise ConfigError(f"{k} names {sorted(set(names) - set(self.embodiments))}, which are not among "
                                  f"embodiments {list(self.embodiments)}")

    def head_type(self, embodiment: str, default: str) -> str:
        return dict(self.head_types).get(embodiment, default)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PolicyConfig":
        """Read a saved config (`config.json`'s "config"). A key it lacks takes its OLD_DEFAULTS value,
        what checkpoints written without it used, not today's default; new configs: `policy_config`."""
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown PolicyConfig keys {sorted(unknown)}; valid: {sorted(known)}")
        d = {**OLD_DEFAULTS["policy"], **d}
        for name, sub_cls in (("trunk", TrunkConfig), ("stem", StemConfig), ("head", HeadConfig)):
            d[name] = _nested(name, sub_cls, d.get(name, {}), OLD_DEFAULTS.get(name, {}))
        d = {k: v if k in ("trunk", "stem", "head") else _typed(cls, k, v) for k, v in d.items()}
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:  # a value of the wrong type (a number where a list belongs, ...)
            raise ConfigError(f"PolicyConfig: malformed value ({e})") from None


def _nested(name: str, cls: type, value: Any, old: Mapping[str, Any]) -> Any:
    """A nested config from its saved dict: unknown keys and malformed values are a `ConfigError`
    naming `<name>.<key>`, never a TypeError from the constructor."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected an object of {cls.__name__} fields, got {type(value).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(value) - known
    if unknown:
        raise ConfigError(f"unknown {name} keys {sorted(f'{name}.{k}' for k in unknown)}; valid: {sorted(known)}")
    try:
        return cls(**{k: _typed(cls, k, v, f"{name}.") for k, v in {**old, **value}.items()})
    except ConfigError:
        raise
    except (TypeError, ValueError, ZeroDivisionError, ArithmeticError) as e:
        raise ConfigError(f"{name}: malformed value ({type(e).__name__}: {e})") from None


def _typed(cls: type, key: str, value: Any, prefix: str = "") -> Any:
    """A JSON value checked against the field's annotation (int, float, bool, str, `X | None`,
    `tuple[X, ...]`, `tuple[tuple[str, str], ...]`); lists become tuples. Anything else is a
    ConfigError naming the field: a saved config is untrusted input."""
    hint = typing.get_type_hints(cls)[key]

    def conv(t, v, where):
        args = typing.get_args(t)
        if typing.get_origin(t) in (typing.Union, types.UnionType):
            if v is None and type(None) in args:
                return None
            return conv(next(a for a in args if a is not type(None)), v, where)
        if typing.get_origin(t) is tuple:
            if not isinstance(v, (list, tuple)):
                raise ConfigError(f"{where} must be a list, got {v!r}")
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(conv(args[0], x, where) for x in v)
            if len(v) != len(args):
                raise ConfigError(f"{where} must be a list of {len(args)}, got {v!r}")
            return tuple(conv(a, x, where) for a, x in zip(args, v))
        if t is bool:
            ok = isinstance(v, bool)
        elif t is int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif t is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        elif t is str:
            ok = isinstance(v, str)
        else:
            return v
        if not ok:
            kind = {float: "a finite number", int: "an integer", bool: "a boolean", str: "a string"}[t]
            raise ConfigError(f"{where} must be {kind}, got {v!r}")
        return float(v) if t is float else v

    return conv(hint, value, f"{prefix}{key}")


def policy_config(preset: str = "nano", **overrides) -> PolicyConfig:
    """A PolicyConfig with the trunk of a named preset; keyword overrides for any field."""
    trunk = TRUNK_PRESETS.get(preset)
    return PolicyConfig(trunk=overrides.pop("trunk", trunk), preset=preset, **overrides)
