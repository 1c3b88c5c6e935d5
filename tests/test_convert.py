"""`omz-like convert`: FP32 and FP16 OpenVINO IR from the tiny checkpoint's ONNX model."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from converter.conversion import save_ir
from converter.export import example_inputs
from converter.runtime import compile_ir
from tests.checkpoints import CONLL_LABELS, TINY_COMMIT
from tests.test_export import open_layout, place_source, torch_logits


def weight_types(xml_path: Path) -> set[str]:
    """Element types of the 2-D constants: embedding tables and MatMul weights."""
    model = ov.Core().read_model(str(xml_path))
    constants = [op for op in model.get_ordered_ops() if op.get_type_name() == "Constant"]
    return {op.get_element_type().get_type_name() for op in constants if len(op.get_output_shape(0)) == 2}


def test_convert_writes_both_precisions(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)

    result = run_cli("convert", recipe_path, "--artifacts-dir", artifacts)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"FP32  converted: {layout.ir_xml('FP32')}\nFP16  converted: {layout.ir_xml('FP16')}\n"
    assert layout.onnx_path.is_file()
    for precision in ("FP32", "FP16"):
        assert layout.ir_bin(precision).is_file()
        assert sorted(p.name for p in layout.ir_dir(precision).iterdir()) == ["tiny-ner.bin", "tiny-ner.xml"]
    assert f"precision=FP32 compress_to_fp16=False -> {layout.ir_xml('FP32')}" in result.stderr
    assert f"precision=FP16 compress_to_fp16=True -> {layout.ir_xml('FP16')}" in result.stderr


def test_ir_weight_element_types(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    assert run_cli("convert", recipe_path, "--artifacts-dir", artifacts).exit_code == 0

    assert weight_types(layout.ir_xml("FP32")) == {"f32"}
    assert weight_types(layout.ir_xml("FP16")) == {"f16"}


def test_ir_names_and_static_shapes(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    assert run_cli("convert", recipe_path, "--artifacts-dir", artifacts).exit_code == 0

    for precision in ("FP32", "FP16"):
        model = ov.Core().read_model(str(layout.ir_xml(precision)))
        assert [(p.get_any_name(), str(p.get_partial_shape())) for p in model.inputs] == [
            ("input_ids", "[1,128]"),
            ("attention_mask", "[1,128]"),
            ("token_type_ids", "[1,128]"),
        ]
        assert [p.get_element_type().get_type_name() for p in model.inputs] == ["i64", "i64", "i64"]
        assert [(p.get_any_name(), str(p.get_partial_shape())) for p in model.outputs] == [("output", "[1,128,9]")]


def test_ir_records_origin(run_cli, tiny_source, tmp_path):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    assert run_cli("convert", recipe_path, "--artifacts-dir", artifacts).exit_code == 0

    model = ov.Core().read_model(str(layout.ir_xml("FP16")))
    assert model.get_rt_info(["omz_like", "recipe"]).astype(str) == "tiny-ner"
    assert model.get_rt_info(["omz_like", "source_repo"]).astype(str) == "tests/tiny-ner"
    assert model.get_rt_info(["omz_like", "source_revision"]).astype(str) == "main"
    assert model.get_rt_info(["omz_like", "commit_hash"]).astype(str) == TINY_COMMIT
    assert model.get_rt_info(["omz_like", "recipe_sha256"]).astype(str) == recipe.sha256
    assert json.loads(model.get_rt_info(["omz_like", "labels"]).astype(str)) == list(CONLL_LABELS)
    assert str(tmp_path) not in layout.ir_xml("FP16").read_text()


def test_convert_is_byte_reproducible(run_cli, tmp_path, tiny_checkpoint, tiny_recipe):
    files = []
    for folder in ("first", "second"):
        artifacts = tmp_path / folder / "artifacts"
        layout = place_source(tiny_recipe, tiny_checkpoint, artifacts)
        assert run_cli("convert", tiny_recipe, "--artifacts-dir", artifacts).exit_code == 0
        files.append({p: (layout.ir_xml(p).read_bytes(), layout.ir_bin(p).read_bytes()) for p in ("FP32", "FP16")})

    assert files[0]["FP32"] == files[1]["FP32"]
    assert files[0]["FP16"] == files[1]["FP16"]


def test_fp32_ir_matches_torch(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    assert run_cli("convert", recipe_path, "--artifacts-dir", artifacts).exit_code == 0

    inputs = example_inputs(recipe, layout, "Sarah Jessica Parker lives in New York")
    inputs["token_type_ids"][0, 3:6] = 1
    actual = compile_ir(layout.ir_xml("FP32"), inference_precision="f32").infer(inputs)
    expected = torch_logits(recipe, layout, inputs)
    assert float(np.max(np.abs(actual - expected))) <= 1e-4


def test_fp16_save_keeps_graph(tmp_path, run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    assert run_cli("export", recipe_path, "--artifacts-dir", artifacts).exit_code == 0

    model = ov.convert_model(str(layout.onnx_path))
    save_ir(model, tmp_path / "fp32-first" / "m.xml", compress_to_fp16=False)
    save_ir(model, tmp_path / "fp16" / "m.xml", compress_to_fp16=True)
    save_ir(model, tmp_path / "fp32-after-fp16" / "m.xml", compress_to_fp16=False)

    for name in ("m.xml", "m.bin"):
        assert (tmp_path / "fp32-first" / name).read_bytes() == (tmp_path / "fp32-after-fp16" / name).read_bytes()


def test_convert_one_precision(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)

    result = run_cli("convert", recipe_path, "--artifacts-dir", artifacts, "--precision", "fp16")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"FP16  converted: {layout.ir_xml('FP16')}\n"
    assert not layout.ir_dir("FP32").exists()


def test_convert_rejects_invalid_precision(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source

    result = run_cli("convert", recipe_path, "--artifacts-dir", artifacts, "--precision", "FP32,INT8")

    assert result.exit_code == 2
    assert "invalid --precision 'INT8'. Valid values: FP32, FP16" in result.stderr


def test_convert_dry_run_writes_nothing(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    before = sorted(p.relative_to(artifacts) for p in artifacts.rglob("*"))

    result = run_cli("convert", recipe_path, "--artifacts-dir", artifacts, "--dry-run")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"FP32  dry-run: {layout.ir_xml('FP32')}\nFP16  dry-run: {layout.ir_xml('FP16')}\n"
    assert f"exporter=torch.onnx.dynamo opset=18 inputs=input_ids,attention_mask,token_type_ids -> {layout.onnx_path}" in result.stderr
    assert f"onnx={layout.onnx_path} precision=FP16 compress_to_fp16=True -> {layout.ir_xml('FP16')}" in result.stderr
    assert sorted(p.relative_to(artifacts) for p in artifacts.rglob("*")) == before


def test_convert_reexports_stale_onnx(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    assert run_cli("convert", recipe_path, "--artifacts-dir", artifacts).exit_code == 0
    for path in [layout.onnx_path, layout.ir_xml("FP32"), layout.ir_bin("FP32")]:
        os.utime(path, (1_000_000_000, 1_000_000_000))

    result = run_cli("convert", recipe_path, "--artifacts-dir", artifacts, "--precision", "FP32")

    assert result.exit_code == 0, result.stderr
    assert f"export: wrote {layout.onnx_path}" in result.stderr
    assert layout.onnx_path.stat().st_mtime > 1_000_000_000
    assert result.stdout == f"FP32  converted: {layout.ir_xml('FP32')}\n"


def test_convert_skips_current_ir(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    assert run_cli("convert", recipe_path, "--artifacts-dir", artifacts).exit_code == 0
    mtime = layout.ir_xml("FP16").stat().st_mtime

    skipped = run_cli("convert", recipe_path, "--artifacts-dir", artifacts, "--json")
    forced = run_cli("convert", recipe_path, "--artifacts-dir", artifacts, "--precision", "FP16", "--force")

    statuses = {p: entry["status"] for p, entry in json.loads(skipped.stdout)["ir"].items()}
    assert statuses == {"FP32": "up to date", "FP16": "up to date"}
    assert forced.stdout == f"FP16  converted: {layout.ir_xml('FP16')}\n"
    assert layout.ir_xml("FP16").stat().st_mtime >= mtime


def test_convert_rejects_corrupt_onnx(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    assert run_cli("export", recipe_path, "--artifacts-dir", artifacts).exit_code == 0
    data = layout.onnx_path.read_bytes()
    layout.onnx_path.write_bytes(data[: len(data) // 2])

    result = run_cli("convert", recipe_path, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    error_line = result.stderr.splitlines()[-1]
    assert error_line.startswith(f"error: {layout.onnx_path}: openvino.convert_model failed (")
    assert error_line.endswith("Rebuild the ONNX file with `omz-like export MODEL --force`")
    assert not layout.ir_dir("FP32").exists()


def test_convert_rejects_corrupt_ir(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    assert run_cli("convert", recipe_path, "--artifacts-dir", artifacts).exit_code == 0
    text = layout.ir_xml("FP32").read_text()
    layout.ir_xml("FP32").write_text(text[: len(text) // 2])

    result = run_cli("convert", recipe_path, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    error_line = result.stderr.splitlines()[-1]
    assert error_line.startswith(f"error: {layout.ir_xml('FP32')}: invalid IR (")
    assert error_line.endswith("Rebuild it with `omz-like convert MODEL --force`")


@pytest.mark.parametrize("failure", ["oserror", "runtimeerror"])
def test_convert_disk_full_leaves_nothing(run_cli, tiny_source, monkeypatch, failure):
    recipe_path, artifacts = tiny_source
    recipe, layout = open_layout(recipe_path, artifacts)
    assert run_cli("export", recipe_path, "--artifacts-dir", artifacts).exit_code == 0

    def save_then_fail(model, path, compress_to_fp16=True):
        Path(path).write_text("<net")
        Path(path).with_suffix(".bin").write_bytes(b"partial")
        if failure == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError(f"Can't write file {path}: No space left on device")

    monkeypatch.setattr(ov, "save_model", save_then_fail)
    result = run_cli("convert", recipe_path, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: {layout.ir_xml('FP32')}: no space left on the device. Free disk space or choose another --artifacts-dir"
    )
    assert list(layout.ir_dir("FP32").iterdir()) == []
    assert not layout.ir_dir("FP16").exists()
