"""RL post-training and flywheel recipes: which env, which reward model and which PPO settings
(`physai rl`); `flywheel_car` is a `physai.flywheel.FlywheelRecipe` (`physai flywheel`).

`RLRecipe.rl` is a `PPOConfig` (`--set rl.lr=1e-4`); `weights` overrides reward term weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from physai.recipes import RECIPES
from physai.rl.ppo import PPOConfig


@dataclass(frozen=True)
class RLRecipe:
    name: str
    env: str  # the gymnasium id roll-outs play (its body family picks the embodiment)
    reward: str = ""  # a `physai.rl.reward.REWARDS` name ("" = the family's default_reward)
    weights: tuple[tuple[str, float], ...] = ()  # reward term weight overrides
    # env options of the training episodes (car: highway-env config such as vehicles_density)
    options: tuple[tuple[str, float | int | str], ...] = ()
    rl: PPOConfig = PPOConfig()


@RECIPES.register("rl_car")
def rl_car() -> RLRecipe:
    """The car on dense highway traffic with the additive car reward, the head only, guard on."""
    return RLRecipe("rl_car", "physai/car-highway", "car",
                    options=(("vehicles_density", 2.0), ("lanes_count", 4)),  # the car-dense suite's traffic
                    rl=PPOConfig(iterations=15, episodes=8, seconds=30.0, slots=2, lr=3e-5, init_std=0.05, anchor="kl",
                                 anchor_coef=0.02, minibatch=200))


@RECIPES.register("rl_car_carl")
def rl_car_carl() -> RLRecipe:
    """As rl_car, with the multiplicative (CaRL) composition."""
    return dataclasses.replace(rl_car(), name="rl_car_carl", reward="car-carl")


@RECIPES.register("rl_g1")
def rl_g1() -> RLRecipe:
    """G1 walking with random commands and the humanoid reward (episodes of 20 s)."""
    return RLRecipe("rl_g1", "physai/g1-walk", "humanoid",
                    rl=PPOConfig(iterations=10, episodes=4, seconds=20.0, slots=2, lr=2e-5, init_std=0.03,
                                 anchor="kl", anchor_coef=0.05, minibatch=500))


@RECIPES.register("flywheel_car")
def flywheel_car():
    """The data flywheel on the car in the dense suite's traffic: 2 rounds of 12 roll-outs, hard cases
    mined (and a uniform arm adding as many frames), 400 fine-tuning steps of the `sft` recipe per
    round, evaluated on the held-out `car-dense` suite."""
    from physai.flywheel import FlywheelRecipe

    return FlywheelRecipe("flywheel_car", retrain="sft", env="physai/car-highway",
                          options=(("vehicles_density", 2.0), ("lanes_count", 4)))
