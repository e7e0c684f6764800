"""Named recipes (seglib.recipes): every parameter they set is one the notebooks take, and the command line wins."""

import papermill
import pytest

from seglib import models
from seglib.env import NOTEBOOK_DIR
from seglib.notebooks import NOTEBOOKS
from seglib.recipes import RECIPES, recipe_parameters


def notebook_parameters():
    return {name for notebook in NOTEBOOKS for name in papermill.inspect_notebook(NOTEBOOK_DIR / notebook)}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipes_set_only_notebook_parameters(recipe):
    unknown = set(RECIPES[recipe]) - notebook_parameters()
    assert not unknown, f"{recipe} sets parameters no notebook has: {unknown}"
    parameters = RECIPES[recipe]
    if parameters.get("ARCHITECTURE"):
        assert parameters["ARCHITECTURE"] in models.ARCHITECTURES
        assert parameters["IMG_SIZE"] % models.ENCODER_STRIDE == 0


def test_the_command_line_wins_over_the_recipe():
    parameters = recipe_parameters("tgs_gpu", {"FOLDS": 2, "SEED": 3})
    assert parameters["FOLDS"] == 2 and parameters["SEED"] == 3 and parameters["LOSS"] == "bce_dice"
    assert recipe_parameters("tgs_cpu") == {}
    with pytest.raises(ValueError, match="unknown recipe 'tgs_tpu'"):
        recipe_parameters("tgs_tpu")


@pytest.mark.parametrize("text, value", [
    ("5", 5), ("1e-3", 1e-3), ("None", None), ("hflip", "hflip"), ("../data/tgs", "../data/tgs"),
    ('{"batch_norm": True, "base_filters": 8}', {"batch_norm": True, "base_filters": 8}),
    ('{"batch_norm": true, "dropout": null}', {"batch_norm": True, "dropout": None}),  # JSON, as users write it
    ('["hflip", "rotate_zoom"]', ["hflip", "rotate_zoom"]),
])
def test_command_line_values_are_python_literals_or_json(text, value):
    from seglib.__main__ import parse_value

    assert parse_value(text) == value
