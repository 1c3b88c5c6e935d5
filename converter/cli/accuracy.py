"""`omz-like accuracy`: entity F1 of each backend on a CoNLL-2003-format file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from converter.accuracy import BACKENDS, REFERENCE_BACKEND, evaluate, parse_backends
from converter.cli.options import (
    DEFAULT_ARTIFACTS_DIR,
    ArtifactsDir,
    Json,
    Model,
    Quiet,
    RuntimePrecision,
    RuntimePrecisionOption,
    Verbose,
    configure_logging,
    open_model,
)
from converter.conll import read_conll



Dataset = Annotated[
    Path,
    typer.Option("--dataset", help="CoNLL-2003-format file: one `word [POS chunk] tag` line per token, blank lines between sentences.", show_default=False),
]
Backend = Annotated[
    list[str] | None,
    typer.Option(
        "--backend",
        "-b",
        help=f"Backends to score: {', '.join(BACKENDS)}, as a comma list or a repeated option. Default: torch, onnx and the recipe's precisions.",
        show_default=False,
    ),
]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="Score only the first N sentences.", show_default=False)]


def accuracy(
    model: Model,
    dataset: Dataset,
    backend: Backend = None,
    limit: Limit = None,
    runtime_precision: RuntimePrecisionOption = RuntimePrecision.f32,
    artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS_DIR,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Score MODEL's backends on a CoNLL file: entity precision, recall and F1, macro F1 and token accuracy."""
    configure_logging(verbose=verbose, quiet=quiet)
    recipe, layout = open_model(model, artifacts_dir)
    backends = parse_backends(backend, recipe)
    data = read_conll(dataset)

    report = evaluate(
        data, recipe, layout, backends,
        runtime_precision=runtime_precision.value, limit=limit, show_progress=sys.stderr.isatty(),
    )
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo("\n".join(format_report(report)))


def format_report(report: dict) -> list[str]:
    """Render the report as text: a summary, one row per backend, then F1 per entity type, all in percent."""
    lines = [
        f"model:    {report['model']}",
        f"dataset:  {report['dataset']}",
        f"sentences {report['sentences']}, words {report['words']} ({report['words_without_pieces']} without word pieces, "
        f"labelled O), windows {report['windows']} of {report['sequence_length']} positions",
        f"scheme:   gold tags {report['scheme']}, scored like conlleval (an I- tag after O opens an entity)",
        "",
    ]
    lines += _backend_table(report["backends"])
    lines.append("")
    lines += _type_table(report["backends"])
    return lines


_COLUMNS = (("precision", "precision"), ("recall", "recall"), ("f1", "F1"), ("macro_f1", "macro F1"), ("token_accuracy", "token acc"))


def _backend_table(backends: dict) -> list[str]:
    has_reference = REFERENCE_BACKEND in backends
    header = f"{'backend':<8} {'runtime':<8}" + "".join(f" {title:>9}" for _, title in _COLUMNS)
    if has_reference:
        header += "".join(f" {'Δ ' + title:>11}" for key, title in _COLUMNS if key in ("f1", "macro_f1", "token_accuracy"))
    rows = [header]
    for name, entry in backends.items():
        row = f"{name:<8} {entry['runtime_precision'] or '-':<8}" + "".join(f" {100 * entry[key]:>9.2f}" for key, _ in _COLUMNS)
        if has_reference:
            difference = entry["difference_to_torch"]
            row += "".join(f" {100 * difference[key]:>+11.2f}" for key in ("f1", "macro_f1", "token_accuracy"))
        rows.append(row)
    return rows


def _type_table(backends: dict) -> list[str]:
    types = sorted({kind for entry in backends.values() for kind in entry["per_type"]})
    rows = [f"{'F1 by type':<10} {'support':>7}" + "".join(f" {name:>9}" for name in backends)]
    for kind in types:
        support = next((e["per_type"][kind]["support"] for e in backends.values() if kind in e["per_type"]), 0)
        cells = "".join(f" {_percent(entry['per_type'].get(kind)):>9}" for entry in backends.values())
        rows.append(f"{kind:<10} {support:>7}" + cells)
    return rows


def _percent(type_scores: dict | None) -> str:
    return "-" if type_scores is None else f"{100 * type_scores['f1']:.2f}"
