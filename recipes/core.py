"""The built-in recipes: `cotrain` (car + G1), `car_only`, `g1_only`, `finetune` (your robot from a
LeRobot dataset), `finetune_t1`.

Each is a plain function returning a `Recipe` (policy + training + data config). Defaults are
small enough to finish on 2 CPU cores; scale them with `physai train --set key=value`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from physai.config import PolicyConfig, policy_config
from physai.data.sources import dataset_entry_spec, is_dataset_entry
from physai.embodiments import get_spec
from physai.errors import ConfigError
from physai.recipes import RECIPES
from physai.sim.family import embodiment_of, families, family_for_env, record_config_from
from physai.trainer import TrainConfig


@dataclass(frozen=True)
class DataConfig:
    # what to learn from, each entry one of
    #   (env id, episodes, weight[, recording overrides]): recorded with the env family's expert on
    #     first use; the optional 4th item overrides that family's recording options, e.g.
    #     ("physai/car-highway", 40, 0.3, {"instructions": True}) beside the plain car recordings
    #   (LeRobot dataset path or Hub repo id, weight): trained on as it is (physai.data.sources)
    datasets: tuple[tuple, ...] = ()
    root: str = "data"  # where recorded datasets are cached (one folder per env and size)
    seed: int = 0  # first episode seed of the recordings (evaluation uses other seeds)
    action_noise: float = 0.03  # DART: executed expert actions get this much noise (fraction of half-range)
    # per body family: how its recordings and DAgger roll-outs are made (episode length, frames
    # weighted after command changes, family options such as the humanoid's stand probability);
    # families missing here use their own defaults, e.g. --set data.record.humanoid.stand_prob=0.2
    record: dict = field(default_factory=dict)
    # DAgger: training is split into dagger_rounds + 1 equal phases; after each phase but the last
    # the policy drives dagger_episodes episodes per env entry while the expert labels every state,
    # and those frames join the training data (each embodiment keeps its sampling weight); dataset
    # entries have no expert to relabel with and take no part
    dagger_rounds: int = 0
    dagger_episodes: int = 8
    dagger_seed: int = 100_000  # first episode seed of DAgger roll-outs (disjoint from recordings and eval)
    # episodes of each dataset held out from training for the validation loss (the first of every
    # dataset with more than this many episodes; 0 = validate on training frames)
    val_episodes: int = 1

    def record_for(self, env_id: str):
        """The RecordConfig of the family that provides `env_id`."""
        fam = family_for_env(env_id)
        return self.record.get(fam.name) or record_config_from(fam, None)

    def entry_record(self, entry: tuple):
        """The RecordConfig of one env entry: its family's, with the entry's own overrides."""
        record = self.record_for(entry[0])
        if len(entry) > 3:
            record = record_config_from(family_for_env(entry[0]), {**dataclasses.asdict(record), **entry[3]})
        return record

    def env_entries(self) -> list[tuple]:
        return [e for e in self.datasets if not is_dataset_entry(e)]

    def entry_body(self, entry: tuple) -> str:
        """The embodiment an entry's data is of."""
        return self.entry_spec(entry).name if is_dataset_entry(entry) else embodiment_of(entry[0])

    def entry_spec(self, entry: tuple):
        """The `EmbodimentSpec` of an entry's data: a dataset's own, or the registered spec of an env's body."""
        return dataset_entry_spec(entry[0], self.root) if is_dataset_entry(entry) else get_spec(embodiment_of(entry[0]))

    def __post_init__(self):
        if not self.datasets:
            raise ConfigError("a recipe needs at least one dataset (env, episodes, weight) or (dataset path, weight)")
        for d in self.datasets:
            if not isinstance(d, (tuple, list)) or not d:
                raise ConfigError(f"dataset entry {d!r}: expected (env id, episodes, weight) or (dataset, weight)")
            if is_dataset_entry(d):
                if len(d) != 2 or not isinstance(d[1], (int, float)) or not d[1] > 0:
                    raise ConfigError(f"dataset entry {list(d)}: a LeRobot dataset (path or Hub id) takes "
                                      f"(dataset, weight > 0); env ids are {[i for f in families() for i in f.env_ids]}")
            elif len(d) not in (3, 4) or d[1] < 1 or d[2] <= 0 or (len(d) == 4 and not isinstance(d[3], dict)):
                raise ConfigError(f"dataset entry {d}: expected (env id, episodes >= 1, weight > 0[, overrides dict])")
        record = dict(self.record)
        for env_id, *_ in self.env_entries():
            fam = family_for_env(env_id)
            record[fam.name] = record_config_from(fam, record.get(fam.name))
        object.__setattr__(self, "record", record)
        if self.dagger_rounds < 0 or self.dagger_episodes < 1:
            raise ConfigError(f"data.dagger_rounds must be >= 0 and data.dagger_episodes >= 1, "
                              f"got {self.dagger_rounds}, {self.dagger_episodes}")
        if self.val_episodes < 0:
            raise ConfigError(f"data.val_episodes must be >= 0, got {self.val_episodes}")


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
    # the policy drives exactly the bodies its data holds (a fine-tune on whatever dataset is given);
    # a `train.train_head_only` recipe then trains that one body's head
    bodies_from_data: bool = False

    def __post_init__(self):
        bodies = list(dict.fromkeys(self.data.entry_body(e) for e in self.data.datasets))
        pol, train = self.policy, self.train
        if self.bodies_from_data:
            keep = set(bodies)
            pol = dataclasses.replace(pol, embodiments=tuple(bodies),
                                      residual_actions=tuple(e for e in pol.residual_actions if e in keep),
                                      head_types=tuple((e, h) for e, h in pol.head_types if e in keep))
            if train.train_head_only and train.train_head_only not in keep:
                if len(bodies) != 1:
                    raise ConfigError(f"recipe '{self.name}' trains one body's head, but its data holds {bodies}")
                train = dataclasses.replace(train, train_head_only=bodies[0])
        else:  # a dataset of a body the policy lacks adds that body
            missing = tuple(b for b in bodies if b not in pol.embodiments)
            if missing:
                pol = dataclasses.replace(pol, embodiments=pol.embodiments + missing)
        object.__setattr__(self, "policy", pol)
        object.__setattr__(self, "train", train)


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


