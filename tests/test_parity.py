from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest

from converter.errors import InputTextError
from converter.parity_inputs import (
    RANDOM_LENGTH,
    build_inputs,
    corpus_sentences,
    inputs_digest,
    read_text_file,
    save_inputs,
)
from converter.parity_report import FAIL, PASS, check_metrics, measure, worst_position
from converter.recipe import DEFAULT_TOLERANCES
from converter.tokenization import WordPieceTokenizer
from tests.checkpoints import CONLL_LABELS

LENGTH = 128


@pytest.fixture
def tokenizer(tiny_checkpoint):
    return WordPieceTokenizer(tiny_checkpoint / "vocab.txt", lower_case=False)


# --- corpus and inputs ----------------------------------------------------


def test_corpus_has_required_kinds_of_text():
    sentences = corpus_sentences()

    assert len(sentences) >= 60
    assert len(set(sentences)) == len(sentences)
    assert any(s.isupper() and len(s.split()) >= 5 for s in sentences)
    assert any(any(c.isdigit() for c in s) for s in sentences)
    assert any("🎉" in s for s in sentences)
    assert any(len(s.split()) > 140 for s in sentences)


def test_corpus_has_nfc_and_nfd_accents():
    sentences = corpus_sentences()
    nfd = [s for s in sentences if not unicodedata.is_normalized("NFC", s)]
    nfc_accented = [s for s in sentences if unicodedata.is_normalized("NFC", s) and any(ord(c) > 127 and c.isalpha() for c in s)]

    assert len(nfd) >= 3
    assert all(any(unicodedata.combining(c) for c in s) for s in nfd)
    assert unicodedata.normalize("NFC", nfd[0]) in sentences
    assert len(nfc_accented) >= 3


def test_inputs_cover_corpus_user_and_edges(tokenizer):
    inputs = build_inputs(tokenizer, LENGTH, extra_texts=["Paris is in France."])
    kinds = [item.kind for item in inputs]

    assert kinds.count("corpus") == len(corpus_sentences())
    assert kinds.count("user") == 1
    assert kinds.count("edge") == 4
    assert all(item.tensors["input_ids"].shape == (1, LENGTH) for item in inputs)
    assert all(len(item.pieces) == item.real_length for item in inputs)


def test_long_corpus_text_is_truncated(tokenizer):
    inputs = build_inputs(tokenizer, LENGTH)
    truncated = [item for item in inputs if item.truncated]

    assert len(truncated) >= 1
    assert truncated[0].real_length == LENGTH
    assert truncated[0].pieces[-1] == "[SEP]"


def test_edge_inputs_have_expected_masks(tokenizer):
    empty, full, random, pair = build_inputs(tokenizer, LENGTH)[-4:]

    assert empty.real_length == 2
    assert empty.pieces == ("[CLS]", "[SEP]")
    assert int(empty.tensors["input_ids"][0, 2:].sum()) == 126 * tokenizer.pad_id
    assert full.real_length == LENGTH
    assert random.real_length == RANDOM_LENGTH + 2
    assert set(pair.tensors["token_type_ids"][0].tolist()) == {0, 1}
    assert pair.pieces.count("[SEP]") == 2


def test_random_edge_input_is_reproducible(tokenizer):
    first = build_inputs(tokenizer, LENGTH)[-2].tensors["input_ids"]
    second = build_inputs(tokenizer, LENGTH)[-2].tensors["input_ids"]

    assert np.array_equal(first, second)


def test_save_inputs_writes_replayable_npz(tokenizer, tmp_path):
    inputs = build_inputs(tokenizer, LENGTH, extra_texts=["Zoë lives in Zürich."])
    path = tmp_path / "inputs.npz"
    save_inputs(path, inputs)

    with np.load(path) as saved:
        assert saved["input_ids"].shape == (len(inputs), LENGTH)
        assert saved["input_ids"].dtype == np.int64
        assert saved["texts"][-5] == "Zoë lives in Zürich."
        assert saved["kinds"][-1] == "edge"
        assert np.array_equal(saved["token_type_ids"][-1], inputs[-1].tensors["token_type_ids"][0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs.npz"]


def test_inputs_digest_changes_with_one_id(tokenizer):
    inputs = build_inputs(tokenizer, LENGTH)
    before = inputs_digest(inputs)
    inputs[0].tensors["input_ids"][0, 1] += 1

    assert len(before) == 64
    assert inputs_digest(build_inputs(tokenizer, LENGTH)) == before
    assert inputs_digest(inputs) != before


# --- text files -----------------------------------------------------------


def test_text_file_skips_blank_lines(tmp_path):
    path = tmp_path / "extra.txt"
    path.write_text("First sentence.\n\n  Second one.  \n", encoding="utf-8")

    assert read_text_file(path) == ["First sentence.", "Second one."]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "text file not found"),
        (b"caf\xe9\n", "not valid UTF-8 (invalid byte at offset 3)"),
        (b"\n  \n", "the text file contains no sentences"),
    ],
)
def test_text_file_errors_name_file(tmp_path, content, problem):
    path = tmp_path / "extra.txt"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(InputTextError) as caught:
        read_text_file(path)
    assert caught.value.message == f"{path}: {problem}"
    assert caught.value.hint == "Pass a UTF-8 text file with one sentence a line"


