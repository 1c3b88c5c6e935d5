"""WordPiece tokenization with the checkpoint's vocab.txt, without PyTorch.

The `tokenizers` library does the splitting, with the same normaliser as
transformers' BertTokenizerFast: a cased model (lower_case false) sees
"Hello" unchanged and keeps accents. Offsets are Python string indices into
the original text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import BertWordPieceTokenizer

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Tokens:
    """Word pieces of one text, without [CLS] and [SEP]."""

    ids: list[int]
    pieces: list[str]
    offsets: list[tuple[int, int]]


@dataclass(frozen=True)
class WordTokens(Tokens):
    """Word pieces of pre-split words, with the word each piece comes from.

    Offsets index into each piece's own word. `word_ids[i]` is the index of
    the word that piece i comes from. A word that the normaliser removes
    entirely (a control character, for example) yields no piece, so its
    index does not appear.
    """

    word_ids: list[int]


class WordPieceTokenizer:
    def __init__(self, vocab_path: Path, *, lower_case: bool = False) -> None:
        self.vocab_path = Path(vocab_path)
        self._tokenizer = BertWordPieceTokenizer(str(vocab_path), lowercase=lower_case, strip_accents=None)
        vocab = self._tokenizer.get_vocab()
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]
        self.pad_id = vocab["[PAD]"]
        self.unk_id = vocab["[UNK]"]
        self.vocab_size = len(vocab)

    def tokenize(self, text: str) -> Tokens:
        """Split TEXT into word pieces with character offsets."""
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return Tokens(ids=list(encoding.ids), pieces=list(encoding.tokens), offsets=[tuple(o) for o in encoding.offsets])

    def tokenize_words(self, words: list[str]) -> WordTokens:
        """Split each of WORDS into word pieces, never joining or re-splitting the word list itself."""
        if not words:
            return WordTokens(ids=[], pieces=[], offsets=[], word_ids=[])
        encoding = self._tokenizer.encode(words, is_pretokenized=True, add_special_tokens=False)
        return WordTokens(
            ids=list(encoding.ids),
            pieces=list(encoding.tokens),
            offsets=[tuple(o) for o in encoding.offsets],
            word_ids=list(encoding.word_ids),
        )

    def pack(self, ids: list[int], length: int, *, segment_ids: list[int] | None = None) -> dict[str, np.ndarray]:
        """Build int64 model inputs of shape [1, LENGTH]: [CLS] ids [SEP], then [PAD] with mask 0.

        IDS may hold at most LENGTH - 2 pieces; SEGMENT_IDS, when given, has
        one entry per position of the packed sequence before padding.
        """
        if len(ids) > length - 2:
            raise ValueError(f"{len(ids)} word pieces do not fit a window of {length} with [CLS] and [SEP]")
        sequence = [self.cls_id, *ids, self.sep_id]
        padding = length - len(sequence)
        segments = list(segment_ids) if segment_ids is not None else [0] * len(sequence)
        if len(segments) != len(sequence):
            raise ValueError(f"segment_ids has {len(segments)} entries, expected {len(sequence)}")
        arrays = {
            "input_ids": sequence + [self.pad_id] * padding,
            "attention_mask": [1] * len(sequence) + [0] * padding,
            "token_type_ids": segments + [0] * padding,
        }
        return {name: np.asarray([values], dtype=np.int64) for name, values in arrays.items()}

    def encode_padded(self, text: str, length: int) -> dict[str, np.ndarray]:
        """Tokenize TEXT, truncate it to LENGTH - 2 pieces and pack it."""
        return self.pack(self.tokenize(text).ids[: length - 2], length)
