"""The inputs of a parity check: the shipped corpus, a user's sentences and edge cases.

Every input is one [1, sequence_length] window, as the artifacts take it.
Texts are tokenized with the checkpoint's vocab.txt and truncated to
sequence_length - 2 word pieces so that [CLS] and [SEP] fit.

Two sets exist. "full" is every corpus sentence plus the edge inputs, which
`omz-like parity` checks. "quick" is the first few corpus sentences plus the
same edge inputs, which `omz-like build` checks by default: it costs about
an eighth of the time. A broken conversion, such as scaled weights, weights
saved at the wrong precision or a mishandled attention mask, changes the
logits of every input, so the quick set catches it too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from converter.errors import InputTextError
from converter.files import atomic_path
from converter.tokenization import MODEL_INPUTS, WordPieceTokenizer

CORPUS_RESOURCE = "parity_corpus.txt"

# Seed of the random id sequence, fixed so that every run checks the same tensors.
RANDOM_SEED = 20240917
RANDOM_LENGTH = 96

# Names of the input sets, and how many corpus sentences the quick set takes.
FULL = "full"
QUICK = "quick"
INPUT_SETS = (QUICK, FULL)
QUICK_CORPUS_SENTENCES = 4

# The two segments of the sentence-pair input.
PAIR = ("Who leads the Northwind Bank in Berlin?", "Maria Garcia has led the bank since 2021.")


@dataclass(frozen=True)
class ParityInput:
    """One input window with the text it came from and the word piece at each position."""

    kind: str  # corpus, user or edge
    text: str
    tensors: dict[str, np.ndarray]
    pieces: tuple[str, ...]
    truncated: bool = False

    @property
    def real_length(self) -> int:
        """Number of positions whose attention_mask is 1."""
        return int(self.tensors["attention_mask"].sum())


def corpus_sentences() -> list[str]:
    """Return the sentences of the shipped parity corpus, one per non-blank line."""
    text = resources.files("converter.data").joinpath(CORPUS_RESOURCE).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def read_text_file(path: Path) -> list[str]:
    """Read the user's sentences from PATH: UTF-8, one sentence a line, blank lines skipped."""
    path = Path(path)
    hint = "Pass a UTF-8 text file with one sentence a line"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputTextError(f"{path}: text file not found", hint=hint) from None
    except OSError as error:
        raise InputTextError(f"{path}: cannot read the text file ({error.strerror})", hint=hint) from None

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputTextError(f"{path}: not valid UTF-8 (invalid byte at offset {error.start})", hint=hint) from None
    sentences = [line.strip() for line in text.splitlines() if line.strip()]
    if not sentences:
        raise InputTextError(f"{path}: the text file contains no sentences", hint=hint)
    return sentences


def build_inputs(tokenizer: WordPieceTokenizer, length: int, *, extra_texts: list[str] = (), input_set: str = FULL) -> list[ParityInput]:
    """Tokenize the corpus and EXTRA_TEXTS, then append the edge inputs, all padded to LENGTH.

    INPUT_SET "quick" keeps only the first QUICK_CORPUS_SENTENCES corpus sentences.
    """
    if input_set not in INPUT_SETS:
        raise ValueError(f"unknown parity input set {input_set!r}, expected one of {INPUT_SETS}")
    vocabulary = _read_vocabulary(tokenizer.vocab_path)
    sentences = corpus_sentences()
    if input_set == QUICK:
        sentences = sentences[:QUICK_CORPUS_SENTENCES]
    inputs = [_text_input(tokenizer, text, length, kind="corpus") for text in sentences]
    inputs += [_text_input(tokenizer, text, length, kind="user") for text in extra_texts]
    inputs += edge_inputs(tokenizer, length, vocabulary=vocabulary)
    return inputs


def edge_inputs(tokenizer: WordPieceTokenizer, length: int, *, vocabulary: list[str]) -> list[ParityInput]:
    """Build the inputs that real text rarely produces.

    They are: [CLS] [SEP] with every other position padding, a window with
    no padding at all, fixed-seed random ids, and a sentence pair whose
    second segment has token_type_ids 1.
    """
    empty = tokenizer.pack([], length)

    corpus_ids = [i for text in corpus_sentences() for i in tokenizer.tokenize(text).ids]
    full = tokenizer.pack(corpus_ids[: length - 2], length)

    special = {tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.unk_id}
    candidates = np.array([i for i in range(tokenizer.vocab_size) if i not in special and not vocabulary[i].startswith("[")])
    generator = np.random.default_rng(RANDOM_SEED)
    random_ids = generator.choice(candidates, size=min(RANDOM_LENGTH, length - 2)).tolist()
    random = tokenizer.pack(random_ids, length)

    first, second = (tokenizer.tokenize(text).ids for text in PAIR)
    second = second[: max(0, length - 3 - len(first))]
    segments = [0] * (len(first) + 2) + [1] * (len(second) + 1)
    pair = tokenizer.pack([*first, tokenizer.sep_id, *second], length, segment_ids=segments)

    described = (
        ("[CLS] [SEP] and padding", empty),
        ("full window, no padding", full),
        (f"random ids, seed {RANDOM_SEED}", random),
        (" [SEP] ".join(PAIR), pair),
    )
    return [ParityInput("edge", text, tensors, _pieces(tensors, vocabulary)) for text, tensors in described]


def stack_inputs(inputs: list[ParityInput]) -> dict[str, np.ndarray]:
    """Stack the windows into int64 arrays of shape [len(INPUTS), sequence_length]."""
    return {name: np.concatenate([item.tensors[name] for item in inputs]).astype(np.int64) for name in MODEL_INPUTS}


def inputs_digest(inputs: list[ParityInput]) -> str:
    """Hash the stacked input tensors with sha256, as `arrays_digest` does."""
    return arrays_digest(stack_inputs(inputs))


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """Hash the model inputs in ARRAYS (name, shape and little-endian int64 bytes) with sha256.

    Arrays loaded from a `--save-inputs` file give the digest of the report.
    """
    digest = hashlib.sha256()
    for name in MODEL_INPUTS:
        array = np.ascontiguousarray(arrays[name], dtype="<i8")
        digest.update(f"{name}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_inputs(path: Path, inputs: list[ParityInput]) -> None:
    """Write the exact tensors, texts and kinds to the .npz file PATH, atomically."""
    arrays = stack_inputs(inputs)
    arrays["texts"] = np.array([item.text for item in inputs])
    arrays["kinds"] = np.array([item.kind for item in inputs])
    with atomic_path(Path(path)) as temporary, open(temporary, "wb") as handle:
        # A file handle, because np.savez appends .npz to a name that lacks it.
        np.savez(handle, **arrays)


def _text_input(tokenizer: WordPieceTokenizer, text: str, length: int, *, kind: str) -> ParityInput:
    tokens = tokenizer.tokenize(text)
    max_pieces = length - 2
    tensors = tokenizer.pack(tokens.ids[:max_pieces], length)
    pieces = ("[CLS]", *tokens.pieces[:max_pieces], "[SEP]")
    return ParityInput(kind, text, tensors, pieces, truncated=len(tokens.ids) > max_pieces)


def _read_vocabulary(vocab_path: Path) -> list[str]:
    """Return vocab.txt as a list whose index is the token id."""
    return Path(vocab_path).read_text(encoding="utf-8").splitlines()


def _pieces(tensors: dict[str, np.ndarray], vocabulary: list[str]) -> tuple[str, ...]:
    real = int(tensors["attention_mask"].sum())
    return tuple(vocabulary[i] for i in tensors["input_ids"][0, :real])
