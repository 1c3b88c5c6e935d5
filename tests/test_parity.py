from __future__ import annotations

import json
import shutil
import unicodedata
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

from converter.errors import InputTextError
from converter.parity_inputs import (
    RANDOM_LENGTH,
    arrays_digest,
    build_inputs,
    corpus_sentences,
    inputs_digest,
    read_text_file,
    save_inputs,
)
from converter.parity_report import FAIL, PASS, check_metrics, measure, worst_position
from converter.recipe import DEFAULT_TOLERANCES
from converter.tokenization import WordPieceTokenizer
from tests.checkpoints import CONLL_LABELS, FULL_SIZE, TINY, place_source, write_checkpoint, write_recipe

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


# --- end to end: real export, conversion and runtimes --------------------

# The tiny checkpoint's random classifier gives logits near 0.1, where FP16
# weights move a logit by only about 1e-4. Scaling the classifier makes the
# logits large enough that an FP32 IR saved with FP16 weights fails clearly.
CLASSIFIER_SCALE = 50.0


def _build_artifacts(folder: Path, checkpoint: Path, *, name: str) -> tuple[Path, Path]:
    """Place CHECKPOINT as the fetched source and export and convert it; return (recipe path, artifacts dir)."""
    from converter.conversion import convert_ir
    from converter.files import read_json
    from converter.recipe import load_recipe

    recipe_path = write_recipe(folder / f"{name}.yaml", checkpoint, name=name)
    recipe = load_recipe(str(recipe_path))
    layout = place_source(recipe_path, checkpoint, folder / "artifacts")
    convert_ir(recipe, layout, ("FP32", "FP16"), source_record=read_json(layout.source_record))
    return recipe_path, folder / "artifacts"


