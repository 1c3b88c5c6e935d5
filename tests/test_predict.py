"""`omz-like predict`: entities from the converted IR, equal to transformers' pipeline on PyTorch."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from converter.layout import Layout
from converter.predict import LinePrediction, open_predictor, parse_label_list, predict_lines, read_labels
from converter.recipe import load_recipe
from tests.checkpoints import CONLL_LABELS, FULL_SIZE, TINY, TINY_COMMIT, CheckpointSpec, write_checkpoint, write_recipe

# Classifier settings that make the random tiny model tag about a quarter of
# the pieces O and mix B- and I- tags of every type. Multi-piece entities,
# I- tags after O and adjacent B- tags then all occur on the corpus.
CLASSIFIER_SCALE = 30.0
OUTSIDE_BIAS = 2.5
INSIDE_BIAS = 2.0


def write_tagging_checkpoint(folder: Path, spec: CheckpointSpec = TINY) -> Path:
    """Write a generated checkpoint with its classifier scaled and biased as above."""
    import torch

    write_checkpoint(folder, spec)
    weights_path = folder / "pytorch_model.bin"
    state = torch.load(weights_path)
    state["classifier.weight"] = state["classifier.weight"] * CLASSIFIER_SCALE
    bias = torch.zeros(len(CONLL_LABELS))
    bias[CONLL_LABELS.index("O")] = OUTSIDE_BIAS
    for index, label in enumerate(CONLL_LABELS):
        if label.startswith("I-"):
            bias[index] = INSIDE_BIAS
    state["classifier.bias"] = bias
    torch.save(state, weights_path)
    return folder


@pytest.fixture(scope="module")
def tagging_model(tmp_path_factory):
    """(recipe path, artifacts dir, checkpoint dir) with FP32 and FP16 IR built by convert_ir."""
    return build_tagging_model(tmp_path_factory.mktemp("tagging-model"), TINY)


def build_tagging_model(root: Path, spec: CheckpointSpec) -> tuple[Path, Path, Path]:
    from converter.conversion import convert_ir

    checkpoint = write_tagging_checkpoint(root / "checkpoint", spec)
    recipe_path = write_recipe(root / "recipes" / "tagging-ner.yaml", checkpoint, name="tagging-ner", repo="tests/tagging-ner")
    recipe = load_recipe(str(recipe_path))
    artifacts = root / "artifacts"
    layout = Layout.for_recipe(recipe, artifacts)
    layout.source_dir.mkdir(parents=True)
    for entry in recipe.source.files:
        shutil.copyfile(checkpoint / entry.name, layout.source_dir / entry.name)
    record = {"repo": recipe.source.repo, "revision": recipe.source.revision, "commit_hash": TINY_COMMIT}
    layout.source_record.write_text(json.dumps(record))
    convert_ir(recipe, layout, ("FP32", "FP16"), source_record=record)
    return recipe_path, artifacts, checkpoint


@pytest.fixture(scope="module")
def fp32_predictor(tagging_model):
    recipe_path, artifacts, _ = tagging_model
    recipe = load_recipe(str(recipe_path))
    return open_predictor(recipe, Layout.for_recipe(recipe, artifacts), precision="FP32", inference_precision="f32")


def corpus_lines() -> list[str]:
    text = (resources.files("converter.data") / "parity_corpus.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def pipeline_entities(checkpoint: Path, lines: list[str]) -> list[list[dict]]:
    from transformers import BertForTokenClassification, BertTokenizerFast, pipeline

    model = BertForTokenClassification.from_pretrained(checkpoint).eval()
    tokenizer = BertTokenizerFast(str(checkpoint / "vocab.txt"), do_lower_case=False)
    ner = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple")
    return [ner(line) for line in lines]


# --- parity with transformers ---------------------------------------------


def test_corpus_matches_transformers_pipeline(tagging_model, fp32_predictor):
    _, _, checkpoint = tagging_model
    # The pipeline runs the whole line in one pass and the IR runs windows
    # of 126 pieces, so only lines that fit one window can match exactly.
    lines = [line for line in corpus_lines() if len(fp32_predictor.tokenizer.tokenize(line).ids) <= 126]
    assert len(lines) >= 40
    expected = pipeline_entities(checkpoint, lines)
    actual = list(predict_lines(fp32_predictor, lines))

    total = 0
    for line, reference, prediction in zip(lines, expected, actual):
        assert prediction.text == line
        got = [(e.type, e.start, e.end) for e in prediction.entities]
        want = [(e["entity_group"], e["start"], e["end"]) for e in reference]
        assert got == want, line
        for entity, reference_entity in zip(prediction.entities, reference):
            assert abs(entity.score - float(reference_entity["score"])) <= 1e-3, (line, entity)
            assert entity.text == line[entity.start : entity.end]
        total += len(got)
    assert total >= 500


@pytest.mark.full_size
def test_full_size_corpus_matches_pipeline(tmp_path):
    recipe_path, artifacts, checkpoint = build_tagging_model(tmp_path, FULL_SIZE)
    recipe = load_recipe(str(recipe_path))
    predictor = open_predictor(recipe, Layout.for_recipe(recipe, artifacts), precision="FP32", inference_precision="f32")
    lines = [line for line in corpus_lines() if len(predictor.tokenizer.tokenize(line).ids) <= 126]
    assert len(lines) >= 60
    expected = pipeline_entities(checkpoint, lines)
    actual = list(predict_lines(predictor, lines))

    total = 0
    for line, reference, prediction in zip(lines, expected, actual):
        got = [(e.type, e.start, e.end) for e in prediction.entities]
        want = [(e["entity_group"], e["start"], e["end"]) for e in reference]
        assert got == want, line
        for entity, reference_entity in zip(prediction.entities, reference):
            assert abs(entity.score - float(reference_entity["score"])) <= 1e-3, (line, entity)
        total += len(got)
    assert total >= 100


def test_corpus_has_every_grouping_case(fp32_predictor):
    lines = corpus_lines()[:20]
    predictions = list(predict_lines(fp32_predictor, lines))
    entities = [e for p in predictions for e in p.entities]
    assert {e.type for e in entities} == {"PER", "ORG", "LOC", "MISC"}
    assert any(" " in e.text for e in entities)
    assert any(
        left.end == right.start or p.text[left.end : right.start].isspace()
        for p in predictions
        for left, right in zip(p.entities, p.entities[1:])
        if left.type == right.type
    )


# --- long text ------------------------------------------------------------


def test_long_line_keeps_every_piece(fp32_predictor):
    sentence = "Angela Merkel met Emmanuel Macron in Berlin on Monday. "
    line = sentence * 2000
    assert len(line) > 100_000
    [prediction] = list(predict_lines(fp32_predictor, [line]))
    entities = prediction.entities
    assert all(e.text == line[e.start : e.end] for e in entities)
    assert all(left.end <= right.start for left, right in zip(entities, entities[1:]))
    covered = {e.start // len(sentence) for e in entities}
    assert covered == set(range(2000))


def test_long_line_matches_windowed_inference(fp32_predictor):
    from converter.decoding import entities_from_logits
    from converter.windows import plan_windows, stitch

    line = " ".join(corpus_lines()[:6])
    tokens = fp32_predictor.tokenizer.tokenize(line)
    windows = plan_windows(len(tokens.ids), 128)
    assert len(windows) >= 3
    outputs = []
    for window in windows:
        packed = fp32_predictor.tokenizer.pack(tokens.ids[window.start : window.end], 128)
        outputs.append(fp32_predictor.compiled.infer(packed))
    expected = entities_from_logits(line, tokens.offsets, stitch(windows, outputs), CONLL_LABELS)
    [prediction] = list(predict_lines(fp32_predictor, [line]))
    assert [(e.type, e.start, e.end) for e in prediction.entities] == [(e.type, e.start, e.end) for e in expected]
    assert np.allclose([e.score for e in prediction.entities], [e.score for e in expected], atol=1e-6)


def test_batches_keep_input_order(fp32_predictor):
    lines = corpus_lines()[:10]
    one_batch = list(predict_lines(fp32_predictor, lines))
    small_batches = list(predict_lines(fp32_predictor, lines, batch_lines=3))
    assert [p.text for p in small_batches] == lines
    assert small_batches == one_batch


def test_blank_line_has_no_entities(fp32_predictor):
    assert list(predict_lines(fp32_predictor, ["", "   "])) == [LinePrediction("", []), LinePrediction("   ", [])]


def test_predictor_uses_throughput_hint(fp32_predictor):
    compiled = fp32_predictor.compiled.compiled
    assert str(compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") >= 2
    assert fp32_predictor.compiled.inference_precision == "f32"


# --- labels ---------------------------------------------------------------


def test_labels_come_from_rt_info(tagging_model, tmp_path):
    import openvino as ov

    recipe_path, artifacts, checkpoint = tagging_model
    layout = Layout.for_recipe(load_recipe(str(recipe_path)), artifacts)
    model = ov.Core().read_model(layout.ir_xml("FP32"))
    reversed_labels = list(reversed(CONLL_LABELS))
    model.set_rt_info(json.dumps(reversed_labels), ["omz_like", "labels"])
    xml_path = tmp_path / "relabelled.xml"
    ov.save_model(model, xml_path, compress_to_fp16=False)
    assert read_labels(xml_path, checkpoint, num_labels=9) == tuple(reversed_labels)


def test_labels_fall_back_to_config(tmp_path, tagging_model):
    import openvino as ov
    import openvino.opset13 as ops

    _, _, checkpoint = tagging_model
    parameter = ops.parameter([1, 4], np.float32, name="x")
    xml_path = tmp_path / "plain.xml"
    ov.save_model(ov.Model([ops.relu(parameter)], [parameter], "plain"), xml_path)
    assert read_labels(xml_path, checkpoint, num_labels=9) == CONLL_LABELS


def test_label_count_mismatch_is_error(tagging_model):
    from converter.errors import ArtifactError

    recipe_path, artifacts, checkpoint = tagging_model
    xml_path = Layout.for_recipe(load_recipe(str(recipe_path)), artifacts).ir_xml("FP32")
    with pytest.raises(ArtifactError, match="9 labels, but the model outputs 5 scores"):
        read_labels(xml_path, checkpoint, num_labels=5)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [('["O", "B-PER"]', ("O", "B-PER")), ("O,B-PER", ("O", "B-PER")), ("O B-PER", ("O", "B-PER"))],
)
def test_label_list_forms(stored, expected):
    assert parse_label_list(stored) == expected


# --- command line ---------------------------------------------------------


def test_cli_marks_entities_inline(run_cli, tagging_model, fp32_predictor):
    recipe_path, artifacts, _ = tagging_model
    text = "Angela Merkel met Emmanuel Macron in Berlin on Monday."
    result = run_cli("predict", recipe_path, text, "--artifacts-dir", artifacts, "--precision", "FP32", "--runtime-precision", "f32")
    assert result.exit_code == 0, result.stderr
    [prediction] = list(predict_lines(fp32_predictor, [text]))
    first = prediction.entities[0]
    marked = result.stdout.splitlines()[0]
    assert marked.startswith(text[: first.start] + f"[{first.text}]({first.type} {first.score:.2f})")
    assert marked.count("](") == len(prediction.entities)
    assert "type" in result.stdout
    assert "score" in result.stdout


def test_cli_json_lines(run_cli, tagging_model, fp32_predictor):
    recipe_path, artifacts, _ = tagging_model
    texts = ["Angela Merkel met Emmanuel Macron.", "Google opened an office in London."]
    result = run_cli("predict", recipe_path, *texts, "--json", "--artifacts-dir", artifacts, "--precision", "FP32", "--runtime-precision", "f32")
    assert result.exit_code == 0, result.stderr
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert documents == [p.to_json() for p in predict_lines(fp32_predictor, texts)]
    assert set(documents[0]["entities"][0]) == {"type", "score", "start", "end", "text"}


def test_cli_input_file_keeps_blank_lines(run_cli, tagging_model, tmp_path):
    recipe_path, artifacts, _ = tagging_model
    source = tmp_path / "input.txt"
    source.write_text("Angela Merkel met Emmanuel Macron.\n\nGoogle opened an office in London.\r\n", encoding="utf-8")
    result = run_cli("predict", recipe_path, "--input", source, "--json", "--artifacts-dir", artifacts)
    assert result.exit_code == 0, result.stderr
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["text"] for d in documents] == ["Angela Merkel met Emmanuel Macron.", "", "Google opened an office in London."]
    assert documents[1]["entities"] == []
    assert "━" not in result.stderr


def test_cli_reads_stdin(run_cli, tagging_model, monkeypatch):
    recipe_path, artifacts, _ = tagging_model
    stdin = io.TextIOWrapper(io.BytesIO("Paris\nBerlin\n".encode()), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    result = run_cli("predict", recipe_path, "--input", "-", "--json", "--artifacts-dir", artifacts)
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == ["Paris", "Berlin"]


def test_cli_default_precision_is_fp16(run_cli, tagging_model):
    recipe_path, artifacts, _ = tagging_model
    result = run_cli("predict", recipe_path, "Paris", "--artifacts-dir", artifacts, "--verbose")
    assert result.exit_code == 0, result.stderr
    assert "FP16/tagging-ner.xml" in result.stderr


def test_cli_non_utf8_file_names_byte_offset(run_cli, tagging_model, tmp_path):
    recipe_path, artifacts, _ = tagging_model
    source = tmp_path / "latin1.txt"
    source.write_bytes("Paris\nMalmö\n".encode("latin-1"))
    result = run_cli("predict", recipe_path, "--input", source, "--artifacts-dir", artifacts)
    assert result.exit_code == 1
    assert f"{source}: invalid UTF-8 at byte offset 10 (line 2)" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_missing_input_file(run_cli, tagging_model, tmp_path):
    recipe_path, artifacts, _ = tagging_model
    result = run_cli("predict", recipe_path, "--input", tmp_path / "absent.txt", "--artifacts-dir", artifacts)
    assert result.exit_code == 1
    assert "absent.txt: cannot read the file" in result.stderr


def test_cli_empty_file_is_error(run_cli, tagging_model, tmp_path):
    recipe_path, artifacts, _ = tagging_model
    source = tmp_path / "empty.txt"
    source.write_bytes(b"")
    result = run_cli("predict", recipe_path, "--input", source, "--artifacts-dir", artifacts)
    assert result.exit_code == 1
    assert "no text to analyse" in result.stderr


def test_cli_without_text_is_usage_error(run_cli, tagging_model):
    recipe_path, artifacts, _ = tagging_model
    result = run_cli("predict", recipe_path, "--artifacts-dir", artifacts)
    assert result.exit_code == 2
    assert "Pass TEXT arguments or --input" in result.stderr


@pytest.mark.parametrize("text", ["", "   \t"])
def test_cli_blank_text_is_usage_error(run_cli, tagging_model, text):
    recipe_path, artifacts, _ = tagging_model
    result = run_cli("predict", recipe_path, text, "--artifacts-dir", artifacts)
    assert result.exit_code == 2
    assert "TEXT argument 1 is empty or only whitespace" in result.stderr


def test_cli_text_and_input_conflict(run_cli, tagging_model, tmp_path):
    recipe_path, artifacts, _ = tagging_model
    result = run_cli("predict", recipe_path, "Paris", "--input", tmp_path / "x.txt", "--artifacts-dir", artifacts)
    assert result.exit_code == 2
    assert "pass TEXT or --input, not both" in result.stderr


def test_cli_missing_ir_points_to_convert(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    result = run_cli("predict", recipe_path, "Paris", "--artifacts-dir", artifacts)
    assert result.exit_code == 1
    assert "FP16 IR not found" in result.stderr
    assert f"omz-like convert {recipe_path.resolve()}" in result.stderr


def test_cli_invalid_device_lists_devices(run_cli, tagging_model):
    import openvino as ov

    recipe_path, artifacts, _ = tagging_model
    result = run_cli("predict", recipe_path, "Paris", "--device", "NPU7", "--artifacts-dir", artifacts)
    assert result.exit_code == 2
    assert "invalid --device 'NPU7'" in result.stderr
    assert f"Available devices: {', '.join(ov.Core().available_devices)}" in result.stderr


def test_cli_invalid_precision(run_cli, tagging_model):
    recipe_path, artifacts, _ = tagging_model
    result = run_cli("predict", recipe_path, "Paris", "--precision", "INT8", "--artifacts-dir", artifacts)
    assert result.exit_code == 2
    assert "The recipe builds: FP32, FP16" in result.stderr


def test_predict_imports_no_torch(tagging_model, tmp_path):
    recipe_path, artifacts, _ = tagging_model
    script = (
        "import sys\n"
        "from converter.cli.app import main\n"
        "try:\n"
        f"    main(['predict', {str(recipe_path)!r}, 'Paris', '--json', '--artifacts-dir', {str(artifacts)!r}])\n"
        "except SystemExit as exit_:\n"
        "    assert not exit_.code, exit_.code\n"
        "print(sorted(name for name in ('torch', 'transformers') if name in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=_subprocess_env(root))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert json.loads(result.stdout.splitlines()[0])["text"] == "Paris"


def _subprocess_env(root: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    return env
