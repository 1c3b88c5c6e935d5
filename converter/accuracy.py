"""Entity-level accuracy of each backend on CoNLL data, scored with seqeval.

Every sentence is tokenized once from its given words. All backends then
run over the same model inputs, so their scores differ only by what the
backends compute. A word takes the label of its first word piece. A sentence longer
than one model input is split into the same overlapping windows that
`predict` uses (`converter.windows`). A word that yields no word piece is
labelled O and still counts.

Scores follow conlleval and seqeval's default mode: an I- tag after O or
after another type opens an entity, so IOB1 and IOB2 gold tags give the
same entities. The macro F1 is the mean of the per-type F1 values, the
figure Open Model Zoo's accuracy checker reports as ner_f_score.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from converter.conll import Dataset, to_iob2
from converter.errors import ArtifactError, DatasetError, UsageError
from converter.layout import Layout
from converter.recipe import PRECISIONS, Recipe
from converter.tokenization import WordPieceTokenizer
from converter.windows import Window, plan_windows, stitch

log = logging.getLogger(__name__)

REFERENCE_BACKEND = "torch"
BACKENDS = (REFERENCE_BACKEND, "onnx", *PRECISIONS)
OUTSIDE = "O"
SCORE_NAMES = ("precision", "recall", "f1", "macro_f1", "token_accuracy")


# --- scoring --------------------------------------------------------------


@dataclass(frozen=True)
class TypeScores:
    """Precision, recall and F1 of one entity type, with its number of gold entities."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Scores:
    """Micro-averaged entity scores, macro F1, token accuracy and the scores of each entity type."""

    precision: float
    recall: float
    f1: float
    macro_f1: float
    token_accuracy: float
    support: int
    per_type: dict[str, TypeScores] = field(default_factory=dict)

    def as_dict(self) -> dict:
        document = {name: getattr(self, name) for name in SCORE_NAMES}
        document["support"] = self.support
        document["per_type"] = {name: vars(scores).copy() for name, scores in self.per_type.items()}
        return document


