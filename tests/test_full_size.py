"""End to end on a checkpoint with the full bert-base-NER configuration (random weights).

One `omz-like build` per session fetches the checkpoint from the loopback
Hub, exports it, converts both precisions and checks parity. The tests
below read what it left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converter.manifest import read_manifest
from tests.checkpoints import CONLL_LABELS, TINY_COMMIT, write_recipe
from tests.hub_server import HubServer
from tests.test_convert import weight_types
from tests.test_export import open_layout, torch_logits

pytestmark = pytest.mark.full_size

REPO = "tests/bert-base-ner-random"


def run_build(recipe: Path, artifacts: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "converter", "build", str(recipe), "--artifacts-dir", str(artifacts), "--json"],
        capture_output=True, text=True, env=env, check=False,
    )


@pytest.fixture(scope="module")
def full_size_build(full_size_checkpoint, tmp_path_factory):
    """Build the full-size recipe once from the loopback Hub: (recipe, artifacts, first run, second run)."""
    base = tmp_path_factory.mktemp("full-size-build")
    recipe = write_recipe(base / "bert-ner.yaml", full_size_checkpoint, name="bert-ner", repo=REPO, extra={"labels": list(CONLL_LABELS)})
    server = HubServer()
    server.state.add_repo(REPO, full_size_checkpoint, refs={"main": TINY_COMMIT})
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HOME": str(base / "hf-home"), "HF_HUB_CACHE": str(base / "hf-home" / "hub")}
    try:
        first = run_build(recipe, base / "artifacts", env)
        second = run_build(recipe, base / "artifacts", env)
    finally:
        server.stop()
    return recipe, base / "artifacts", first, second


def test_full_size_build_runs_every_stage(full_size_build, run_cli):
    recipe, artifacts, first, _ = full_size_build
    recipe_model, layout = open_layout(recipe, artifacts)
    manifest = read_manifest(layout)

    assert first.returncode == 0, first.stderr
    assert [s["ran"] for s in json.loads(first.stdout)["stages"]] == [True, True, True, True]
    assert manifest["source"]["commit_hash"] == TINY_COMMIT
    assert manifest["parity"] == {"ONNX": "PASS", "FP32": "PASS", "FP16": "PASS"}
    assert run_cli("verify", recipe, "--artifacts-dir", artifacts).exit_code == 0


def test_full_size_rebuild_is_noop(full_size_build):
    _, _, _, second = full_size_build

    assert second.returncode == 0, second.stderr
    assert [s["ran"] for s in json.loads(second.stdout)["stages"]] == [False, False, False, False]


def test_full_size_interface_and_weights(full_size_build):
    from converter.export import example_inputs
    from converter.runtime import compile_ir, onnx_session

    recipe_path, artifacts, _, _ = full_size_build
    recipe, layout = open_layout(recipe_path, artifacts)
    session = onnx_session(layout.onnx_path)

    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        ("input_ids", [1, 128]),
        ("attention_mask", [1, 128]),
        ("token_type_ids", [1, 128]),
    ]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("output", [1, 128, 9])]
    assert weight_types(layout.ir_xml("FP32")) == {"f32"}
    assert weight_types(layout.ir_xml("FP16")) == {"f16"}

    inputs = example_inputs(recipe, layout, "Angela Merkel met Emmanuel Macron in Paris on Monday, Reuters said.")
    expected = torch_logits(recipe, layout, inputs)
    for precision in ("FP32", "FP16"):
        compiled = compile_ir(layout.ir_xml(precision), inference_precision="f32")
        assert [p.get_any_name() for p in compiled.compiled.outputs] == ["output"]
        actual = compiled.infer(inputs)
        assert actual.shape == (1, 128, 9)
        limit = 1e-4 if precision == "FP32" else recipe.tolerances["FP16"].max_abs
        assert float(np.max(np.abs(actual - expected))) <= limit, precision


def test_full_size_parity_metrics(full_size_build):
    recipe_path, artifacts, _, _ = full_size_build
    _, layout = open_layout(recipe_path, artifacts)
    report = json.loads(layout.parity_report.read_text())
    metrics = {key: backend["metrics"] for key, backend in report["backends"].items()}

    assert report["passed"] is True
    # A build checks the quick set: four corpus sentences and the four edge inputs.
    assert report["inputs"]["set"] == "quick"
    assert report["inputs"]["count"] == 8
    for key in ("ONNX", "FP32"):
        assert metrics[key]["nonfinite"] == 0
        assert metrics[key]["max_abs"] <= 1e-4
        assert metrics[key]["argmax_agreement"] == 1.0
        assert metrics[key]["entity_agreement"] == 1.0
    assert metrics["FP16"]["max_abs"] <= 0.05
    assert metrics["FP16"]["argmax_agreement"] >= 0.999
