"""Overlapping windows: every piece gets exactly one prediction, from its most central window."""

from __future__ import annotations

import numpy as np
import pytest

from converter.windows import Window, default_stride, plan_windows, stitch


def test_short_text_is_one_window():
    assert plan_windows(5, 128) == [Window(0, 5, 0, 5)]


def test_no_pieces_give_no_windows():
    assert plan_windows(0, 128) == []


def test_full_window_fits_exactly():
    assert plan_windows(126, 128) == [Window(0, 126, 0, 126)]


def test_small_windows_exact_plan():
    # Window of 4 pieces, 2 shared: starts 0, 2, 4 and the last one aligned to the end.
    assert plan_windows(10, 6, stride=2) == [
        Window(0, 4, 0, 3),
        Window(2, 6, 3, 5),
        Window(4, 8, 5, 7),
        Window(6, 10, 7, 10),
    ]


def test_one_piece_over_a_window():
    assert plan_windows(127, 128) == [Window(0, 126, 0, 64), Window(1, 127, 64, 127)]


def test_default_stride_is_half_a_window():
    assert default_stride(128) == 63


@pytest.mark.parametrize("sequence_length", [3, 4, 7, 16, 128])
@pytest.mark.parametrize("num_pieces", [1, 2, 3, 13, 126, 127, 252, 253, 1000])
def test_kept_ranges_partition_the_pieces(num_pieces, sequence_length):
    capacity = sequence_length - 2
    for stride in sorted({0, capacity // 2, capacity - 1}):
        windows = plan_windows(num_pieces, sequence_length, stride=stride)
        kept = [piece for w in windows for piece in range(w.keep_start, w.keep_end)]
        assert kept == list(range(num_pieces))
        for window in windows:
            assert 0 <= window.start <= window.keep_start < window.keep_end <= window.end <= num_pieces
            assert len(window) == min(capacity, num_pieces)


@pytest.mark.parametrize("num_pieces", [127, 200, 1000])
def test_each_piece_kept_from_most_central_window(num_pieces):
    windows = plan_windows(num_pieces, 128)
    for window in windows:
        for piece in range(window.keep_start, window.keep_end):
            kept_distance = min(piece - window.start, window.end - 1 - piece)
            others = [min(piece - w.start, w.end - 1 - piece) for w in windows if w.start <= piece < w.end]
            assert kept_distance == max(others)


def test_consecutive_windows_share_stride_pieces():
    windows = plan_windows(1000, 128, stride=30)
    for left, right in zip(windows[:-2], windows[1:-1]):
        assert left.end - right.start == 30
    assert windows[-1].end == 1000


@pytest.mark.parametrize(
    ("num_pieces", "sequence_length", "stride", "message"),
    [
        (10, 2, 0, "leaves no room"),
        (10, 6, 4, "stride 4"),
        (10, 6, -1, "stride -1"),
        (-1, 6, 1, "num_pieces"),
    ],
)
def test_invalid_arguments_raise(num_pieces, sequence_length, stride, message):
    with pytest.raises(ValueError, match=message):
        plan_windows(num_pieces, sequence_length, stride=stride)


def test_stitch_takes_kept_rows_after_cls():
    windows = plan_windows(10, 6, stride=2)
    # Window k outputs 100 * k + piece index for each piece, and -1 at [CLS] and [SEP].
    outputs = []
    for k, window in enumerate(windows):
        rows = [-1] + [100 * k + piece for piece in range(window.start, window.end)] + [-1]
        outputs.append(np.asarray(rows, dtype=np.float32)[None, :, None])
    stitched = stitch(windows, outputs)
    assert stitched.shape == (10, 1)
    assert stitched[:, 0].tolist() == [0, 1, 2, 103, 104, 205, 206, 307, 308, 309]


def test_stitch_rejects_count_mismatch():
    with pytest.raises(ValueError, match="1 outputs for 2 windows"):
        stitch(plan_windows(127, 128), [np.zeros((128, 9))])
