"""`omz-like build`: fetch, export, convert and parity, incremental and reproducible."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from converter.build import build as run_build
from converter.cli.options import (
    DEFAULT_ARTIFACTS_DIR,
    ArtifactsDir,
    Json,
    Model,
    Precision,
    Quiet,
    Verbose,
    configure_logging,
    parse_precisions,
)
from converter.errors import ParityError
from converter.manifest import pinned_versions, tool_versions, version_drift
from converter.parity_inputs import FULL, QUICK
from converter.recipe import load_recipe

log = logging.getLogger(__name__)


def build(
    model: Model,
    precision: Precision = None,
    artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS_DIR,
    force: Annotated[bool, typer.Option("--force", help="Rerun every stage, even those that are up to date.")] = False,
    revision: Annotated[str | None, typer.Option(help="Fetch this branch, tag or commit instead of the recipe's revision.")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Fetch only from the Hugging Face cache.")] = False,
    full_parity: Annotated[
        bool,
        typer.Option(
            "--full-parity",
            help="Check parity on all 67 inputs (63 corpus sentences, 4 edge inputs) instead of the quick 8; on bert-base this adds about a minute on 2 cores.",
        ),
    ] = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Build MODEL: fetch, export to ONNX, convert to IR and check parity; write manifest.json."""
    configure_logging(verbose=verbose, quiet=quiet)
    recipe = load_recipe(model)
    precisions = parse_precisions(precision, recipe)
    for line in version_drift(tool_versions(), pinned_versions()):
        log.warning("warning: %s differs from constraints.txt; artifacts may not be byte-identical to a pinned build", line)

    parity_inputs = FULL if full_parity else QUICK
    try:
        result = run_build(recipe, artifacts_dir, precisions, force=force, revision=revision, offline=offline, parity_inputs=parity_inputs)
    except ParityError as error:
        if as_json:
            # CI reads stdout, so a failed check still prints a document. The error line goes to stderr.
            document = {"model": recipe.name, "ok": False, "error": error.message, "parity": getattr(error, "verdicts", {}), "parity_inputs": getattr(error, "parity_inputs", None)}
            typer.echo(json.dumps(document, indent=2))
        raise

    if as_json:
        stages = [{"stage": s.name, "ran": s.ran, "seconds": round(s.seconds, 3)} for s in result.stages]
        document = {
            "model": recipe.name,
            "ok": True,
            "path": str(result.layout.root),
            "stages": stages,
            "parity_inputs": result.manifest.get("parity_inputs"),
        }
        typer.echo(json.dumps(document, indent=2))
        return
    state = "up to date" if result.up_to_date else "built"
    typer.echo(f"{recipe.name}: {state} in {result.layout.root} (manifest: {result.layout.manifest})")
