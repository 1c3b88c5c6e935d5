"""`omz-like list`: the bundled recipes."""

from __future__ import annotations

import json

import typer

from converter.cli.options import Json
from converter.recipe import bundled_recipe_names, load_recipe


def list_recipes(as_json: Json = False) -> None:
    """List the bundled recipes: name, task and precisions, one a line."""
    recipes = [load_recipe(name) for name in bundled_recipe_names()]
    if as_json:
        rows = [{"name": r.name, "task": r.task, "precisions": list(r.precisions)} for r in recipes]
        typer.echo(json.dumps(rows, indent=2))
        return
    width = max((len(r.name) for r in recipes), default=0)
    for recipe in recipes:
        typer.echo(f"{recipe.name:<{width}}  {recipe.task}  {','.join(recipe.precisions)}")
