"""`omz-like export`: a checked, reproducible fixed-shape ONNX model on the tiny checkpoint."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from converter.checkpoint import load_token_classifier
from converter.errors import CheckpointError, DiskFullError, ExportError
from converter.export import example_inputs, onnx_artifact_files, onnx_is_stale
from converter.layout import Layout
from converter.recipe import load_recipe
from converter.runtime import onnx_session
from tests.checkpoints import CONLL_LABELS, TINY, TINY_COMMIT, place_source, write_checkpoint, write_recipe


def open_layout(recipe_path: Path, artifacts: Path):
    recipe = load_recipe(str(recipe_path))
    return recipe, Layout.for_recipe(recipe, artifacts)


def torch_logits(recipe, layout, inputs: dict[str, np.ndarray]) -> np.ndarray:
    model = load_token_classifier(recipe, layout)
    with torch.no_grad():
        return model(**{name: torch.from_numpy(value) for name, value in inputs.items()}).logits.numpy()


def test_export_writes_checked_onnx(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)

    result = run_cli("export", recipe_path, "--artifacts-dir", artifacts)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"exported: {layout.onnx_path}\nexported: {layout.onnx_path}.data\n"
    assert "opset=18" in result.stderr
    assert "max_abs_diff=" in result.stderr
    model = onnx.load(str(layout.onnx_path), load_external_data=False)
    assert [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")] == [18]
    session = onnx_session(layout.onnx_path)
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [
        ("input_ids", [1, 128], "tensor(int64)"),
        ("attention_mask", [1, 128], "tensor(int64)"),
        ("token_type_ids", [1, 128], "tensor(int64)"),
    ]
    assert [(o.name, o.shape, o.type) for o in session.get_outputs()] == [("output", [1, 128, 9], "tensor(float)")]
    assert sorted(p.name for p in layout.onnx_dir.iterdir()) == ["tiny-ner.onnx", "tiny-ner.onnx.data"]


def test_export_matches_torch_on_other_text(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    assert run_cli("export", recipe_path, "--artifacts-dir", artifacts).exit_code == 0

    # Different padding lengths show that nothing from the example input was folded into a constant.
    for text in ("Obama", "Angela Merkel visited Paris on Monday with the Prime Minister of France " * 5):
        inputs = example_inputs(recipe, layout, text)
        actual = onnx_session(layout.onnx_path).run(None, inputs)[0]
        expected = torch_logits(recipe, layout, inputs)
        assert float(np.max(np.abs(actual - expected))) <= 1e-4


def test_token_type_ids_bound_by_name(run_cli, tmp_path, tiny_checkpoint):
    # The recipe lists the inputs in an order that differs from the model's arguments.
    order = ("token_type_ids", "input_ids", "attention_mask")
    inputs_section = [{"name": name, "shape": [1, 128], "dtype": "int64"} for name in order]
    recipe_path = write_recipe(tmp_path / "tiny-ner.yaml", tiny_checkpoint, extra={"inputs": inputs_section})
    artifacts = tmp_path / "artifacts"
    layout = place_source(recipe_path, tiny_checkpoint, artifacts)
    recipe = load_recipe(str(recipe_path))

    assert run_cli("export", recipe_path, "--artifacts-dir", artifacts).exit_code == 0

    graph = onnx.load(str(layout.onnx_path)).graph
    assert [i.name for i in graph.input] == list(order)
    segment_lookups = [n for n in graph.node if n.op_type == "Gather" and "token_type_embeddings" in n.input[0]]
    assert len(segment_lookups) == 1
    assert segment_lookups[0].input[1] == "token_type_ids"

    # Token types mark positions 8 to 11 as the second segment, a pattern the attention mask does not follow.
    inputs = example_inputs(recipe, layout, "Hello Sarah Jessica Parker who lives in New York")
    inputs["token_type_ids"][0, 8:12] = 1
    assert not np.array_equal(inputs["token_type_ids"], inputs["attention_mask"])
    actual = onnx_session(layout.onnx_path).run(None, inputs)[0]
    expected = torch_logits(recipe, layout, inputs)
    assert float(np.max(np.abs(actual - expected))) <= 1e-4

    zero_segments = dict(inputs, token_type_ids=np.zeros_like(inputs["token_type_ids"]))
    changed = onnx_session(layout.onnx_path).run(None, zero_segments)[0]
    assert float(np.max(np.abs(changed - actual))) > 1e-3


def test_export_is_byte_reproducible(run_cli, tmp_path, tiny_checkpoint, tiny_recipe):
    files = []
    for folder in ("first", "second"):
        artifacts = tmp_path / folder / "artifacts"
        layout = place_source(tiny_recipe, tiny_checkpoint, artifacts)
        assert run_cli("export", tiny_recipe, "--artifacts-dir", artifacts).exit_code == 0
        files.append(layout.onnx_path.read_bytes())

    assert files[0] == files[1]
    assert str(tmp_path).encode() not in files[0]


def test_export_loads_from_other_directory(run_cli, tiny_source, tmp_path, monkeypatch):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts.resolve())
    assert run_cli("export", recipe_path, "--artifacts-dir", artifacts).exit_code == 0

    # Every file of the artifact set sits in onnx/, so the model loads from any working directory.
    data_file = layout.onnx_dir / "tiny-ner.onnx.data"
    assert onnx_artifact_files(layout.onnx_path) == [layout.onnx_path, data_file]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    onnx.checker.check_model(str(layout.onnx_path))
    inputs = example_inputs(recipe, layout)
    assert onnx_session(layout.onnx_path).run(None, inputs)[0].shape == (1, 128, 9)


def test_export_dry_run_writes_nothing(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    before = sorted(p.relative_to(artifacts) for p in artifacts.rglob("*"))

    result = run_cli("export", recipe_path, "--artifacts-dir", artifacts, "--dry-run")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"dry-run: {layout.onnx_path}\n"
    assert "exporter=torch.onnx.dynamo opset=18" in result.stderr
    assert sorted(p.relative_to(artifacts) for p in artifacts.rglob("*")) == before


def test_export_skips_current_and_force_rebuilds(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    assert run_cli("export", recipe_path, "--artifacts-dir", artifacts).exit_code == 0
    os.utime(layout.onnx_path, (1_000_000_000, 2_000_000_000))
    old_mtime = layout.onnx_path.stat().st_mtime
    for path in list(layout.source_dir.iterdir()) + [recipe_path]:
        os.utime(path, (1_000_000_000, 1_000_000_000))

    skipped = run_cli("export", recipe_path, "--artifacts-dir", artifacts)
    assert skipped.stdout == f"up to date: {layout.onnx_path}\nup to date: {layout.onnx_path}.data\n"
    assert layout.onnx_path.stat().st_mtime == old_mtime

    forced = run_cli("export", recipe_path, "--artifacts-dir", artifacts, "--force")
    assert forced.stdout == f"exported: {layout.onnx_path}\nexported: {layout.onnx_path}.data\n"
    assert layout.onnx_path.stat().st_mtime != old_mtime


def test_onnx_is_stale_follows_inputs(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    assert onnx_is_stale(recipe, layout) is True

    assert run_cli("export", recipe_path, "--artifacts-dir", artifacts).exit_code == 0
    assert onnx_is_stale(recipe, layout) is False

    built = layout.onnx_path.stat().st_mtime
    os.utime(layout.source_dir / "vocab.txt", (built + 10, built + 10))
    assert onnx_is_stale(recipe, layout) is True
    os.utime(layout.source_dir / "vocab.txt", (built - 10, built - 10))
    os.utime(recipe_path, (built + 10, built + 10))
    assert onnx_is_stale(recipe, layout) is True


def test_export_rejects_base_model(run_cli, tmp_path):
    checkpoint = write_checkpoint(tmp_path / "base-model", TINY, architecture="BertModel")
    recipe_path = write_recipe(tmp_path / "tiny-ner.yaml", checkpoint)
    artifacts = tmp_path / "artifacts"
    layout = place_source(recipe_path, checkpoint, artifacts)

    result = run_cli("export", recipe_path, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [result.stderr.splitlines()[-1]]
    assert f"{layout.source_dir / 'config.json'}: architecture BertModel is not a token-classification model" in result.stderr
    assert not layout.onnx_dir.exists()


def test_export_rejects_label_count(run_cli, tmp_path, tiny_checkpoint):
    outputs = [{"name": "output", "shape": [1, 128, 5]}]
    recipe_path = write_recipe(tmp_path / "tiny-ner.yaml", tiny_checkpoint, extra={"outputs": outputs})
    artifacts = tmp_path / "artifacts"
    layout = place_source(recipe_path, tiny_checkpoint, artifacts)

    result = run_cli("export", recipe_path, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert "the checkpoint has 9 labels, but the recipe's outputs[0].shape [1, 128, 5] expects 5" in result.stderr
    assert not layout.onnx_path.exists()


def test_checkpoint_rejects_label_order(tmp_path, tiny_checkpoint):
    swapped = ["B-MISC", "O", *CONLL_LABELS[2:]]
    recipe_path = write_recipe(tmp_path / "tiny-ner.yaml", tiny_checkpoint, extra={"labels": swapped})
    layout = place_source(recipe_path, tiny_checkpoint, tmp_path / "artifacts")

    with pytest.raises(CheckpointError) as caught:
        load_token_classifier(load_recipe(str(recipe_path)), layout)

    assert f"id2label order {list(CONLL_LABELS)} differs from the recipe's labels {swapped}" in caught.value.message


def test_export_disk_full_leaves_nothing(run_cli, tiny_source, monkeypatch):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)

    class ProgramOnFullDisk:
        model = None

        def save(self, path, **kwargs):
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")

    def export_then_fail(*args, **kwargs):
        return ProgramOnFullDisk()

    monkeypatch.setattr("converter.export._strip_metadata", lambda model: None)
    # The patched exporter exists only in this process, so run the export step here too.
    monkeypatch.setattr("converter.export.run_isolated", lambda function, *arguments: function(*arguments))
    monkeypatch.setattr(torch.onnx, "export", export_then_fail)
    with pytest.raises(DiskFullError):
        from converter.export import export_onnx

        export_onnx(recipe, layout, source_record={})

    result = run_cli("export", recipe_path, "--artifacts-dir", artifacts)
    assert result.exit_code == 1
    assert f"{layout.onnx_path}: no space left on the device" in result.stderr
    assert list(layout.onnx_dir.iterdir()) == []


def test_checker_rejection_is_export_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from converter.export import _run_checker

    node = helper.make_node("NotAnOperator", ["x"], ["y"])
    graph = helper.make_graph(
        [node], "broken", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]
    )
    path = tmp_path / "broken.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))

    with pytest.raises(ExportError) as caught:
        _run_checker(path)

    assert str(caught.value).startswith("broken.onnx: onnx.checker rejected the exported model")
