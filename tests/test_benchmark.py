"""`omz-like benchmark` on the tiny checkpoint: structure of the results, never their speed."""

from __future__ import annotations

import json

import pytest

from converter.benchmark import MIN_RUNS, WARMUP_RUNS, summarise, time_runs
from converter.conversion import convert_ir
from converter.fetching import read_source_record
from converter.layout import Layout
from converter.recipe import load_recipe

SECONDS = "0.05"


def _convert(recipe_path, artifacts, precisions):
    recipe = load_recipe(str(recipe_path))
    layout = Layout.for_recipe(recipe, artifacts)
    convert_ir(recipe, layout, precisions, source_record=read_source_record(layout))
    return layout


def test_time_runs_counts_calls():
    calls = []
    durations, elapsed = time_runs(lambda: calls.append(1), seconds=0.0)
    assert len(durations) == MIN_RUNS
    assert len(calls) == WARMUP_RUNS + MIN_RUNS
    assert all(duration >= 0.0 for duration in durations)
    assert elapsed >= 0.0


def test_summarise_exact_values():
    row = summarise("OpenVINO FP16", "FP16/m.xml", [float(i) for i in range(1, 11)], 0.5, runtime_precision="default", inference_precision="bf16")
    assert row.runs == 10
    assert row.median_ms == 5.5
    assert row.p90_ms == 9.1
    assert row.throughput_per_s == 20.0
    assert row.runtime_precision == "default"
    assert row.inference_precision == "bf16"


def test_benchmark_json_rows(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    _convert(recipe_path, artifacts, ("FP32", "FP16"))

    result = run_cli("benchmark", recipe_path, "--artifacts-dir", artifacts, "--seconds", SECONDS, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["model"] == "tiny-ner"
    assert document["sequence_length"] == 128
    assert document["seconds_per_backend"] == 0.05
    assert document["tokens"] > 2

    rows = document["rows"]
    assert [(r["backend"], r["runtime_precision"]) for r in rows] == [
        ("PyTorch", "f32"),
        ("ONNX Runtime", "f32"),
        ("OpenVINO FP32", "f32"),
        ("OpenVINO FP32", "default"),
        ("OpenVINO FP16", "f32"),
        ("OpenVINO FP16", "default"),
    ]
    assert [r["artifact"] for r in rows] == ["source", "onnx/tiny-ner.onnx", "FP32/tiny-ner.xml", "FP32/tiny-ner.xml", "FP16/tiny-ner.xml", "FP16/tiny-ner.xml"]
    for row in rows:
        assert row["runs"] >= MIN_RUNS
        assert 0.0 < row["median_ms"] <= row["p90_ms"]
        assert row["throughput_per_s"] > 0.0
        assert row["inference_precision"] in ("f32", "bf16", "f16")
        if row["runtime_precision"] == "f32":
            assert row["inference_precision"] == "f32"
    assert rows[0]["speedup_vs_pytorch"] == 1.0


def test_benchmark_table_one_precision(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    _convert(recipe_path, artifacts, ("FP32",))

    result = run_cli("benchmark", recipe_path, "--artifacts-dir", artifacts, "--seconds", SECONDS, "--precision", "fp32")
    assert result.exit_code == 0, result.stderr
    assert "tiny-ner: one input of 128 positions" in result.stdout
    for backend in ("PyTorch", "ONNX Runtime", "OpenVINO FP32"):
        assert backend in result.stdout
    assert "OpenVINO FP16" not in result.stdout
    assert "benchmark: OpenVINO FP32, runtime precision f32 (runs at f32)" in result.stderr


def test_benchmark_missing_onnx(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source

    result = run_cli("benchmark", recipe_path, "--artifacts-dir", artifacts, "--seconds", SECONDS)
    assert result.exit_code == 1
    assert result.stdout == ""
    onnx_path = artifacts / "tiny-ner" / "onnx" / "tiny-ner.onnx"
    assert f"error: {onnx_path}: file not found. Run `omz-like convert {recipe_path}` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_benchmark_missing_fp16_ir(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    _convert(recipe_path, artifacts, ("FP32",))

    result = run_cli("benchmark", recipe_path, "--artifacts-dir", artifacts, "--seconds", SECONDS)
    assert result.exit_code == 1
    fp16_xml = artifacts / "tiny-ner" / "FP16" / "tiny-ner.xml"
    assert f"error: {fp16_xml}: file not found. Run `omz-like convert" in result.stderr
    assert "benchmark: PyTorch" not in result.stderr


@pytest.mark.parametrize("seconds", ["0", "-1", "nan", "inf"])
def test_benchmark_invalid_seconds(run_cli, tiny_source, seconds):
    recipe_path, artifacts = tiny_source

    result = run_cli("benchmark", recipe_path, "--artifacts-dir", artifacts, "--seconds", seconds)
    assert result.exit_code == 2
    assert f"error: invalid --seconds {float(seconds)}" in result.stderr
