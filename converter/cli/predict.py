"""`omz-like predict`: named entities in text, found with the converted IR."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

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
from converter.decoding import Entity
from converter.errors import InputTextError, UsageError
from converter.predict import LinePrediction, count_lines, iter_input_lines, open_predictor, predict_lines

Texts = Annotated[list[str] | None, typer.Argument(help="Text to analyse; each argument is one input line.", show_default=False)]
InputFile = Annotated[
    str | None,
    typer.Option("--input", "-i", help="UTF-8 text file to analyse line by line, or - for stdin.", show_default=False),
]
PredictPrecision = Annotated[
    str | None,
    typer.Option("--precision", "-p", help="IR precision to run: FP32 or FP16. Default: FP16 when the recipe builds it.", show_default=False),
]
Device = Annotated[str, typer.Option("--device", "-d", help="OpenVINO device, such as CPU, GPU or AUTO.")]


def predict(
    model: Model,
    texts: Texts = None,
    input_file: InputFile = None,
    precision: PredictPrecision = None,
    device: Device = "CPU",
    runtime_precision: RuntimePrecisionOption = RuntimePrecision.default,
    artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS_DIR,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Find named entities in TEXT or in the lines of --input with MODEL's OpenVINO IR."""
    configure_logging(verbose=verbose, quiet=quiet)
    lines = _input_lines(texts, input_file)
    recipe, layout = open_model(model, artifacts_dir)
    predictor = open_predictor(
        recipe, layout, precision=precision, device=device,
        inference_precision=None if runtime_precision == RuntimePrecision.default else runtime_precision.value,
    )

    total = count_lines(input_file) if input_file is not None else len(lines)
    show_progress = input_file is not None and sys.stderr.isatty()
    with _ProgressBar(total, enabled=show_progress) as advance:
        predictions = predict_lines(predictor, lines, on_line_done=advance)
        if as_json:
            count = _print_json(predictions)
        else:
            count = _print_human(predictions)
    if count == 0:
        raise InputTextError(f"{input_file if input_file != '-' else 'stdin'}: no text to analyse", hint="Pass a file with at least one line")


def _input_lines(texts: list[str] | None, input_file: str | None) -> Iterable[str]:
    if texts and input_file is not None:
        raise UsageError("pass TEXT or --input, not both", hint="Put the text in the file, or drop --input")
    if input_file is not None:
        return iter_input_lines(input_file)
    if not texts:
        raise UsageError("no text to analyse", hint="Pass TEXT arguments or --input FILE (- for stdin)")
    for index, text in enumerate(texts, start=1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # Python keeps undecodable argv bytes as lone surrogates.
            raise UsageError(f"TEXT argument {index} is not valid UTF-8", hint="Pass UTF-8 text, or a file with --input") from None
        if not text.strip():
            raise UsageError(f"TEXT argument {index} is empty or only whitespace", hint="Pass text that contains words")
    return texts


class _ProgressBar:
    """A rich progress bar on stderr that counts lines; it prints nothing when disabled."""

    def __init__(self, total: int | None, *, enabled: bool) -> None:
        columns = (TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        self.bar = Progress(*columns, console=Console(stderr=True), disable=not enabled, transient=True)
        self.task = self.bar.add_task("predict", total=total)

    def __enter__(self):
        self.bar.start()
        return lambda: self.bar.advance(self.task)

    def __exit__(self, *exc_info) -> None:
        self.bar.stop()


def _print_json(predictions: Iterator[LinePrediction]) -> int:
    count = 0
    for prediction in predictions:
        typer.echo(json.dumps(prediction.to_json(), ensure_ascii=False))
        count += 1
    return count


def _print_human(predictions: Iterator[LinePrediction]) -> int:
    table = Table("line", "type", "text", "score", "start", "end")
    count = 0
    for count, prediction in enumerate(predictions, start=1):
        typer.echo(mark_entities(prediction.text, prediction.entities))
        for entity in prediction.entities:
            table.add_row(str(count), entity.type, entity.text, f"{entity.score:.4f}", str(entity.start), str(entity.end))
    if table.row_count:
        typer.echo()
        Console(highlight=False, soft_wrap=False).print(table)
    return count


def mark_entities(text: str, entities: list[Entity]) -> str:
    """Return TEXT with each entity written as `[text](TYPE score)`, such as `[Paris](LOC 0.99)`."""
    parts = []
    position = 0
    for entity in entities:
        parts.append(text[position : entity.start])
        parts.append(f"[{entity.text}]({entity.type} {entity.score:.2f})")
        position = entity.end
    parts.append(text[position:])
    return "".join(parts)
