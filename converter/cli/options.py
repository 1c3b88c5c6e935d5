"""Options shared by several commands, defined once."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from converter.errors import UsageError
from converter.layout import Layout
from converter.logs import log_to_stderr
from converter.recipe import PRECISIONS, Recipe, load_recipe

Model = Annotated[
    str,
    typer.Argument(help="Name of a bundled recipe (see `omz-like list`) or path to a recipe YAML file.", show_default=False),
]
ArtifactsDir = Annotated[
    Path,
    typer.Option(
        "--artifacts-dir",
        envvar="OMZ_LIKE_ARTIFACTS_DIR",
        help="Folder that receives <dir>/<model name>/... artifacts.",
        file_okay=False,
    ),
]
Precision = Annotated[
    list[str] | None,
    typer.Option(
        "--precision",
        "-p",
        help="IR precision: FP32, FP16, or both as a comma list or a repeated option. Default: the recipe's precisions.",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only warnings and errors on stderr.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Print debug details on stderr.")]
DEFAULT_ARTIFACTS_DIR = Path("artifacts")


class RuntimePrecision(str, Enum):
    """OpenVINO inference precision: pinned to f32, or the device's default."""

    f32 = "f32"
    default = "default"


RuntimePrecisionOption = Annotated[
    RuntimePrecision,
    typer.Option(
        "--runtime-precision",
        help="OpenVINO inference precision: f32 measures the conversion alone, default keeps the device's choice (bf16 on CPUs that support it).",
    ),
]


def open_model(model: str, artifacts_dir: Path) -> tuple[Recipe, Layout]:
    """Load the recipe MODEL and the artifact layout it gets under ARTIFACTS_DIR."""
    recipe = load_recipe(model)
    return recipe, Layout.for_recipe(recipe, artifacts_dir)


def parse_precisions(values: list[str] | None, recipe: Recipe) -> tuple[str, ...]:
    """Normalise --precision values (comma lists, repeats, any case) in recipe order."""
    if not values:
        return recipe.precisions

    requested = []
    for value in values:
        for part in value.split(","):
            precision = part.strip().upper()
            if precision not in PRECISIONS:
                raise UsageError(
                    f"invalid --precision {part.strip()!r}", hint=f"Valid values: {', '.join(PRECISIONS)}"
                )
            if precision not in requested:
                requested.append(precision)
    return tuple(p for p in PRECISIONS if p in requested)


def configure_logging(*, verbose: bool = False, quiet: bool = False) -> None:
    """Send the package's log records to stderr at the level the flags ask for."""
    if verbose and quiet:
        raise UsageError("--verbose and --quiet exclude each other", hint="Pass only one of them")
    level = logging.INFO
    if verbose:
        level = logging.DEBUG
    elif quiet:
        level = logging.WARNING
    log_to_stderr(level)
