"""From logits to labels to entities.

Entities are grouped the way transformers' token-classification pipeline
groups them with aggregation_strategy="simple": a B- tag starts a new
entity, an I- tag continues an entity of the same type, and an I- tag after
O or after another type starts a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    """An entity over the token positions [start, end)."""

    type: str
    start: int
    end: int


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, computed in float64 for stable scores."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exponent = np.exp(shifted)
    return exponent / exponent.sum(axis=-1, keepdims=True)


def split_tag(tag: str) -> tuple[str, str]:
    """Split `B-PER` into ("B", "PER"); a tag without a prefix, such as O, counts as an I- tag."""
    if tag.startswith(("B-", "I-")):
        return tag[0], tag[2:]
    return "I", tag


def entity_spans(tags: Sequence[str], *, outside: str = "O") -> list[Span]:
    """Group a sequence of tags into entity spans over token positions."""
    spans: list[Span] = []
    current: Span | None = None
    for position, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if current is not None and kind == current.type and prefix != "B":
            current = Span(current.type, current.start, position + 1)
            continue
        if current is not None and current.type != outside:
            spans.append(current)
        current = Span(kind, position, position + 1)
    if current is not None and current.type != outside:
        spans.append(current)
    return spans


@dataclass(frozen=True)
class Entity:
    """A named entity in a text: START and END are Python string indices, TEXT is `text[start:end]`."""

    type: str
    score: float
    start: int
    end: int
    text: str

    def to_json(self) -> dict:
        return {"type": self.type, "score": self.score, "start": self.start, "end": self.end, "text": self.text}


def entities_from_tags(text: str, offsets: Sequence[tuple[int, int]], tags: Sequence[str], scores: Sequence[float]) -> list[Entity]:
    """Group per-piece TAGS into entities of TEXT.

    OFFSETS are the character offsets of the word pieces, SCORES the
    probability of each piece's tag. An entity's score is the mean of its
    pieces' scores, and its text is sliced from TEXT, never rebuilt from
    word pieces.
    """
    if not len(offsets) == len(tags) == len(scores):
        raise ValueError(f"{len(offsets)} offsets, {len(tags)} tags and {len(scores)} scores must match")
    entities = []
    for span in entity_spans(tags):
        start = offsets[span.start][0]
        end = offsets[span.end - 1][1]
        score = float(np.mean([scores[i] for i in range(span.start, span.end)]))
        entities.append(Entity(type=span.type, score=score, start=start, end=end, text=text[start:end]))
    return entities


def entities_from_logits(text: str, offsets: Sequence[tuple[int, int]], logits: np.ndarray, labels: Sequence[str]) -> list[Entity]:
    """Decode LOGITS of shape [pieces, labels] into entities: softmax, best label per piece, then grouping."""
    if logits.shape != (len(offsets), len(labels)):
        raise ValueError(f"logits of shape {logits.shape}, expected ({len(offsets)}, {len(labels)})")
    probabilities = softmax(logits)
    best = probabilities.argmax(axis=-1)
    tags = [labels[i] for i in best]
    scores = probabilities[np.arange(len(best)), best].tolist()
    return entities_from_tags(text, offsets, tags, scores)
