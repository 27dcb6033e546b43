"""Training recipes as plain Python functions returning a config; found by name in `RECIPES`.

`get_recipe(name)` suggests close names on a typo. Recipes register on import of this package.
"""

from physai.registry import Registry

RECIPES: Registry = Registry("recipe")


def get_recipe(name: str):
    return RECIPES.get(name)


from physai.recipes import core  # noqa: E402,F401  (registers the built-in recipes)
from physai.recipes import rl as _rl  # noqa: E402,F401  (registers the RL recipes)
from physai.recipes.core import DataConfig, Recipe  # noqa: E402

__all__ = ["RECIPES", "get_recipe", "DataConfig", "Recipe"]