@RECIPES.register("teacher")
def teacher() -> Recipe:
    """The distillation teacher: `cotrain`'s data at the `tiny` preset (width 256, 6 blocks; 14.5 M
    parameters against the default's 3.9 M), on a shorter schedule (3,000 steps, 4 DAgger rounds
    against cotrain's 4,200 and 6) so that it trains on 2 CPU cores in about half an hour, well
    under an hour. `physai distill --teacher runs/teacher/final` makes it car-sized."""
    base = cotrain()
    return dataclasses.replace(base, name="teacher",
                               policy=policy_config("tiny", embodiments=("car", "g1"), residual_actions=("g1",)),
                               train=dataclasses.replace(base.train, steps=3000),
                               data=dataclasses.replace(base.data, dagger_rounds=4))


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


@RECIPES.register("finetune")
def finetune() -> Recipe:
    """Your robot from your data: a new head (and stem) for the body of `data.datasets` on the frozen
    co-trained trunk, e.g. `--set init_from=runs/cotrain/final --set 'data.datasets=[["path/to/ds", 1.0]]'`
    (a LeRobot dataset; its spec comes from the dataset's metadata). A body with a physai env (an
    expert to relabel with) gets DAgger rounds like `cotrain`: the default, the Booster T1, records
    24 expert episodes and runs 4 rounds of 12 (without them it falls in 10/10 episodes); a
    dataset-only body has no expert, so no rounds."""
    return Recipe(
        name="finetune",
        policy=policy_config("nano", embodiments=("t1",), residual_actions=("t1",)),
        train=TrainConfig(steps=2500, batch_size=64, lr=1e-3, warmup_steps=30, ckpt_every=500,
                          train_head_only="t1", train_stem=True),
        data=DataConfig(datasets=(("physai/t1-walk", 24, 1.0),), dagger_rounds=4, dagger_episodes=12),
        init_from="runs/cotrain/final",
        bodies_from_data=True,
    )


@RECIPES.register("finetune_t1")
def finetune_t1() -> Recipe:
    """A new robot (Booster T1) head on the frozen co-trained trunk: only T1's head (+ stem) trains."""
    return dataclasses.replace(finetune(), name="finetune_t1", eval_env=("physai/t1-walk",))