# --- metrics --------------------------------------------------------------


def _logits(seed: int = 0, shape=(3, 8, 9)) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=3.0, size=shape).astype(np.float32)


def _masks(lengths=(8, 5, 2), width=8):
    mask = np.array([[1] * n + [0] * (width - n) for n in lengths])
    entity_mask = mask.copy()
    for row, n in enumerate(lengths):
        entity_mask[row, 0] = 0
        entity_mask[row, n - 1] = 0
    return mask, entity_mask


def test_identical_logits_measure_perfect():
    reference = _logits()
    mask, entity_mask = _masks()

    metrics = measure(reference, reference.copy(), mask, labels=CONLL_LABELS, entity_mask=entity_mask)

    assert metrics == {
        "nonfinite": 0,
        "max_abs": 0.0,
        "mean_abs": 0.0,
        "min_cosine": pytest.approx(1.0, abs=1e-12),
        "argmax_agreement": 1.0,
        "entity_agreement": 1.0,
    }


def test_padding_positions_are_not_compared():
    reference = _logits()
    candidate = reference.copy()
    mask, entity_mask = _masks()
    candidate[1, 5:] += 100.0
    candidate[2, 2:] = np.nan

    metrics = measure(reference, candidate, mask, labels=CONLL_LABELS, entity_mask=entity_mask)

    assert metrics["max_abs"] == 0.0
    assert metrics["nonfinite"] == 0


def test_one_changed_logit_sets_max_and_mean():
    reference = np.zeros((2, 4, 9), dtype=np.float32)
    reference[..., 0] = 5.0
    candidate = reference.copy()
    candidate[1, 2, 3] = 0.5
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]])

    metrics = measure(reference, candidate, mask, labels=CONLL_LABELS, entity_mask=mask)

    assert metrics["max_abs"] == 0.5
    assert metrics["mean_abs"] == pytest.approx(0.5 / (7 * 9))
    assert metrics["argmax_agreement"] == 1.0
    assert worst_position(reference, candidate, mask).__dict__ == {"input_index": 1, "position": 2, "label_index": 3}


def test_flipped_label_breaks_argmax_and_entities():
    reference = np.zeros((2, 4, 9), dtype=np.float32)
    reference[..., 0] = 5.0
    candidate = reference.copy()
    candidate[0, 1, 3] = 9.0  # O becomes B-PER at one token of the first input
    mask = np.ones((2, 4), dtype=np.int64)

    metrics = measure(reference, candidate, mask, labels=CONLL_LABELS, entity_mask=mask)

    assert metrics["argmax_agreement"] == 7 / 8
    assert metrics["entity_agreement"] == 0.5


def test_nan_logit_counts_and_fails():
    reference = _logits()
    candidate = reference.copy()
    mask, entity_mask = _masks()
    candidate[0, 3, 4] = np.nan
    candidate[1, 0, 0] = np.inf

    metrics = measure(reference, candidate, mask, labels=CONLL_LABELS, entity_mask=entity_mask)
    checks = check_metrics(metrics, DEFAULT_TOLERANCES["ONNX"])

    assert metrics["nonfinite"] == 2
    assert checks["nonfinite"] == FAIL
    assert checks["max_abs"] == FAIL
    assert worst_position(reference, candidate, mask).__dict__ == {"input_index": 0, "position": 3, "label_index": 4}


def test_checks_use_limits_inclusively():
    tolerance = DEFAULT_TOLERANCES["FP16"]
    metrics = {
        "nonfinite": 0,
        "max_abs": tolerance.max_abs,
        "mean_abs": tolerance.mean_abs * 1.01,
        "min_cosine": tolerance.min_cosine,
        "argmax_agreement": tolerance.argmax_agreement - 1e-6,
        "entity_agreement": 1.0,
    }

    assert check_metrics(metrics, tolerance) == {
        "nonfinite": PASS,
        "max_abs": PASS,
        "mean_abs": FAIL,
        "min_cosine": PASS,
        "argmax_agreement": FAIL,
        "entity_agreement": PASS,
    }


def test_report_limits_keep_required_strength():
    for key in ("ONNX", "FP32"):
        assert DEFAULT_TOLERANCES[key].max_abs <= 1e-4
        assert DEFAULT_TOLERANCES[key].argmax_agreement == 1.0
    assert DEFAULT_TOLERANCES["FP16"].max_abs <= 0.05
    assert DEFAULT_TOLERANCES["FP16"].argmax_agreement >= 0.999
