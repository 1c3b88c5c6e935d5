"""`omz-like convert`: OpenVINO IR in FP32 and FP16 from the ONNX model."""

from __future__ import annotations

import json
import logging

import typer

from converter.cli.export import DryRun, Force
from converter.cli.options import (
    DEFAULT_ARTIFACTS_DIR,
    ArtifactsDir,
    Json,
    Model,
    Precision,
    Quiet,
    Verbose,
    configure_logging,
    open_model,
    parse_precisions,
)
from converter.conversion import check_ir, convert_ir, ir_is_current
from converter.export import onnx_is_stale, resolve_source
from converter.files import model_lock

log = logging.getLogger(__name__)


def convert(
    model: Model,
    precision: Precision = None,
    artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS_DIR,
    force: Force = False,
    dry_run: DryRun = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Convert MODEL's ONNX file to OpenVINO IR, exporting it first when it is missing or stale.

    --force rebuilds the IR. The ONNX file is rebuilt only when it is older than its inputs.
    """
    configure_logging(verbose=verbose, quiet=quiet)
    recipe, layout = open_model(model, artifacts_dir)
    precisions = parse_precisions(precision, recipe)

    if dry_run:
        record = resolve_source(recipe, layout, dry_run=True)
        written = convert_ir(recipe, layout, precisions, source_record=record, dry_run=True)
        results = {p: ("dry-run", path) for p, path in written.items()}
    else:
        with model_lock(layout.lock_file):
            record = resolve_source(recipe, layout)
            results = _convert_stale(recipe, layout, precisions, record, force=force)

    if as_json:
        document = {"model": recipe.name, "ir": {p: {"status": s, "xml": str(x)} for p, (s, x) in results.items()}}
        typer.echo(json.dumps(document, indent=2))
        return
    for name, (status, xml_path) in results.items():
        typer.echo(f"{name}  {status}: {xml_path}")


def _convert_stale(recipe, layout, precisions, record, *, force: bool) -> dict[str, tuple[str, object]]:
    """Convert the precisions whose IR is missing or older than the ONNX file, and check the others."""
    stale_onnx = onnx_is_stale(recipe, layout)
    todo = tuple(p for p in precisions if force or stale_onnx or not ir_is_current(layout, p))
    results = {}
    for precision in precisions:
        if precision not in todo:
            check_ir(recipe, layout.ir_xml(precision))
            log.info("convert: %s is newer than the ONNX file, skipped (use --force to rebuild)", layout.ir_xml(precision))
            results[precision] = ("up to date", layout.ir_xml(precision))
    if todo:
        written = convert_ir(recipe, layout, todo, source_record=record)
        results.update({p: ("converted", path) for p, path in written.items()})
    return {p: results[p] for p in precisions}
