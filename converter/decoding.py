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