def score(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> Scores:
    """Score PREDICTED tag sequences against GOLD, one sequence per sentence.

    Token accuracy compares tags after rewriting both sides to IOB2, so a
    correct prediction of an entity that IOB1 gold opens with I- counts as
    correct. The entity scores do not depend on that rewrite.
    """
    from seqeval.metrics import accuracy_score, classification_report

    gold = [list(tags) for tags in gold]
    predicted = [list(tags) for tags in predicted]
    with warnings.catch_warnings():
        # With no entity at all, seqeval's macro average is the mean of an
        # empty array, so numpy warns. The value is replaced below.
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    averages = ("micro avg", "macro avg", "weighted avg")
    per_type = {
        name: TypeScores(float(row["precision"]), float(row["recall"]), float(row["f1-score"]), int(row["support"]))
        for name, row in sorted(report.items())
        if name not in averages
    }
    micro = report["micro avg"]
    # The mean over per_type equals seqeval's "macro avg", which is NaN when no entity occurs.
    macro_f1 = float(np.mean([s.f1 for s in per_type.values()])) if per_type else 0.0
    token_accuracy = accuracy_score([to_iob2(t) for t in gold], [to_iob2(t) for t in predicted])
    return Scores(
        precision=float(micro["precision"]),
        recall=float(micro["recall"]),
        f1=float(micro["f1-score"]),
        macro_f1=macro_f1,
        token_accuracy=float(token_accuracy),
        support=int(micro["support"]),
        per_type=per_type,
    )


def check_gold_labels(dataset: Dataset, labels: Sequence[str]) -> None:
    """Raise DatasetError on the first gold tag that is not one of the checkpoint's LABELS."""
    known = set(labels)
    for sentence in dataset.sentences:
        for tag, line in zip(sentence.tags, sentence.lines):
            if tag not in known:
                raise DatasetError(
                    dataset.path, line, f"tag {tag!r} is not a label of the checkpoint",
                    hint=f"The checkpoint's labels (config.json id2label) are {', '.join(labels)}",
                )


# --- tokenization ---------------------------------------------------------


@dataclass(frozen=True)
class EncodedSentence:
    """Word pieces of one sentence, the window plan over them, and each word's first piece (None: no piece)."""

    ids: list[int]
    first_pieces: list[int | None]
    windows: list[Window]


def encode_sentence(words: Sequence[str], tokenizer: WordPieceTokenizer, *, sequence_length: int) -> EncodedSentence:
    """Tokenize the given WORDS and plan the model windows over their pieces."""
    tokens = tokenizer.tokenize_words(list(words))
    first_pieces: list[int | None] = [None] * len(words)
    for piece, word in enumerate(tokens.word_ids):
        if first_pieces[word] is None:
            first_pieces[word] = piece
    windows = plan_windows(len(tokens.ids), sequence_length)
    return EncodedSentence(ids=tokens.ids, first_pieces=first_pieces, windows=windows)


def word_labels(encoded: EncodedSentence, piece_logits: np.ndarray | None, labels: Sequence[str]) -> list[str]:
    """Label each word with the best class of its first piece, or O when the word has no piece."""
    best = piece_logits.argmax(axis=-1) if piece_logits is not None else None
    return [OUTSIDE if piece is None else labels[int(best[piece])] for piece in encoded.first_pieces]


# --- backends -------------------------------------------------------------

Infer = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class Backend:
    """A loaded backend: its name, the function that maps packed inputs to logits, and what it ran at."""

    name: str
    infer: Infer
    runtime_precision: str | None = None


def parse_backends(values: Sequence[str] | None, recipe: Recipe) -> tuple[str, ...]:
    """Normalise --backend values (comma lists, repeats, any case) into BACKENDS order.

    The default is torch, onnx and every precision the recipe builds.
    """
    if not values:
        return (REFERENCE_BACKEND, "onnx", *recipe.precisions)
    by_key = {name.lower(): name for name in BACKENDS}
    requested = set()
    for value in values:
        for part in value.split(","):
            name = by_key.get(part.strip().lower())
            if name is None:
                raise UsageError(f"invalid --backend {part.strip()!r}", hint=f"Valid values: {', '.join(BACKENDS)}")
            requested.add(name)
    return tuple(name for name in BACKENDS if name in requested)


def check_artifacts(backends: Sequence[str], layout: Layout, *, model_argument: str) -> None:
    """Raise ArtifactError for the first file a requested backend needs and does not find."""
    # Every backend needs the vocabulary and the label names of the checkpoint.
    required = [(layout.source_dir / "vocab.txt", "fetch"), (layout.source_dir / "config.json", "fetch")]
    for name in backends:
        if name == REFERENCE_BACKEND:
            continue
        if name == "onnx":
            required.append((layout.onnx_path, "export"))
        else:
            required += [(layout.ir_xml(name), "convert"), (layout.ir_bin(name), "convert")]
    for path, command in required:
        if not path.is_file():
            backend_hint = f" --precision {path.parent.name}" if command == "convert" else ""
            raise ArtifactError(path, "file not found", hint=f"Run `omz-like {command} {model_argument}{backend_hint}` first")


def open_backend(name: str, recipe: Recipe, layout: Layout, *, runtime_precision: str = "f32") -> Backend:
    """Load backend NAME: the PyTorch checkpoint, the ONNX model or the IR of one precision."""
    if name == REFERENCE_BACKEND:
        return _torch_backend(recipe, layout)
    if name == "onnx":
        return _onnx_backend(recipe, layout)
    return _ir_backend(name, recipe, layout, runtime_precision=runtime_precision)


def _torch_backend(recipe: Recipe, layout: Layout) -> Backend:
    import torch

    from converter.checkpoint import load_token_classifier

    model = load_token_classifier(recipe, layout)

    def infer(inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return model(**{key: torch.from_numpy(value) for key, value in inputs.items()}).logits.numpy()

    return Backend(REFERENCE_BACKEND, infer)


def _onnx_backend(recipe: Recipe, layout: Layout) -> Backend:
    from converter.runtime import onnx_session

    session = onnx_session(layout.onnx_path)
    output_name = session.get_outputs()[0].name

    def infer(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return session.run([output_name], _typed_inputs(recipe, inputs))[0]

    return Backend("onnx", infer)


def _ir_backend(precision: str, recipe: Recipe, layout: Layout, *, runtime_precision: str) -> Backend:
    from converter.runtime import compile_ir

    hint = None if runtime_precision == "default" else runtime_precision
    compiled = compile_ir(layout.ir_xml(precision), inference_precision=hint)

    def infer(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return compiled.infer(_typed_inputs(recipe, inputs))

    return Backend(precision, infer, runtime_precision=compiled.inference_precision)


def _typed_inputs(recipe: Recipe, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cast the packed int64 inputs to the dtypes the recipe gives the exported model."""
    return {spec.name: inputs[spec.name].astype(spec.dtype, copy=False) for spec in recipe.inputs}


# --- evaluation -----------------------------------------------------------


def evaluate(
    dataset: Dataset,
    recipe: Recipe,
    layout: Layout,
    backends: Sequence[str],
    *,
    runtime_precision: str = "f32",
    limit: int | None = None,
    show_progress: bool = False,
) -> dict:
    """Score each of BACKENDS on DATASET (its first LIMIT sentences) and return the accuracy report."""
    from converter.checkpoint import checkpoint_labels

    sentences = dataset.sentences[:limit] if limit is not None else dataset.sentences
    check_artifacts(backends, layout, model_argument=recipe.model_argument)
    labels = checkpoint_labels(layout)
    check_gold_labels(dataset, labels)

    tokenizer = WordPieceTokenizer(layout.source_dir / "vocab.txt", lower_case=recipe.lower_case)
    encoded = [encode_sentence(s.words, tokenizer, sequence_length=recipe.sequence_length) for s in sentences]
    log.info(
        "accuracy: %s sentences, %s words, %s windows of %s positions, gold tags %s",
        len(sentences), sum(len(s.words) for s in sentences), sum(len(e.windows) for e in encoded),
        recipe.sequence_length, dataset.scheme,
    )

    loaded = []
    for name in backends:
        log.info("load backend: %s", name)
        loaded.append(open_backend(name, recipe, layout, runtime_precision=runtime_precision))

    predictions = predict_all(encoded, loaded, tokenizer, labels, sequence_length=recipe.sequence_length, show_progress=show_progress)
    gold = [s.tags for s in sentences]
    scores = {backend.name: score(gold, predictions[backend.name]) for backend in loaded}
    return build_report(dataset, sentences, encoded, loaded, scores, recipe=recipe)


def predict_all(
    encoded: Sequence[EncodedSentence],
    backends: Sequence[Backend],
    tokenizer: WordPieceTokenizer,
    labels: Sequence[str],
    *,
    sequence_length: int,
    show_progress: bool = False,
) -> dict[str, list[list[str]]]:
    """Run every backend on every window in one pass and return each backend's word labels per sentence."""
    predictions: dict[str, list[list[str]]] = {backend.name: [] for backend in backends}
    total = sum(len(sentence.windows) for sentence in encoded)
    with _progress_bar(total, enabled=show_progress) as advance:
        for sentence in encoded:
            inputs = [tokenizer.pack(sentence.ids[w.start : w.end], sequence_length) for w in sentence.windows]
            for backend in backends:
                outputs = [backend.infer(window_inputs) for window_inputs in inputs]
                piece_logits = stitch(sentence.windows, outputs) if outputs else None
                predictions[backend.name].append(word_labels(sentence, piece_logits, labels))
            advance(len(inputs))
    return predictions


def build_report(dataset: Dataset, sentences, encoded, backends: Sequence[Backend], scores: dict[str, Scores], *, recipe: Recipe) -> dict:
    """Assemble the JSON report: data summary, then each backend's scores and difference to torch."""
    reference = scores.get(REFERENCE_BACKEND)
    results = {}
    for backend in backends:
        entry = scores[backend.name].as_dict()
        entry["runtime_precision"] = backend.runtime_precision
        entry["difference_to_torch"] = (
            None if reference is None else {name: getattr(scores[backend.name], name) - getattr(reference, name) for name in SCORE_NAMES}
        )
        results[backend.name] = entry
    return {
        "model": recipe.name,
        "dataset": str(dataset.path),
        "scheme": dataset.scheme,
        "sentences": len(sentences),
        "words": sum(len(s.words) for s in sentences),
        "words_without_pieces": sum(e.first_pieces.count(None) for e in encoded),
        "windows": sum(len(e.windows) for e in encoded),
        "sequence_length": recipe.sequence_length,
        "backends": results,
    }


@contextlib.contextmanager
def _progress_bar(total: int, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield an `advance(count)` function that moves a rich progress bar on stderr when ENABLED."""
    if not enabled:
        yield lambda count: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("windows", total=total)
        yield lambda count: progress.advance(task, count)
