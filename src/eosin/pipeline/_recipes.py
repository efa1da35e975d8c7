"""Recipes shipped with the package: ready run configurations for the common jobs (``eosin run RECIPE``)."""

from __future__ import annotations

__all__ = ["RECIPES", "list_recipes", "recipe_text"]

#: recipe name -> what it does
RECIPES = {
    "tile-classifier": "a tile classifier on a folder of slides: tile predictions, heatmaps, report",
    "nuclei-segmentation": "nuclei segmentation on a folder of slides: masks, instances, GeoJSON, report",
}


def list_recipes() -> dict[str, str]:
    """The shipped recipes: name -> one line on what it does."""
    return dict(RECIPES)


def recipe_text(name: str) -> str:
    """The YAML text of a shipped recipe (comments included)."""
    from importlib.resources import files

    from eosin.errors import UnknownNameError

    if name not in RECIPES:
        raise UnknownNameError("recipe", name, RECIPES, fix="see eosin.pipeline.list_recipes()")
    return files("eosin.pipeline").joinpath("recipes", f"{name}.yaml").read_text(encoding="utf-8")
