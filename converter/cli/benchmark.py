"""`omz-like benchmark`: latency and throughput of PyTorch, ONNX Runtime and each IR."""

from __future__ import annotations

import json
import math
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from converter.benchmark import DEFAULT_SECONDS, run_benchmark
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
from converter.errors import UsageError

PIPE_WIDTH = 120

Seconds = Annotated[
    float,
    typer.Option("--seconds", help="Seconds of timed runs per backend, after 3 warm-up runs. At least 5 runs are timed."),
]


def benchmark(
    model: Model,
    precision: Precision = None,
    seconds: Seconds = DEFAULT_SECONDS,
    as_json: Json = False,
    artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS_DIR,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Measure latency (median, p90) and throughput of MODEL on PyTorch, ONNX Runtime and OpenVINO."""
    configure_logging(verbose=verbose, quiet=quiet)
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"invalid --seconds {seconds}", hint="Give a finite positive number of seconds, for example --seconds 5")
    recipe, layout = open_model(model, artifacts_dir)
    precisions = parse_precisions(precision, recipe)

    document = run_benchmark(recipe, layout, precisions, seconds=seconds)
    if as_json:
        typer.echo(json.dumps(document, indent=2))
        return
    _print_table(document)


def _print_table(document: dict) -> None:
    title = (
        f"{document['model']}: one input of {document['sequence_length']} positions "
        f"({document['tokens']} tokens), single stream, {document['seconds_per_backend']:g} s per backend"
    )
    caption = "runtime: the inference precision requested (default: the runtime's own choice); runs at: the precision the runtime reports"
    table = Table(title=title, caption=caption)
    table.add_column("backend", no_wrap=True)
    table.add_column("runtime", no_wrap=True)
    table.add_column("runs at", no_wrap=True)
    for header in ("runs", "median ms", "p90 ms", "per s", "vs PyTorch"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in document["rows"]:
        table.add_row(
            row["backend"],
            row["runtime_precision"],
            row["inference_precision"],
            str(row["runs"]),
            f"{row['median_ms']:.2f}",
            f"{row['p90_ms']:.2f}",
            f"{row['throughput_per_s']:.1f}",
            f"{row['speedup_vs_pytorch']:.2f}x",
        )
    console = Console(highlight=False)
    if not console.is_terminal:
        # A pipe or file has no width, so rich would assume 80 columns and cut the backend names.
        console.width = PIPE_WIDTH
    console.print(table)
