"""Named entity recognition on plain text with the converted IR, without PyTorch.

The pipeline is: WordPiece tokenization with the checkpoint's vocab.txt,
overlapping windows of `sequence_length - 2` pieces (`converter.windows`),
OpenVINO inference through an `AsyncInferQueue` on a model compiled with
the THROUGHPUT hint, and decoding into entities grouped like transformers'
token-classification pipeline with aggregation_strategy="simple".

Nothing here imports torch or transformers, and a test checks that.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from converter.conversion import RT_INFO_SECTION
from converter.decoding import Entity, entities_from_logits
from converter.errors import ArtifactError, InputTextError, UsageError
from converter.layout import Layout
from converter.recipe import Recipe
from converter.runtime import CompiledIR, compile_ir
from converter.tokenization import Tokens, WordPieceTokenizer
from converter.windows import Window, plan_windows, stitch

log = logging.getLogger(__name__)

# Lines tokenized and queued together. All their windows are in flight at
# once, so the queue stays full, and memory stays bounded on a large file.
BATCH_LINES = 256
VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
# How long `drain` waits for callbacks after every request has finished.
CALLBACK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class LinePrediction:
    """The entities found in one input line."""

    text: str
    entities: list[Entity]

    def to_json(self) -> dict:
        return {"text": self.text, "entities": [entity.to_json() for entity in self.entities]}


@dataclass
class Predictor:
    """A tokenizer, a compiled IR and its labels, ready to run on text."""

    tokenizer: WordPieceTokenizer
    compiled: CompiledIR
    labels: tuple[str, ...]
    sequence_length: int
    precision: str


def default_precision(recipe: Recipe) -> str:
    """Return FP16 when the recipe builds it, else the recipe's first precision."""
    return "FP16" if "FP16" in recipe.precisions else recipe.precisions[0]


def open_predictor(recipe: Recipe, layout: Layout, *, precision: str | None = None, device: str = "CPU", inference_precision: str | None = None) -> Predictor:
    """Load the vocabulary and compile the IR of PRECISION for many parallel requests.

    INFERENCE_PRECISION None keeps OpenVINO's default for DEVICE, which is
    what a deployment gets (bf16 on CPUs that support it).
    """
    precision = _check_precision(recipe, precision)
    check_device(device)
    xml_path = layout.ir_xml(precision)
    if not xml_path.is_file():
        raise ArtifactError(
            xml_path, f"{precision} IR not found", hint=f"Run `omz-like convert {recipe.model_argument}` first"
        )
    tokenizer = _open_tokenizer(recipe, layout)
    compiled = compile_ir(xml_path, device=device, inference_precision=inference_precision, performance_hint="THROUGHPUT")
    labels = read_labels(xml_path, layout.source_dir, num_labels=recipe.num_labels)
    log.info("predicting with %s on %s, inference precision %s", layout.relative(xml_path), device, compiled.inference_precision)
    return Predictor(tokenizer=tokenizer, compiled=compiled, labels=labels, sequence_length=recipe.sequence_length, precision=precision)


def _check_precision(recipe: Recipe, precision: str | None) -> str:
    if precision is None:
        return default_precision(recipe)
    normalized = precision.strip().upper()
    if normalized not in recipe.precisions:
        raise UsageError(
            f"invalid --precision {precision!r} for {recipe.name}",
            hint=f"The recipe builds: {', '.join(recipe.precisions)}",
        )
    return normalized


def check_device(device: str) -> None:
    """Raise a UsageError naming the available devices when OpenVINO has no DEVICE."""
    import openvino as ov

    available = list(ov.Core().available_devices)
    base = device.split(":", 1)[0]
    families = {name.split(".", 1)[0] for name in available}
    if device in available or base in VIRTUAL_DEVICES or base in families:
        return
    raise UsageError(f"invalid --device {device!r}", hint=f"Available devices: {', '.join(available) or 'none'}")


def _open_tokenizer(recipe: Recipe, layout: Layout) -> WordPieceTokenizer:
    vocab = layout.source_dir / "vocab.txt"
    if not vocab.is_file():
        raise ArtifactError(vocab, "vocabulary not found", hint=f"Run `omz-like fetch {recipe.model_argument}` first")
    return WordPieceTokenizer(vocab, lower_case=recipe.lower_case)


