"""`omz-like parity`: prove each artifact against PyTorch, exiting 1 when any check fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from converter.cli.options import (
    RuntimePrecision,
    RuntimePrecisionOption,
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
from converter.errors import ParityError, UsageError
from converter.files import check_writable, model_lock



def parity(
    model: Model,
    precision: Precision = None,
    artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS_DIR,
    text_file: Annotated[
        Path | None,
        typer.Option("--text-file", help="UTF-8 file of extra sentences to check, one a line.", dir_okay=False, show_default=False),
    ] = None,
    save_inputs: Annotated[
        Path | None,
        typer.Option("--save-inputs", help="Write the exact input tensors and texts to this .npz file.", dir_okay=False, show_default=False),
    ] = None,
    runtime_precision: RuntimePrecisionOption = RuntimePrecision.f32,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Draw the distribution of absolute logit differences per backend into this PNG file.", dir_okay=False, show_default=False),
    ] = None,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Compare the ONNX model and each IR precision with the PyTorch checkpoint on a shipped corpus and edge inputs."""
    configure_logging(verbose=verbose, quiet=quiet)
    recipe, layout = open_model(model, artifacts_dir)
    precisions = parse_precisions(precision, recipe)

    from converter.parity import measure_parity, require_artifacts, verdict
    from converter.parity_inputs import read_text_file
    from converter.parity_report import describe_failure, print_table, write_plot

    if plot is not None:
        _check_plot_target(plot)
    # Missing artifacts are reported before the lock, which would create the artifacts folder.
    require_artifacts(recipe, layout, precisions)
    check_writable(layout.parity_check_report)

    extra_texts = read_text_file(text_file) if text_file is not None else []
    # The lock keeps a build from swapping the artifacts while they are compared.
    with model_lock(layout.lock_file):
        result = measure_parity(
            recipe,
            layout,
            precisions,
            runtime_precision=runtime_precision.value,
            extra_texts=extra_texts,
            save_inputs=save_inputs,
            report_path=layout.parity_check_report,
        )
    report = result.report

    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        console = Console(highlight=False)
        if not console.is_terminal:
            # Rich assumes 80 columns when stdout is a pipe, which wraps every metric name.
            console.width = 120
        print_table(report, console)
    if plot is not None:
        write_plot(plot, result.differences, title=f"{recipe.name}: logits against PyTorch")
    if not verdict(report):
        raise ParityError(describe_failure(report), hint=f"See {layout.parity_check_report} for every metric")


def _check_plot_target(plot: Path) -> None:
    """Fail before the comparison runs when --plot cannot be written."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed", hint="Install it with `pip install 'omz-like[plot]'`") from None
    if not Path(plot).parent.is_dir():
        raise UsageError(f"--plot {plot}: folder {Path(plot).parent} not found", hint="Create the folder or choose another path")
