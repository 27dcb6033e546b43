"""The built-in recipes: `cotrain` (car + G1), `car_only`, `g1_only`, `finetune_t1`.

Each is a plain function returning a `Recipe` (policy + training + data config). Defaults are
small enough to finish on 2 CPU cores; scale them with `physai train --set key=value`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from physai.config import PolicyConfig, policy_config
from physai.errors import ConfigError
from physai.recipes import RECIPES
from physai.sim.family import family_for_env, record_config_from
from physai.trainer import TrainConfig


@dataclass(frozen=True)
class DataConfig:
    # (env id, episodes, sampling weight[, recording overrides]); datasets are recorded with the experts
    # on first use; the optional 4th item overrides that dataset's family recording options, e.g.
    # ("physai/car-highway", 40, 0.3, {"instructions": True}) beside the plain car recordings
    datasets: tuple[tuple, ...] = ()
    root: str = "data"  # where recorded datasets are cached (one folder per env and size)
    seed: int = 0  # first episode seed of the recordings (evaluation uses other seeds)
    action_noise: float = 0.03  # DART: executed expert actions get this much noise (fraction of half-range)
    # per body family: how its recordings and DAgger roll-outs are made (episode length, frames
    # weighted after command changes, family options such as the humanoid's stand probability);
    # families missing here use their own defaults, e.g. --set data.record.humanoid.stand_prob=0.2
    record: dict = field(default_factory=dict)
    # DAgger: training is split into dagger_rounds + 1 equal phases; after each phase but the last
    # the policy drives dagger_episodes episodes per env while the expert labels every state, and
    # those frames join the training data (each embodiment keeps its sampling weight)
    dagger_rounds: int = 0
    dagger_episodes: int = 8
    dagger_seed: int = 100_000  # first episode seed of DAgger roll-outs (disjoint from recordings and eval)

    def record_for(self, env_id: str):
        """The RecordConfig of the family that provides `env_id`."""
        fam = family_for_env(env_id)
        return self.record.get(fam.name) or record_config_from(fam, None)

    def entry_record(self, entry: tuple):
        """The RecordConfig of one `datasets` entry: its family's, with the entry's own overrides."""
        record = self.record_for(entry[0])
        if len(entry) > 3:
            record = record_config_from(family_for_env(entry[0]), {**dataclasses.asdict(record), **entry[3]})
        return record

    def __post_init__(self):
        if not self.datasets:
            raise ConfigError("a recipe needs at least one dataset (env, episodes, weight)")
        for d in self.datasets:
            if len(d) not in (3, 4) or d[1] < 1 or d[2] <= 0 or (len(d) == 4 and not isinstance(d[3], dict)):
                raise ConfigError(f"dataset entry {d}: expected (env id, episodes >= 1, weight > 0[, overrides dict])")
        record = dict(self.record)
        for env_id, *_ in self.datasets:
            fam = family_for_env(env_id)
            record[fam.name] = record_config_from(fam, record.get(fam.name))
        object.__setattr__(self, "record", record)
        if self.dagger_rounds < 0 or self.dagger_episodes < 1:
            raise ConfigError(f"data.dagger_rounds must be >= 0 and data.dagger_episodes >= 1, "
                              f"got {self.dagger_rounds}, {self.dagger_episodes}")


@dataclass(frozen=True)
class Recipe:
    name: str  # registry name
    policy: PolicyConfig  # the model
    train: TrainConfig  # the optimisation
    data: DataConfig  # what to learn from
    init_from: str = ""  # checkpoint to start from (fine-tuning); empty = from scratch
    eval_env: tuple[str, ...] = ()  # envs for closed-loop evaluation after training
    eval_episodes: int = 5  # closed-loop episodes per eval env
    eval_seed: int = 1000  # seeds disjoint from the recordings


@RECIPES.register("cotrain")
def cotrain() -> Recipe:
    """One nano model co-trained on car (highway) and G1 (walking) expert data."""
    return Recipe(
        name="cotrain",
        policy=policy_config("nano", embodiments=("car", "g1"), residual_actions=("g1",)),
        train=TrainConfig(steps=4200, batch_size=128, lr=1e-3, warmup_steps=100, ckpt_every=600),
        data=DataConfig(datasets=(("physai/car-highway", 30, 0.4), ("physai/g1-walk", 24, 0.6)),
                        dagger_rounds=6, dagger_episodes=12),
        eval_env=("physai/car-highway", "physai/g1-walk"),
    )


@RECIPES.register("sft")
def sft() -> Recipe:
    """Instruction fine-tuning of a co-trained policy: car recordings whose instructions switch during
    the episode (lane changes both ways, speed targets of 10-30 m/s; the family's random_commands),
    beside car recordings without them and the original G1 recordings so nothing is forgotten; the
    checkpoint's normalization is kept. The car is recorded in traffic of density 2 (the dense
    suite's, which the default recordings never show), with frames after a command change drawn 4x."""
    base = cotrain()
    return Recipe(
        name="sft", policy=base.policy, init_from="runs/cotrain/final",
        train=TrainConfig(steps=1200, batch_size=128, lr=3e-4, warmup_steps=50, ckpt_every=300),
        data=DataConfig(datasets=(("physai/car-highway", 30, 0.15), ("physai/car-highway", 40, 0.35, {"instructions": True}),
                                  ("physai/g1-walk", 24, 0.5)),
                        record={"car": {"density": 2.0, "transition_weight": 4.0}}),
        eval_env=base.eval_env,
    )


@RECIPES.register("car_only")
def car_only() -> Recipe:
    r = cotrain()
    return Recipe(name="car_only", policy=policy_config("nano", embodiments=("car",)), train=r.train,
                  data=DataConfig(datasets=(("physai/car-highway", 30, 1.0),)), eval_env=("physai/car-highway",))


@RECIPES.register("g1_only")
def g1_only() -> Recipe:
    r = cotrain()
    return Recipe(name="g1_only", policy=policy_config("nano", embodiments=("g1",), residual_actions=("g1",)),
                  train=r.train,
                  data=DataConfig(datasets=(("physai/g1-walk", 24, 1.0),)), eval_env=("physai/g1-walk",))


@RECIPES.register("finetune_t1")
def finetune_t1() -> Recipe:
    """A new robot (Booster T1) head on the frozen co-trained trunk: only T1's head (+ stem) trains."""
    return Recipe(
        name="finetune_t1",
        policy=policy_config("nano", embodiments=("t1",), residual_actions=("t1",)),
        train=TrainConfig(steps=600, batch_size=64, lr=1e-3, warmup_steps=30, ckpt_every=200,
                          train_head_only="t1", train_stem=True),
        data=DataConfig(datasets=(("physai/t1-walk", 8, 1.0),)),
        init_from="runs/cotrain/final",
        eval_env=("physai/t1-walk",),
    )