@pytest.fixture(scope="module")
def built_tiny(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny checkpoint with a scaled classifier, exported and converted once for this module."""
    import torch

    checkpoint = write_checkpoint(tmp_path_factory.mktemp("loud-tiny-checkpoint"), TINY)
    weights = torch.load(checkpoint / "pytorch_model.bin", weights_only=True)
    weights["classifier.weight"] = weights["classifier.weight"] * CLASSIFIER_SCALE
    torch.save(weights, checkpoint / "pytorch_model.bin")
    return _build_artifacts(tmp_path_factory.mktemp("built-tiny"), checkpoint, name="tiny-ner")


@pytest.fixture
def tiny_build(built_tiny, tmp_path) -> tuple[Path, Path]:
    """A private copy of the built tiny artifacts that a test may alter."""
    recipe_path, artifacts = built_tiny
    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts, copy)
    return recipe_path, copy


def _report(artifacts: Path, name: str = "tiny-ner") -> dict:
    return json.loads((artifacts / name / "parity-check.json").read_text(encoding="utf-8"))


def _scale_constant(xml_path: Path, shape: str, factor: float) -> None:
    """Multiply the f32 constant of SHAPE in the IR's .bin file by FACTOR, in place."""
    for data in ElementTree.parse(xml_path).getroot().iter("data"):
        if data.get("element_type") == "f32" and data.get("shape") == shape:
            offset, size = int(data.get("offset")), int(data.get("size"))
            values = np.memmap(xml_path.with_suffix(".bin"), dtype="<f4", mode="r+", offset=offset, shape=(size // 4,))
            values *= factor
            values.flush()
            return
    raise AssertionError(f"{xml_path} has no f32 constant of shape {shape}")


def test_tiny_build_passes(run_cli, tiny_build):
    recipe_path, artifacts = tiny_build

    result = run_cli("parity", recipe_path, "--artifacts-dir", artifacts)
    report = _report(artifacts)

    assert result.exit_code == 0, result.stderr
    assert "parity: PASS" in result.stdout
    assert result.stdout.count("PASS") == 3 * 6 + 1
    assert report["passed"] is True
    assert sorted(report["backends"]) == ["FP16", "FP32", "ONNX"]
    assert [b["inference_precision"] for b in report["backends"].values()] == ["f32", "f32", "f32"]
    assert report["inputs"]["count"] == len(corpus_sentences()) + 4
    assert report["inputs"]["truncated"] == [len(corpus_sentences()) - 1]


def test_report_has_no_paths_or_times(run_cli, tiny_build):
    recipe_path, artifacts = tiny_build

    run_cli("parity", recipe_path, "--artifacts-dir", artifacts, "-p", "FP32")
    text = (artifacts / "tiny-ner" / "parity-check.json").read_text(encoding="utf-8")
    report = json.loads(text)

    assert str(artifacts.parent) not in text
    assert text == json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert report["backends"]["FP32"]["artifact"] == "FP32/tiny-ner.xml"
    assert report["runtime_precision"] == "f32"
    assert set(report["versions"]) >= {"torch", "onnxruntime", "openvino", "transformers"}


def test_report_repeats_except_measurements(run_cli, tiny_build):
    recipe_path, artifacts = tiny_build

    run_cli("parity", recipe_path, "--artifacts-dir", artifacts, "-p", "FP16")
    first = _report(artifacts)
    run_cli("parity", recipe_path, "--artifacts-dir", artifacts, "-p", "FP16")
    second = _report(artifacts)
    for report in (first, second):
        for backend in report["backends"].values():
            del backend["metrics"], backend["worst_token"]

    assert first == second


def test_json_flag_prints_written_report(run_cli, tiny_build):
    recipe_path, artifacts = tiny_build

    result = run_cli("parity", recipe_path, "--artifacts-dir", artifacts, "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout) == _report(artifacts)


def test_text_file_and_saved_inputs_replay(run_cli, tiny_build, tmp_path):
    recipe_path, artifacts = tiny_build
    text_file = tmp_path / "mine.txt"
    text_file.write_text("Ada Lovelace met Charles Babbage in London.\n\nThe Bank of Paris opened.\n", encoding="utf-8")
    saved = tmp_path / "inputs.npz"

    result = run_cli("parity", recipe_path, "--artifacts-dir", artifacts, "--text-file", text_file, "--save-inputs", saved)
    report = _report(artifacts)

    assert result.exit_code == 0, result.stderr
    assert report["inputs"]["user"] == 2
    with np.load(saved) as arrays:
        assert arrays["input_ids"].shape == (report["inputs"]["count"], 128)
        assert list(arrays["texts"][-6:-4]) == ["Ada Lovelace met Charles Babbage in London.", "The Bank of Paris opened."]
        assert arrays_digest(arrays) == report["inputs"]["sha256"]


def test_bad_text_file_is_one_line(run_cli, tiny_build, tmp_path):
    recipe_path, artifacts = tiny_build
    text_file = tmp_path / "latin1.txt"
    text_file.write_bytes("Zoë\n".encode("latin-1"))

    result = run_cli("parity", recipe_path, "--artifacts-dir", artifacts, "--text-file", text_file)

    assert result.exit_code == 1
    assert result.stderr == f"error: {text_file}: not valid UTF-8 (invalid byte at offset 2). Pass a UTF-8 text file with one sentence a line\n"


def test_altered_weight_fails_naming_worst_token(run_cli, tiny_build):
    recipe_path, artifacts = tiny_build
    _scale_constant(artifacts / "tiny-ner" / "FP32" / "tiny-ner.xml", "9, 32", 1.5)

    result = run_cli("parity", recipe_path, "--artifacts-dir", artifacts)
    report = _report(artifacts)
    worst = report["backends"]["FP32"]["worst_token"]

    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1
    assert len(error_lines) == 1
    assert result.stderr.endswith(error_lines[0] + "\n")
    assert error_lines[0].startswith("error: parity failed for FP32: max_abs ")
    assert f"worst token in FP32: input {worst['input']} {worst['text']!r}, position {worst['position']}, token {worst['token']!r}" in error_lines[0]
    assert "FAIL" in result.stdout
    assert report["backends"]["FP32"]["checks"]["max_abs"] == "FAIL"
    assert report["backends"]["ONNX"]["passed"] is True
    assert report["backends"]["FP16"]["passed"] is True
    assert worst["abs_diff"] == pytest.approx(abs(worst["backend"] - worst["pytorch"]))
    assert worst["abs_diff"] > 0.1


def test_fp16_weights_in_fp32_ir_fail(run_cli, tiny_build, tmp_path):
    import openvino as ov

    recipe_path, artifacts = tiny_build
    xml_path = artifacts / "tiny-ner" / "FP32" / "tiny-ner.xml"
    # OpenVINO maps the .bin file into memory, so saving over it while the model is loaded would crash.
    ov.save_model(ov.Core().read_model(xml_path), tmp_path / "compressed.xml", compress_to_fp16=True)
    shutil.copyfile(tmp_path / "compressed.xml", xml_path)
    shutil.copyfile(tmp_path / "compressed.bin", xml_path.with_suffix(".bin"))

    result = run_cli("parity", recipe_path, "--artifacts-dir", artifacts, "-p", "FP32")
    fp32 = _report(artifacts)["backends"]["FP32"]

    assert result.exit_code == 1
    assert "parity failed for FP32: max_abs" in result.stderr
    assert fp32["checks"]["max_abs"] == "FAIL"
    assert fp32["checks"]["mean_abs"] == "FAIL"
    assert fp32["metrics"]["max_abs"] > 10 * fp32["tolerance"]["max_abs"]


@pytest.mark.parametrize(
    ("missing", "problem", "command"),
    [
        ("onnx/tiny-ner.onnx", "ONNX file not found", "omz-like convert"),
        ("FP16/tiny-ner.xml", "FP16 IR file not found", "omz-like convert"),
        ("FP32/tiny-ner.bin", "FP32 IR file not found", "omz-like convert"),
        ("source/vocab.txt", "vocabulary not found", "omz-like fetch"),
    ],
)
def test_missing_artifact_points_to_command(run_cli, tiny_build, missing, problem, command):
    recipe_path, artifacts = tiny_build
    (artifacts / "tiny-ner" / missing).unlink()

    result = run_cli("parity", recipe_path, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {artifacts / 'tiny-ner' / missing}: {problem}. Run `{command} ")
    assert result.stderr.count("\n") == 1
    assert not (artifacts / "tiny-ner" / "parity-check.json").exists()


def test_runtime_default_precision_is_reported(run_cli, tiny_build):
    from converter.runtime import compile_ir

    recipe_path, artifacts = tiny_build
    chosen = compile_ir(artifacts / "tiny-ner" / "FP32" / "tiny-ner.xml", inference_precision=None).inference_precision

    result = run_cli("parity", recipe_path, "--artifacts-dir", artifacts, "-p", "FP32", "--runtime-precision", "default")
    report = _report(artifacts)

    assert report["runtime_precision"] == "default"
    assert report["backends"]["FP32"]["inference_precision"] == chosen
    assert f"FP32 @ {chosen}" in result.stdout
    assert result.exit_code == (0 if report["passed"] else 1)


def test_invalid_runtime_precision_exits_2(run_cli, tiny_build):
    recipe_path, artifacts = tiny_build

    result = run_cli("parity", recipe_path, "--artifacts-dir", artifacts, "--runtime-precision", "bf16")

    assert result.exit_code == 2
    assert "bf16" in result.stderr


def test_plot_writes_png(run_cli, tiny_build, tmp_path):
    recipe_path, artifacts = tiny_build
    plot = tmp_path / "differences.png"

    result = run_cli("parity", recipe_path, "--artifacts-dir", artifacts, "--plot", plot)

    assert result.exit_code == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".differences")] == []


def test_unwritable_report_fails_before_comparing(run_cli, tiny_build):
    recipe_path, artifacts = tiny_build
    report = artifacts / "tiny-ner" / "parity-check.json"
    report.mkdir()

    result = run_cli("parity", recipe_path, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {report}: is a folder, so the file cannot be written.")
    assert "parity:" not in result.stderr


def test_atomic_write_error_names_target(tmp_path):
    from converter.errors import ArtifactError
    from converter.files import write_json_atomic

    target = tmp_path / "report.json"
    target.mkdir()

    with pytest.raises(ArtifactError) as caught:
        write_json_atomic(target, {"a": 1})

    assert str(caught.value).startswith(f"{target}: cannot be written (")
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_unbuilt_model_creates_no_folder(run_cli, tiny_recipe, tmp_path):
    artifacts = tmp_path / "never-built"

    result = run_cli("parity", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert "vocabulary not found" in result.stderr
    assert not artifacts.exists()
