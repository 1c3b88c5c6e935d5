"""Read CoNLL-2003-format NER data: one token a line, the tag in the last column.

Columns are separated by single spaces (the original CoNLL-2003 release) or
by single tabs, and every token line of a file has the same number of
columns: 2 (word, tag) or 4 (word, POS, chunk, tag). Blank lines end a
sentence and `-DOCSTART-` lines are skipped. Tags are IOB1 (as released in
2003: B- only between two adjacent entities of one type) or IOB2 (B- opens
every entity). Both read the same way for scoring, because an I- tag after O
or after another type opens an entity in conlleval and seqeval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from converter.decoding import split_tag
from converter.errors import DatasetError

COLUMN_COUNTS = (2, 4)
DOCSTART = "-DOCSTART-"
OUTSIDE = "O"


@dataclass(frozen=True)
class Sentence:
    """Words of one sentence with their gold tags and the file line of each word."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    lines: tuple[int, ...]


@dataclass(frozen=True)
class Dataset:
    """Sentences of one CoNLL file and the tagging scheme its gold tags use."""

    path: Path
    sentences: tuple[Sentence, ...]
    scheme: str

    @property
    def word_count(self) -> int:
        return sum(len(s.words) for s in self.sentences)


def read_conll(path: Path) -> Dataset:
    """Read the CoNLL file at PATH, raising DatasetError with the line of the first problem."""
    path = Path(path)
    text = _read_text(path)

    sentences: list[Sentence] = []
    current: list[tuple[str, str, int]] = []
    column_count: tuple[int, int] | None = None  # (count, line where it was first seen)
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            _close_sentence(current, sentences)
            continue
        columns = _split_columns(path, number, line)
        if columns[0] == DOCSTART:
            _close_sentence(current, sentences)
            continue
        column_count = _check_column_count(path, number, len(columns), column_count)
        current.append((columns[0], _check_tag(path, number, columns[-1]), number))
    _close_sentence(current, sentences)

    if not sentences:
        raise DatasetError(path, None, "no sentences found", hint="Pass a CoNLL file with one `word ... tag` line per token")
    return Dataset(path=path, sentences=tuple(sentences), scheme=detect_scheme(s.tags for s in sentences))


def detect_scheme(tag_sequences) -> str:
    """Return "IOB1" when some entity opens with an I- tag, else "IOB2"."""
    for tags in tag_sequences:
        previous = OUTSIDE
        for tag in tags:
            if tag.startswith("I-") and _type_of(previous) != tag[2:]:
                return "IOB1"
            previous = tag
    return "IOB2"


def to_iob2(tags: Sequence[str]) -> list[str]:
    """Rewrite TAGS so that every entity opens with B-; the entities stay the same.

    An I- tag after O or after another type becomes B-, which is how
    conlleval and seqeval's default mode read it anyway.
    """
    converted = []
    previous = OUTSIDE
    for tag in tags:
        if tag.startswith("I-") and _type_of(previous) != tag[2:]:
            converted.append("B-" + tag[2:])
        else:
            converted.append(tag)
        previous = tag
    return converted


def _type_of(tag: str) -> str | None:
    return None if tag == OUTSIDE else split_tag(tag)[1]


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(path, None, "file not found", hint="Pass the path of a CoNLL file with --dataset") from None
    except IsADirectoryError:
        raise DatasetError(path, None, "is a folder, not a file", hint="Pass the path of a CoNLL file with --dataset") from None
    except OSError as error:
        raise DatasetError(path, None, f"reading the file failed ({error.strerror})") from None

    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DatasetError(
            path, line, f"not valid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})",
            hint="Convert the file to UTF-8, for example with `iconv -f latin1 -t utf-8`",
        ) from None


def _split_columns(path: Path, number: int, line: str) -> list[str]:
    # Trailing blanks are harmless and common in hand-edited files. Any other
    # empty column means a broken line.
    line = line.rstrip(" \t")
    separator = "\t" if "\t" in line else " "
    if separator == "\t" and " " in line:
        raise DatasetError(
            path, number, f"mixes tabs and spaces between columns: {line!r}",
            hint="Separate the columns of a line by single spaces or by single tabs, not both",
        )
    columns = line.split(separator)
    if "" in columns:
        name = "tab" if separator == "\t" else "space"
        raise DatasetError(
            path, number, f"empty column (a {name} at the start or two in a row): {line!r}",
            hint=f"Separate the columns by exactly one {name}",
        )
    return columns


def _check_column_count(path: Path, number: int, count: int, first: tuple[int, int] | None) -> tuple[int, int]:
    if count == 1:
        raise DatasetError(path, number, "missing tag column", hint="Write each token as `word tag` or `word POS chunk tag`")
    if count not in COLUMN_COUNTS:
        raise DatasetError(
            path, number, f"expected 2 or 4 columns, found {count}",
            hint="Write each token as `word tag` or `word POS chunk tag`",
        )
    if first is not None and count != first[0]:
        raise DatasetError(
            path, number, f"{count} columns, but line {first[1]} has {first[0]}",
            hint="Give every token line of the file the same columns",
        )
    return first or (count, number)


def _check_tag(path: Path, number: int, tag: str) -> str:
    if tag == OUTSIDE or (tag[:2] in ("B-", "I-") and len(tag) > 2):
        return tag
    raise DatasetError(
        path, number, f"invalid tag {tag!r}",
        hint="Expected O or B-TYPE / I-TYPE in the last column (IOB1 or IOB2; IOBES is not supported)",
    )


def _close_sentence(current: list[tuple[str, str, int]], sentences: list[Sentence]) -> None:
    if current:
        words, tags, lines = zip(*current)
        sentences.append(Sentence(words=words, tags=tags, lines=lines))
        current.clear()