# --- labels ---------------------------------------------------------------


def read_labels(xml_path: Path, source_dir: Path, *, num_labels: int) -> tuple[str, ...]:
    """Return the label names: from the IR's runtime info, else from the checkpoint's config.json."""
    labels = _labels_from_rt_info(xml_path)
    origin = f"{xml_path}: rt_info {RT_INFO_SECTION}.labels"
    if labels is None:
        labels = _labels_from_config(source_dir / "config.json")
        origin = str(source_dir / "config.json")
    if labels is None:
        raise ArtifactError(
            xml_path, "no labels in the IR's runtime info nor in the checkpoint's config.json",
            hint="Rebuild the IR with `omz-like convert MODEL --force`",
        )
    if len(labels) != num_labels:
        raise ArtifactError(origin, f"{len(labels)} labels, but the model outputs {num_labels} scores per token")
    return labels


def _labels_from_rt_info(xml_path: Path) -> tuple[str, ...] | None:
    import openvino as ov

    # read_model maps the weights file instead of reading it, so this second
    # read of the IR costs little next to compiling it.
    model = ov.Core().read_model(xml_path)
    if not model.has_rt_info([RT_INFO_SECTION, "labels"]):
        return None
    return parse_label_list(model.get_rt_info([RT_INFO_SECTION, "labels"]).astype(str))


def parse_label_list(value: str) -> tuple[str, ...]:
    """Parse labels stored as a JSON list, a comma list or a space list (OpenVINO's form for a list of strings)."""
    value = value.strip()
    if value.startswith("["):
        return tuple(str(label) for label in json.loads(value))
    separator = "," if "," in value else None
    return tuple(label.strip() for label in value.split(separator) if label.strip())


