"""`omz-like export`: the checkpoint as a fixed-shape ONNX model, checked against PyTorch."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from converter.cli.options import DEFAULT_ARTIFACTS_DIR, ArtifactsDir, Json, Model, Quiet, Verbose, configure_logging, open_model
from converter.export import export_onnx, onnx_artifact_files, onnx_is_stale, resolve_source
from converter.files import model_lock

log = logging.getLogger(__name__)

Force = Annotated[bool, typer.Option("--force", help="Rebuild even when the output is newer than its inputs.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the steps and their parameters, and write nothing.")]


def export(
    model: Model,
    artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS_DIR,
    force: Force = False,
    dry_run: DryRun = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Export MODEL's checkpoint to ONNX, fetching it first when source/ is missing."""
    configure_logging(verbose=verbose, quiet=quiet)
    recipe, layout = open_model(model, artifacts_dir)

    if dry_run:
        record = resolve_source(recipe, layout, dry_run=True)
        export_onnx(recipe, layout, source_record=record, dry_run=True)
        files, status = [layout.onnx_path], "dry-run"
    else:
        with model_lock(layout.lock_file):
            record = resolve_source(recipe, layout)
            if force or onnx_is_stale(recipe, layout):
                export_onnx(recipe, layout, source_record=record)
                status = "exported"
            else:
                log.info("export: %s is newer than its inputs, skipped (use --force to rebuild)", layout.onnx_path)
                status = "up to date"
            files = onnx_artifact_files(layout.onnx_path)

    if as_json:
        typer.echo(json.dumps({"model": recipe.name, "status": status, "files": [str(f) for f in files]}, indent=2))
        return
    for path in files:
        typer.echo(f"{status}: {path}")
