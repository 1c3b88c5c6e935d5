"""Overlapping windows over a long sequence of word pieces.

A model with a fixed sequence length L sees at most L - 2 word pieces at a
time, because [CLS] and [SEP] take two positions. A longer text is split
into windows of that size that overlap by `stride` pieces, as the `stride`
argument of Hugging Face tokenizers does. Each piece then takes its
prediction from exactly one window: the one in which it lies farthest from
a window edge, so it sees the most context on both sides. The kept ranges
of the windows partition the pieces, so no piece is dropped or counted
twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SPECIAL_POSITIONS = 2  # [CLS] and [SEP]


@dataclass(frozen=True)
class Window:
    """A slice of word pieces: [start, end) go into one model input, and [keep_start, keep_end) take their prediction from it."""

    start: int
    end: int
    keep_start: int
    keep_end: int

    def __len__(self) -> int:
        return self.end - self.start


def default_stride(sequence_length: int) -> int:
    """Return the overlap used when the caller gives none: half of a window's pieces."""
    return (sequence_length - SPECIAL_POSITIONS) // 2


def plan_windows(num_pieces: int, sequence_length: int, *, stride: int | None = None) -> list[Window]:
    """Split NUM_PIECES word pieces into windows for a model of SEQUENCE_LENGTH positions.

    Consecutive windows share STRIDE pieces (default: half a window). Every
    window contains `sequence_length - 2` pieces except when the whole text is
    shorter. The last window ends at the last piece, so it may overlap its
    neighbour by more than STRIDE. Returns an empty list for zero pieces.
    """
    capacity = sequence_length - SPECIAL_POSITIONS
    if capacity < 1:
        raise ValueError(f"sequence_length {sequence_length} leaves no room for word pieces beside [CLS] and [SEP]")
    stride = default_stride(sequence_length) if stride is None else stride
    if not 0 <= stride < capacity:
        raise ValueError(f"stride {stride} must be at least 0 and less than the window size {capacity}")
    if num_pieces < 0:
        raise ValueError(f"num_pieces must be at least 0, got {num_pieces}")

    bounds = _window_bounds(num_pieces, capacity, step=capacity - stride)
    owners = _best_windows(num_pieces, bounds)
    windows = []
    for index, (start, end) in enumerate(bounds):
        kept = np.flatnonzero(owners[start:end] == index) + start
        # Windows of equal size keep contiguous ranges (the nearest centre
        # wins), and every window keeps at least its own centre.
        windows.append(Window(start, end, int(kept[0]), int(kept[-1]) + 1))
    return windows


def _window_bounds(num_pieces: int, capacity: int, *, step: int) -> list[tuple[int, int]]:
    if num_pieces == 0:
        return []
    if num_pieces <= capacity:
        return [(0, num_pieces)]
    starts = list(range(0, num_pieces - capacity, step))
    # The last window is aligned to the end of the text, so it is full too.
    starts.append(num_pieces - capacity)
    return [(start, start + capacity) for start in starts]


def _best_windows(num_pieces: int, bounds: list[tuple[int, int]]) -> np.ndarray:
    """Return, per piece, the index of the window in which it lies farthest from an edge; ties go to the earlier window."""
    owners = np.full(num_pieces, -1, dtype=np.int64)
    best_distance = np.full(num_pieces, -1, dtype=np.int64)
    for index, (start, end) in enumerate(bounds):
        positions = np.arange(start, end)
        distance = np.minimum(positions - start, end - 1 - positions)
        better = distance > best_distance[start:end]
        owners[start:end][better] = index
        best_distance[start:end][better] = distance[better]
    return owners


def stitch(windows: Sequence[Window], outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Join per-window model outputs into one row per word piece.

    OUTPUTS[k] is the output of window k with one row per position, [CLS]
    first (shape [sequence_length, ...], or with a leading batch axis of 1).
    Returns an array of shape [num_pieces, ...] in piece order.
    """
    if len(windows) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs for {len(windows)} windows")
    parts = []
    for window, output in zip(windows, outputs):
        rows = output[0] if output.ndim >= 3 else output
        # Row 0 is [CLS], so piece `start + i` sits at row 1 + i.
        first = 1 + window.keep_start - window.start
        parts.append(rows[first : first + window.keep_end - window.keep_start])
    return np.concatenate(parts, axis=0)
