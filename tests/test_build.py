"""`build` and `verify` on the tiny checkpoint: incremental, reproducible, all-or-nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from converter.layout import Layout
from converter.manifest import read_manifest
from converter.parity_inputs import QUICK_CORPUS_SENTENCES, corpus_sentences
from tests.checkpoints import place_source, write_recipe

REPO_ROOT = Path(__file__).resolve().parents[1]
IR_FILES = ("onnx/tiny-ner.onnx", "FP32/tiny-ner.xml", "FP32/tiny-ner.bin", "FP16/tiny-ner.xml", "FP16/tiny-ner.bin")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage_runs(result) -> dict[str, bool]:
    return {stage["stage"]: stage["ran"] for stage in json.loads(result.stdout)["stages"]}


def file_states(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def cli_process(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "converter", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


@pytest.fixture(scope="session")
def built_once(tmp_path_factory, tiny_checkpoint) -> Path:
    """A folder with a tiny recipe and its artifacts, built once for the whole session."""
    base = tmp_path_factory.mktemp("built-once")
    recipe = write_recipe(base / "recipes" / "tiny-ner.yaml", tiny_checkpoint)
    place_source(recipe, tiny_checkpoint, base / "artifacts")
    completed = subprocess.run(
        [sys.executable, "-m", "converter", "build", str(recipe), "--artifacts-dir", str(base / "artifacts")],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return base


@pytest.fixture
def built(built_once, tmp_path):
    """A private copy of the tiny model built once: (recipe path, artifacts dir, layout)."""
    base = tmp_path / "built"
    shutil.copytree(built_once, base)
    artifacts = base / "artifacts"
    return base / "recipes" / "tiny-ner.yaml", artifacts, Layout(root=artifacts / "tiny-ner", name="tiny-ner")


def test_build_writes_manifest(built, run_cli):
    recipe, artifacts, layout = built
    manifest = read_manifest(layout)
    paths = {a["path"] for a in manifest["artifacts"]}

    assert set(IR_FILES) <= paths
    assert {"source/config.json", "source/vocab.txt", "source/pytorch_model.bin", "source.json", "parity.json"} <= paths
    assert manifest["parity"] == {"ONNX": "PASS", "FP32": "PASS", "FP16": "PASS"}
    assert manifest["parity_passed"] is True
    assert manifest["source"]["commit_hash"] == "0123456789abcdef0123456789abcdef01234567"
    assert manifest["export"]["opset"] == 18
    assert set(manifest["tools"]) >= {"python", "torch", "transformers", "onnx", "onnxruntime", "openvino", "huggingface_hub", "omz-like"}
    for artifact in manifest["artifacts"]:
        assert sha256(layout.root / artifact["path"]) == artifact["sha256"]

    text = layout.manifest.read_text()
    assert str(artifacts) not in text
    assert str(Path.home()) not in text
    assert json.loads(text) == manifest
    assert text == json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_verify_passes_after_build(built, run_cli):
    recipe, artifacts, _ = built
    result = run_cli("verify", recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 0
    assert "artifacts match" in result.stdout


def test_noop_rebuild_rewrites_nothing(built, run_cli):
    recipe, artifacts, layout = built
    before = file_states(layout.root)
    result = run_cli("build", recipe, "--artifacts-dir", artifacts, "--json")

    assert result.exit_code == 0
    assert stage_runs(result) == {"fetch": False, "export": False, "convert": False, "parity": False}
    assert file_states(layout.root) == before


def test_noop_rebuild_does_not_import_torch(built):
    recipe, artifacts, _ = built
    script = (
        "import sys\n"
        "from converter.cli.app import main\n"
        f"try:\n    main(['build', {str(recipe)!r}, '--artifacts-dir', {str(artifacts)!r}, '--quiet'])\n"
        "except SystemExit as exit_:\n    code = exit_.code\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'openvino', 'onnxruntime', 'onnx') if m in sys.modules)\n"
        "print(code, heavy)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)

    assert completed.stdout.splitlines()[-1] == "0 []", completed.stderr


def test_recipe_change_reruns_affected_stages(built, run_cli):
    recipe, artifacts, layout = built
    document = yaml.safe_load(recipe.read_text())
    document["parity"] = {"FP16": {"max_abs": 0.06}}
    recipe.write_text(yaml.safe_dump(document, sort_keys=False))
    onnx_before = file_states(layout.root)["onnx/tiny-ner.onnx"]

    result = run_cli("build", recipe, "--artifacts-dir", artifacts, "--json")

    assert result.exit_code == 0, result.stderr
    assert stage_runs(result) == {"fetch": False, "export": False, "convert": False, "parity": True}
    assert file_states(layout.root)["onnx/tiny-ner.onnx"][0] == onnx_before[0]

    document["export"] = {"opset": 17}
    recipe.write_text(yaml.safe_dump(document, sort_keys=False))
    result = run_cli("build", recipe, "--artifacts-dir", artifacts, "--json")

    assert result.exit_code == 0, result.stderr
    assert stage_runs(result) == {"fetch": False, "export": True, "convert": True, "parity": True}
    assert read_manifest(layout)["export"]["opset"] == 17


def test_force_reruns_every_stage(built, run_cli):
    recipe, artifacts, _ = built
    result = run_cli("build", recipe, "--artifacts-dir", artifacts, "--json", "--force")

    assert result.exit_code == 0, result.stderr
    assert stage_runs(result) == {"fetch": True, "export": True, "convert": True, "parity": True}


def test_build_checks_the_quick_parity_set(built):
    _, _, layout = built
    report = json.loads(layout.parity_report.read_text())

    assert read_manifest(layout)["parity_inputs"] == "quick"
    assert report["inputs"]["set"] == "quick"
    assert report["inputs"]["count"] == QUICK_CORPUS_SENTENCES + 4


def test_build_parity_reuses_the_export_stage_logits(built):
    recipe, artifacts, _ = built
    completed = subprocess.run(
        [sys.executable, "-m", "converter", "build", str(recipe), "--artifacts-dir", str(artifacts), "--force"],
        capture_output=True, text=True, check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert "PyTorch logits for the 8 inputs come from the export stage" in completed.stderr
    assert "parity: PyTorch on" not in completed.stderr


def test_full_parity_reruns_parity_alone_and_covers_quick(built, run_cli):
    recipe, artifacts, layout = built
    full = subprocess.run(
        [sys.executable, "-m", "converter", "build", str(recipe), "--artifacts-dir", str(artifacts), "--json", "--full-parity"],
        capture_output=True, text=True, check=False,
    )
    report = json.loads(layout.parity_report.read_text())
    quick_again = run_cli("build", recipe, "--artifacts-dir", artifacts, "--json")

    assert full.returncode == 0, full.stderr
    assert stage_runs(full) == {"fetch": False, "export": False, "convert": False, "parity": True}
    # Export did not run, so parity ran PyTorch itself.
    assert f"parity: PyTorch on {len(corpus_sentences()) + 4} inputs" in full.stderr
    assert report["inputs"]["set"] == "full"
    assert read_manifest(layout)["parity_inputs"] == "full"
    assert stage_runs(quick_again) == {"fetch": False, "export": False, "convert": False, "parity": False}


def test_verify_names_flipped_byte(built, run_cli):
    recipe, artifacts, layout = built
    target = layout.root / "FP16/tiny-ner.bin"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))

    result = run_cli("verify", recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert "changed  FP16/tiny-ner.bin" in result.stdout
    assert "changed FP16/tiny-ner.bin" in result.stderr


def test_verify_names_missing_and_extra(built, run_cli):
    recipe, artifacts, layout = built
    (layout.root / "FP32/tiny-ner.xml").unlink()
    (layout.root / "FP32/stray.txt").write_text("x")

    result = run_cli("verify", recipe, "--artifacts-dir", artifacts, "--json")
    report = json.loads(result.stdout)

    assert result.exit_code == 1
    assert report["missing"] == ["FP32/tiny-ner.xml"]
    assert report["extra"] == ["FP32/stray.txt"]
    assert report["ok"] is False


def test_rebuild_repairs_flipped_byte(built, run_cli):
    recipe, artifacts, layout = built
    target = layout.root / "FP32/tiny-ner.bin"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))

    result = run_cli("build", recipe, "--artifacts-dir", artifacts, "--json")

    assert result.exit_code == 0, result.stderr
    assert stage_runs(result)["convert"] is True
    assert run_cli("verify", recipe, "--artifacts-dir", artifacts).exit_code == 0


def test_verify_without_manifest_points_to_build(tiny_source, run_cli):
    recipe, artifacts = tiny_source
    result = run_cli("verify", recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert "manifest not found" in result.stderr
    assert "omz-like build" in result.stderr


def test_two_builds_are_byte_identical(built, tmp_path, tiny_checkpoint, run_cli):
    recipe, _, first = built
    second_artifacts = tmp_path / "second"
    source = second_artifacts / "tiny-ner" / "source"
    source.mkdir(parents=True)
    for name in ("config.json", "vocab.txt", "pytorch_model.bin"):
        (source / name).write_bytes((tiny_checkpoint / name).read_bytes())
    (second_artifacts / "tiny-ner" / "source.json").write_bytes(first.source_record.read_bytes())

    result = run_cli("build", recipe, "--artifacts-dir", second_artifacts)

    assert result.exit_code == 0, result.stderr
    for relative in IR_FILES:
        assert sha256(first.root / relative) == sha256(second_artifacts / "tiny-ner" / relative), relative


def test_failed_parity_keeps_previous_artifacts(built, run_cli):
    recipe, artifacts, layout = built
    before = {p: sha256(layout.root / p) for p in IR_FILES}
    document = yaml.safe_load(recipe.read_text())
    document["parity"] = {"FP16": {"max_abs": 0.0, "mean_abs": 0.0}}
    recipe.write_text(yaml.safe_dump(document, sort_keys=False))

    result = run_cli("build", recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert "parity failed for FP16: max_abs" in result.stderr
    assert "(limit <= 0)" in result.stderr
    assert {p: sha256(layout.root / p) for p in IR_FILES} == before
    assert read_manifest(layout)["parity_passed"] is True


def test_quick_failure_falls_back_to_full(built, run_cli):
    """The quick set's mean can exceed the full set's, and then the full set's verdict is final."""
    recipe, artifacts, layout = built
    quick_mean = json.loads(layout.parity_report.read_text())["backends"]["FP16"]["metrics"]["mean_abs"]
    assert run_cli("parity", recipe, "--artifacts-dir", artifacts, "-p", "FP16").exit_code == 0
    full_mean = json.loads(layout.parity_check_report.read_text())["backends"]["FP16"]["metrics"]["mean_abs"]
    assert quick_mean > full_mean, "this checkpoint no longer shows a larger quick mean; pick another limit"
    document = yaml.safe_load(recipe.read_text())
    document["parity"] = {"FP16": {"mean_abs": (quick_mean + full_mean) / 2}}
    recipe.write_text(yaml.safe_dump(document, sort_keys=False))

    completed = subprocess.run(
        [sys.executable, "-m", "converter", "build", str(recipe), "--artifacts-dir", str(artifacts), "--json"],
        capture_output=True, text=True, check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert "parity: FP16 FAIL: mean_abs" in completed.stderr
    assert "FP16 failed on the quick set; checking the full set, whose verdict is final" in completed.stderr
    assert json.loads(completed.stdout)["parity_inputs"] == "full"
    assert json.loads(layout.parity_report.read_text())["inputs"]["set"] == "full"


def test_parity_command_leaves_the_build_verified(built, run_cli):
    recipe, artifacts, layout = built
    built_report = layout.parity_report.read_bytes()

    checked = run_cli("parity", recipe, "--artifacts-dir", artifacts)
    verified = run_cli("verify", recipe, "--artifacts-dir", artifacts)
    rebuilt = run_cli("build", recipe, "--artifacts-dir", artifacts, "--json")

    assert checked.exit_code == 0, checked.stderr
    assert json.loads(layout.parity_check_report.read_text())["inputs"]["set"] == "full"
    assert layout.parity_report.read_bytes() == built_report
    assert verified.exit_code == 0, verified.stdout
    assert stage_runs(rebuilt) == {"fetch": False, "export": False, "convert": False, "parity": False}


def test_failed_parity_still_prints_json(built, run_cli):
    recipe, artifacts, _ = built
    document = yaml.safe_load(recipe.read_text())
    document["parity"] = {"FP16": {"max_abs": 0.0}}
    recipe.write_text(yaml.safe_dump(document, sort_keys=False))

    result = run_cli("build", recipe, "--artifacts-dir", artifacts, "--json")
    printed = json.loads(result.stdout)

    assert result.exit_code == 1
    assert printed["ok"] is False
    assert printed["parity"] == {"ONNX": "PASS", "FP32": "PASS", "FP16": "FAIL"}
    assert printed["parity_inputs"] == "full"
    assert printed["error"].startswith("parity failed for FP16: max_abs")


def test_verify_extra_file_hint_says_delete(built, run_cli):
    recipe, artifacts, layout = built
    (layout.root / "notes.txt").write_text("mine\n")

    result = run_cli("verify", recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert "extra notes.txt" in result.stderr
    assert "Delete the extra files" in result.stderr


def test_killed_build_then_good_build(tiny_source, run_cli):
    recipe, artifacts = tiny_source
    staging_ir = artifacts / ".tiny-ner.build" / "onnx"
    process = cli_process("build", str(recipe), "--artifacts-dir", str(artifacts), "--force")
    deadline = time.monotonic() + 120
    while not staging_ir.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()

    final = artifacts / "tiny-ner"
    assert not (final / "manifest.json").exists()
    assert not (final / "onnx").exists()

    result = run_cli("build", recipe, "--artifacts-dir", artifacts)
    assert result.exit_code == 0, result.stderr
    assert run_cli("verify", recipe, "--artifacts-dir", artifacts).exit_code == 0
    assert not (artifacts / ".tiny-ner.build").exists()


def test_killed_rebuild_keeps_previous_build(built, run_cli):
    recipe, artifacts, layout = built
    before = {p: sha256(layout.root / p) for p in IR_FILES}
    staging_ir = artifacts / ".tiny-ner.build" / "FP32"
    process = cli_process("build", str(recipe), "--artifacts-dir", str(artifacts), "--force")
    deadline = time.monotonic() + 120
    while not staging_ir.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert {p: sha256(layout.root / p) for p in IR_FILES} == before
    assert run_cli("verify", recipe, "--artifacts-dir", artifacts).exit_code == 0
    assert run_cli("build", recipe, "--artifacts-dir", artifacts).exit_code == 0


def test_concurrent_builds_both_succeed(tiny_source, run_cli):
    recipe, artifacts = tiny_source
    processes = [cli_process("build", str(recipe), "--artifacts-dir", str(artifacts)) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]

    assert [p.returncode for p in processes] == [0, 0], [err for _, err in outputs]
    assert any("waiting for another omz-like process" in err for _, err in outputs)
    assert run_cli("verify", recipe, "--artifacts-dir", artifacts).exit_code == 0


def test_version_drift_names_tool_and_pin(tmp_path):
    from converter.manifest import pinned_versions, version_drift

    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# pins\ntorch==2.13.0\nhuggingface-hub==2.4.0\nOpenVINO==2026.4.1  # runtime\n")
    pins = pinned_versions(constraints)
    running = {"torch": "2.13.0+cpu", "huggingface_hub": "2.5.0", "openvino": "2026.4.1", "rich": "15.0.0"}

    assert pins == {"torch": "2.13.0", "huggingface-hub": "2.4.0", "openvino": "2026.4.1"}
    assert version_drift(running, pins) == ["huggingface_hub 2.5.0 (pinned 2.4.0)"]


def test_shipped_constraints_pin_artifact_tools():
    from converter.manifest import CONSTRAINTS_FILE, pinned_versions

    pins = pinned_versions(CONSTRAINTS_FILE)

    for name in ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "openvino", "huggingface-hub", "numpy"):
        assert name in pins, name


def test_build_one_precision_drops_others(built, run_cli):
    recipe, artifacts, layout = built
    (layout.root / "FP16" / "stray.txt").write_text("x")

    result = run_cli("build", recipe, "--artifacts-dir", artifacts, "--precision", "FP16")

    assert result.exit_code == 0, result.stderr
    assert not (layout.root / "FP32").exists()
    assert not (layout.root / "FP16" / "stray.txt").exists()
    assert read_manifest(layout)["precisions"] == ["FP16"]
    assert run_cli("verify", recipe, "--artifacts-dir", artifacts).exit_code == 0


def test_stale_staging_removed_by_noop_build(built, run_cli):
    recipe, artifacts, _ = built
    stale = artifacts / ".tiny-ner.build"
    (stale / "onnx").mkdir(parents=True)
    (stale / "onnx" / "partial.onnx").write_bytes(b"partial")

    result = run_cli("build", recipe, "--artifacts-dir", artifacts, "--json")

    assert result.exit_code == 0, result.stderr
    assert not stale.exists()