def _labels_from_config(config_path: Path) -> tuple[str, ...] | None:
    try:
        id2label = json.loads(config_path.read_text(encoding="utf-8"))["id2label"]
        return tuple(id2label[str(index)] for index in range(len(id2label)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --- running --------------------------------------------------------------


@dataclass
class _EncodedLine:
    text: str
    tokens: Tokens
    windows: list[Window]


def predict_lines(predictor: Predictor, lines: Iterable[str], *, on_line_done: Callable[[], None] | None = None, batch_lines: int = BATCH_LINES) -> Iterator[LinePrediction]:
    """Find the entities of every line, in input order, running batches of lines in parallel."""
    runner = _WindowRunner(predictor.compiled)
    try:
        batch: list[str] = []
        for line in lines:
            batch.append(line)
            if len(batch) == batch_lines:
                yield from _predict_batch(predictor, runner, batch, on_line_done)
                batch = []
        if batch:
            yield from _predict_batch(predictor, runner, batch, on_line_done)
    finally:
        runner.drain()


class _WindowRunner:
    """An AsyncInferQueue whose callback stores a copy of each request's output under its userdata.

    With openvino 2026.4.1, destroying an AsyncInferQueue while a Python
    callback still waits for the GIL can deadlock, because the destructor
    holds the GIL while it waits for the request. `drain` waits, with the
    GIL released, until every callback has returned, so dropping the queue
    afterwards is safe.
    """

    def __init__(self, compiled: CompiledIR) -> None:
        import openvino as ov

        # jobs=0 lets OpenVINO pick OPTIMAL_NUMBER_OF_INFER_REQUESTS for the hint.
        self.queue = ov.AsyncInferQueue(compiled.compiled, 0)
        self.queue.set_callback(self._store)
        self.outputs: dict[object, np.ndarray] = {}
        self.started = 0
        self.finished = 0
        self.condition = threading.Condition()

    def _store(self, request, userdata) -> None:
        try:
            output = np.array(request.get_output_tensor(0).data, copy=True)
            with self.condition:
                self.outputs[userdata] = output
        finally:
            with self.condition:
                self.finished += 1
                self.condition.notify_all()

    def start(self, inputs: dict[str, np.ndarray], key: object) -> None:
        self.started += 1
        self.queue.start_async(inputs, userdata=key)

    def drain(self) -> None:
        """Wait until every started request has run its callback."""
        try:
            self.queue.wait_all()
        finally:
            # A failed request skips the Python callback, so the wait is
            # bounded. Once wait_all returns, only callback tails remain.
            with self.condition:
                done = self.condition.wait_for(lambda: self.finished == self.started, timeout=CALLBACK_TIMEOUT_S)
            if not done:
                log.warning("%d of %d inference callbacks did not run", self.started - self.finished, self.started)
            self.started = self.finished = 0

    def take(self) -> dict[object, np.ndarray]:
        outputs, self.outputs = self.outputs, {}
        return outputs


def _predict_batch(predictor: Predictor, runner: _WindowRunner, batch: Sequence[str], on_line_done: Callable[[], None] | None) -> Iterator[LinePrediction]:
    encoded = [_encode(predictor, text) for text in batch]
    for line_index, line in enumerate(encoded):
        for window_index, window in enumerate(line.windows):
            inputs = _window_inputs(predictor, line.tokens.ids[window.start : window.end])
            runner.start(inputs, (line_index, window_index))
    runner.drain()
    outputs = runner.take()

    for line_index, line in enumerate(encoded):
        line_outputs = [outputs.get((line_index, k)) for k in range(len(line.windows))]
        yield LinePrediction(text=line.text, entities=_decode_line(predictor, line, line_outputs))
        if on_line_done is not None:
            on_line_done()


def _encode(predictor: Predictor, text: str) -> _EncodedLine:
    tokens = predictor.tokenizer.tokenize(text)
    windows = plan_windows(len(tokens.ids), predictor.sequence_length)
    return _EncodedLine(text=text, tokens=tokens, windows=windows)


def _window_inputs(predictor: Predictor, ids: list[int]) -> dict[str, np.ndarray]:
    packed = predictor.tokenizer.pack(ids, predictor.sequence_length)
    inputs = {}
    for port in predictor.compiled.compiled.inputs:
        name = port.get_any_name()
        inputs[name] = packed[name].astype(port.get_element_type().to_dtype(), copy=False)
    return inputs


def _decode_line(predictor: Predictor, line: _EncodedLine, outputs: list[np.ndarray | None]) -> list[Entity]:
    if not line.windows:
        return []
    missing = [index for index, output in enumerate(outputs) if output is None]
    if missing:
        raise ArtifactError(predictor.compiled.xml_path, f"no output for windows {missing} of a line")
    logits = stitch(line.windows, outputs)
    return entities_from_logits(line.text, line.tokens.offsets, logits, predictor.labels)


# --- input ----------------------------------------------------------------


def iter_input_lines(source: str) -> Iterator[str]:
    """Yield the lines of the UTF-8 file SOURCE ("-" for stdin), without line endings.

    A blank line is kept, so line N of the output always belongs to line N
    of the input. A byte sequence that is not UTF-8 raises InputTextError
    with its byte offset from the start of the input.
    """
    if source == "-":
        yield from _decode_lines(sys.stdin.buffer, "stdin")
        return
    try:
        handle = open(source, "rb")
    except OSError as error:
        raise InputTextError(
            f"{source}: cannot read the file ({error.strerror})", hint="Pass an existing text file to --input, or - for stdin"
        ) from None
    with handle:
        yield from _decode_lines(handle, source)


def _decode_lines(handle: BinaryIO, shown: str) -> Iterator[str]:
    offset = 0
    for number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputTextError(
                f"{shown}: invalid UTF-8 at byte offset {offset + error.start} (line {number})",
                hint="Convert the text to UTF-8, for example with `iconv -t UTF-8`",
            ) from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        offset += len(raw)
        yield line.removesuffix("\n").removesuffix("\r")


def count_lines(source: str) -> int | None:
    """Count the lines of the file SOURCE for a progress bar; None for stdin or an unreadable file."""
    if source == "-":
        return None
    count = 0
    last = b"\n"
    try:
        with open(source, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                count += chunk.count(b"\n")
                last = chunk[-1:]
    except OSError:
        return None
    return count + (last != b"\n")
