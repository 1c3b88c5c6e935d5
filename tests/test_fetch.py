"""`omz-like fetch` against the loopback Hub in tests/hub_server.py."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from converter.errors import HubUnreachableError
from converter.fetching import ensure_source, fetch, read_source_record
from converter.layout import Layout
from converter.recipe import load_recipe
from tests.checkpoints import TINY_COMMIT, write_recipe
from tests.hub_server import TINY_REPO, TINY_TAG, Fault, HubServer

FILES = ("config.json", "pytorch_model.bin", "vocab.txt")
WEIGHTS = "pytorch_model.bin"


@pytest.fixture
def artifacts(tmp_path) -> Path:
    return tmp_path / "artifacts"


def source_dir(artifacts: Path) -> Path:
    return artifacts / "tiny-ner" / "source"


def record_path(artifacts: Path) -> Path:
    return artifacts / "tiny-ner" / "source.json"


def blobs_dir() -> Path:
    return Path(os.environ["HF_HUB_CACHE"]) / "models--tests--tiny-ner" / "blobs"


def expected_record(recipe_path: Path, *, revision: str = "main") -> dict:
    recipe = load_recipe(str(recipe_path))
    files = [{"name": f.name, "size": f.size, "sha384": f.sha384} for f in recipe.source.files]
    return {"repo": TINY_REPO, "revision": revision, "commit_hash": TINY_COMMIT, "files": files}


def error_lines(stderr: str) -> list[str]:
    """Return the stderr lines of the error report, without the progress log above it."""
    return [line for line in stderr.splitlines() if line.startswith("error:") or "Traceback" in line]


def assert_placed(artifacts: Path, checkpoint: Path) -> None:
    for name in FILES:
        placed = source_dir(artifacts) / name
        assert not placed.is_symlink(), name
        assert placed.is_file(), name
        # A copy, not a hard link into the cache: editing it must not change the cache.
        assert placed.stat().st_nlink == 1, name
        assert placed.read_bytes() == (checkpoint / name).read_bytes(), name


def subprocess_fetch(recipe: Path, artifacts: Path, *extra: str) -> subprocess.Popen:
    """Start `python -m converter fetch` with the test's environment (HF_HOME, HF_ENDPOINT, ...)."""
    command = [sys.executable, "-m", "converter", "fetch", str(recipe), "--artifacts-dir", str(artifacts), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


# --- success --------------------------------------------------------------


def test_fetch_places_verified_files(run_cli, tiny_hub, tiny_recipe, tiny_checkpoint, artifacts):
    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"source: {source_dir(artifacts)} (commit {TINY_COMMIT})\n"
    assert_placed(artifacts, tiny_checkpoint)
    assert json.loads(record_path(artifacts).read_text()) == expected_record(tiny_recipe)
    assert f"{TINY_REPO}: revision main -> commit {TINY_COMMIT}" in result.stderr
    for name in FILES:
        assert f"{name}: verified" in result.stderr


def test_record_has_sorted_keys(run_cli, tiny_hub, tiny_recipe, artifacts):
    run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    text = record_path(artifacts).read_text()
    assert text == json.dumps(expected_record(tiny_recipe), indent=2, sort_keys=True) + "\n"


def test_rerun_sends_no_request(run_cli, tiny_hub, tiny_recipe, artifacts):
    assert run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts).exit_code == 0
    tiny_hub.state.requests.clear()

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 0, result.stderr
    assert tiny_hub.state.requests == []
    assert f"{WEIGHTS}: skipped, already verified" in result.stderr


def test_rerun_works_with_server_stopped(run_cli, tiny_hub, tiny_recipe, tiny_checkpoint, artifacts):
    assert run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts).exit_code == 0
    tiny_hub.stop()

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"source: {source_dir(artifacts)} (commit {TINY_COMMIT})\n"
    assert_placed(artifacts, tiny_checkpoint)


def test_rerun_replaces_a_damaged_file(run_cli, tiny_hub, tiny_recipe, tiny_checkpoint, artifacts):
    assert run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts).exit_code == 0
    placed = source_dir(artifacts) / "vocab.txt"
    placed.unlink()
    placed.write_bytes(b"x" * placed_size(tiny_checkpoint, "vocab.txt"))

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 0, result.stderr
    assert "vocab.txt: placed file no longer matches its sha384 pin" in result.stderr
    assert_placed(artifacts, tiny_checkpoint)


def placed_size(checkpoint: Path, name: str) -> int:
    return (checkpoint / name).stat().st_size


def test_json_output(run_cli, tiny_hub, tiny_recipe, artifacts):
    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts, "--json")

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document == {"source_dir": str(source_dir(artifacts)), **expected_record(tiny_recipe)}


# --- environment and options ----------------------------------------------


def test_offline_flag_uses_cache(run_cli, tiny_hub, tiny_recipe, tiny_checkpoint, tmp_path):
    assert run_cli("fetch", tiny_recipe, "--artifacts-dir", tmp_path / "first").exit_code == 0
    tiny_hub.stop()

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", tmp_path / "second", "--offline")

    assert result.exit_code == 0, result.stderr
    assert_placed(tmp_path / "second", tiny_checkpoint)
    assert json.loads(record_path(tmp_path / "second").read_text())["commit_hash"] == TINY_COMMIT


def test_offline_flag_without_cache(run_cli, tiny_hub, tiny_recipe, artifacts):
    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts, "--offline")

    assert result.exit_code == 1
    assert len(error_lines(result.stderr)) == 1, result.stderr
    assert error_lines(result.stderr)[0].startswith(f"error: {TINY_REPO}@main: not in the Hugging Face cache")
    assert "offline mode is on" in result.stderr
    assert "Traceback" not in result.stderr
    assert tiny_hub.state.requests == []
    assert not source_dir(artifacts).exists()


def test_hf_hub_offline_variable(run_cli, tiny_hub, tiny_recipe, tiny_checkpoint, tmp_path, monkeypatch):
    assert run_cli("fetch", tiny_recipe, "--artifacts-dir", tmp_path / "first").exit_code == 0
    tiny_hub.state.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", tmp_path / "second")

    assert result.exit_code == 0, result.stderr
    assert tiny_hub.state.requests == []
    assert_placed(tmp_path / "second", tiny_checkpoint)


def test_hf_endpoint_selects_mirror(run_cli, tiny_hub, tiny_recipe, tiny_checkpoint, artifacts, monkeypatch):
    mirror = HubServer()
    try:
        mirror.state.add_repo(TINY_REPO, tiny_checkpoint)
        monkeypatch.setenv("HF_ENDPOINT", mirror.url)

        result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

        assert result.exit_code == 0, result.stderr
        assert tiny_hub.state.requests == []
        assert len(mirror.state.gets(WEIGHTS)) == 1
        assert_placed(artifacts, tiny_checkpoint)
    finally:
        mirror.stop()


def test_revision_commit_hash(run_cli, tiny_hub, tiny_recipe, artifacts):
    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts, "--revision", TINY_COMMIT)

    assert result.exit_code == 0, result.stderr
    assert json.loads(record_path(artifacts).read_text()) == expected_record(tiny_recipe, revision=TINY_COMMIT)
    # A commit hash needs no resolving, so the model info endpoint is never called.
    assert [r for r in tiny_hub.state.requests if r.path.startswith("/api/")] == []
    assert all(f"/resolve/{TINY_COMMIT}/" in r.path for r in tiny_hub.state.requests)


def test_revision_tag(run_cli, tiny_hub, tiny_recipe, artifacts):
    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts, "--revision", TINY_TAG)

    assert result.exit_code == 0, result.stderr
    assert json.loads(record_path(artifacts).read_text()) == expected_record(tiny_recipe, revision=TINY_TAG)
    assert tiny_hub.state.requests[0].path == f"/api/models/{TINY_REPO}/revision/{TINY_TAG}"


def test_other_revision_fetches_again(run_cli, tiny_hub, tiny_recipe, artifacts):
    assert run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts).exit_code == 0
    tiny_hub.state.requests.clear()

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts, "--revision", TINY_TAG)

    assert result.exit_code == 0, result.stderr
    assert [r.path for r in tiny_hub.state.requests] == [f"/api/models/{TINY_REPO}/revision/{TINY_TAG}"]
    assert json.loads(record_path(artifacts).read_text())["revision"] == TINY_TAG


def test_force_downloads_again(run_cli, tiny_hub, tiny_recipe, tiny_checkpoint, artifacts):
    assert run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts).exit_code == 0
    tiny_hub.state.requests.clear()

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts, "--force")

    assert result.exit_code == 0, result.stderr
    for name in FILES:
        assert len(tiny_hub.state.gets(name)) == 1, name
    assert_placed(artifacts, tiny_checkpoint)


def test_force_with_offline_is_usage_error(run_cli, tiny_recipe, artifacts):
    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts, "--force", "--offline")

    assert result.exit_code == 2
    assert "--force needs the network, but offline mode is on" in result.stderr


# --- Hub errors -----------------------------------------------------------


def test_gated_repo_without_token(run_cli, tiny_hub, tiny_recipe, artifacts):
    tiny_hub.state.repos[TINY_REPO].token = "hf_test_token"

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert len(error_lines(result.stderr)) == 1, result.stderr
    assert f"error: {TINY_REPO}: access denied (HTTP 401)" in result.stderr
    assert "no token is set" in result.stderr
    assert "set HF_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_gated_repo_with_wrong_token(run_cli, tiny_hub, tiny_recipe, artifacts, monkeypatch):
    tiny_hub.state.repos[TINY_REPO].token = "hf_test_token"
    monkeypatch.setenv("HF_TOKEN", "hf_other_token")

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert f"error: {TINY_REPO}: access denied (HTTP 403)" in result.stderr
    assert "HF_TOKEN is set but its token has no access" in result.stderr


def test_gated_repo_with_token(run_cli, tiny_hub, tiny_recipe, tiny_checkpoint, artifacts, monkeypatch):
    tiny_hub.state.repos[TINY_REPO].token = "hf_test_token"
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 0, result.stderr
    assert_placed(artifacts, tiny_checkpoint)
    assert {r.authorization for r in tiny_hub.state.requests} == {"Bearer hf_test_token"}


def test_unknown_repo(run_cli, tiny_hub, tiny_checkpoint, tmp_path, artifacts):
    recipe = write_recipe(tmp_path / "missing.yaml", tiny_checkpoint, repo="tests/missing")

    result = run_cli("fetch", recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert len(error_lines(result.stderr)) == 1, result.stderr
    assert f"error: tests/missing: repository not found at {tiny_hub.url} (HTTP 404)" in result.stderr
    assert "Check source.repo in the recipe" in result.stderr


def test_unknown_revision(run_cli, tiny_hub, tiny_recipe, artifacts):
    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts, "--revision", "no-such-branch")

    assert result.exit_code == 1
    assert len(error_lines(result.stderr)) == 1, result.stderr
    assert f"error: {TINY_REPO}: revision 'no-such-branch' not found" in result.stderr
    assert "--revision" in result.stderr


def test_unknown_commit_hash(run_cli, tiny_hub, tiny_recipe, artifacts):
    unknown = "f" * 40

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts, "--revision", unknown)

    assert result.exit_code == 1
    assert f"error: {TINY_REPO}: revision '{unknown}' not found" in result.stderr


def test_file_missing_on_hub(run_cli, tiny_hub, tiny_recipe, artifacts):
    del tiny_hub.state.repos[TINY_REPO].files["vocab.txt"]

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert len(error_lines(result.stderr)) == 1, result.stderr
    assert f"error: {TINY_REPO}@{TINY_COMMIT}: file 'vocab.txt' not found in the repository" in result.stderr
    assert not record_path(artifacts).exists()


def test_unreachable_endpoint(run_cli, tiny_recipe, artifacts):
    # No server: HF_ENDPOINT is the closed loopback port that conftest sets.
    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert len(error_lines(result.stderr)) == 1, result.stderr
    assert f"error: {TINY_REPO}@main: cannot reach the Hub at http://127.0.0.1:9" in result.stderr
    assert "set HF_ENDPOINT" in result.stderr
    assert "--offline" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_variable_shows_traceback(run_cli, tiny_recipe, artifacts, monkeypatch):
    monkeypatch.setenv("OMZ_LIKE_DEBUG", "1")

    with pytest.raises(HubUnreachableError):
        run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)


# --- integrity ------------------------------------------------------------


def test_wrong_bytes_rejected_then_refetched(run_cli, tiny_hub, tiny_recipe, tiny_checkpoint, artifacts):
    good = (tiny_checkpoint / WEIGHTS).read_bytes()
    bad = bytes([good[0] ^ 0xFF]) + good[1:]
    tiny_hub.state.faults[WEIGHTS] = Fault(body=bad)

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    expected = hashlib.sha384(good).hexdigest()
    actual = hashlib.sha384(bad).hexdigest()
    assert f"error: {WEIGHTS}: sha384 mismatch: expected {expected}, got {actual}" in result.stderr
    assert not (source_dir(artifacts) / WEIGHTS).exists()
    assert not record_path(artifacts).exists()
    assert not (blobs_dir() / hashlib.sha256(good).hexdigest()).exists()

    del tiny_hub.state.faults[WEIGHTS]
    retry = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert retry.exit_code == 0, retry.stderr
    assert_placed(artifacts, tiny_checkpoint)


def test_size_mismatch_rejected(run_cli, tiny_hub, tiny_recipe, tiny_checkpoint, artifacts):
    good = (tiny_checkpoint / "vocab.txt").read_bytes()
    tiny_hub.state.faults["vocab.txt"] = Fault(body=good + b"extra\n")

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert f"error: vocab.txt: size mismatch: expected {len(good)}, got {len(good) + 6}" in result.stderr
    assert not (source_dir(artifacts) / "vocab.txt").exists()
    assert not record_path(artifacts).exists()


# --- interrupted downloads ------------------------------------------------


def test_dropped_connection_retried_in_run(run_cli, tiny_hub, tiny_recipe, tiny_checkpoint, artifacts):
    tiny_hub.state.faults[WEIGHTS] = Fault(cut_at=100_000, cuts_left=1)

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 0, result.stderr
    # huggingface_hub counts only whole 10 MiB chunks as received, so a file
    # cut before its first chunk boundary is requested again from the start.
    assert [r.range for r in tiny_hub.state.gets(WEIGHTS)] == [None, None]
    assert_placed(artifacts, tiny_checkpoint)


def test_dropped_connection_resumes_with_range(run_cli, hub_server, tiny_checkpoint, tmp_path, artifacts, monkeypatch):
    # 11 MiB, so that the first 10 MiB chunk of huggingface_hub's reader
    # completes before the cut.
    folder = tmp_path / "large-checkpoint"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / "large.bin").write_bytes(random.Random(0).randbytes(11 << 20))
    recipe = write_recipe(tmp_path / "large.yaml", folder)
    hub_server.state.add_repo(TINY_REPO, folder)
    hub_server.state.faults["large.bin"] = Fault(cut_at=(10 << 20) + 4096, cuts_left=1)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)

    result = run_cli("fetch", recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 0, result.stderr
    assert [r.range for r in hub_server.state.gets("large.bin")] == [None, f"bytes={10 << 20}-"]
    assert (source_dir(artifacts) / "large.bin").read_bytes() == (folder / "large.bin").read_bytes()


def test_dropped_connection_leaves_nothing_complete(run_cli, tiny_hub, tiny_recipe, tiny_checkpoint, artifacts):
    # Every response stops at the same offset, so huggingface_hub's retries
    # make no progress and the run fails.
    tiny_hub.state.faults[WEIGHTS] = Fault(cut_at=100_000)

    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert f"error: {TINY_REPO}@{TINY_COMMIT}: {WEIGHTS}: connection to {tiny_hub.url} failed" in result.stderr
    assert "Run fetch again" in result.stderr
    assert not (source_dir(artifacts) / WEIGHTS).exists()
    assert not record_path(artifacts).exists()
    assert not (blobs_dir() / hashlib.sha256((tiny_checkpoint / WEIGHTS).read_bytes()).hexdigest()).exists()

    del tiny_hub.state.faults[WEIGHTS]
    retry = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert retry.exit_code == 0, retry.stderr
    assert_placed(artifacts, tiny_checkpoint)


def test_killed_fetch_then_rerun(run_cli, tiny_hub, tiny_recipe, tiny_checkpoint, artifacts):
    tiny_hub.state.faults[WEIGHTS] = Fault(delay=0.5)
    process = subprocess_fetch(tiny_recipe, artifacts)
    try:
        assert tiny_hub.state.body_started.wait(timeout=120), "the download never started"
    finally:
        process.kill()
        process.communicate(timeout=60)

    weights_blob = blobs_dir() / hashlib.sha256((tiny_checkpoint / WEIGHTS).read_bytes()).hexdigest()
    assert not (source_dir(artifacts) / WEIGHTS).exists()
    assert not record_path(artifacts).exists()
    assert not weights_blob.exists()
    assert [p.name.endswith(".incomplete") for p in blobs_dir().glob(f"{weights_blob.name}*")] == [True]

    del tiny_hub.state.faults[WEIGHTS]
    result = run_cli("fetch", tiny_recipe, "--artifacts-dir", artifacts)

    assert result.exit_code == 0, result.stderr
    assert_placed(artifacts, tiny_checkpoint)
    assert json.loads(record_path(artifacts).read_text()) == expected_record(tiny_recipe)


def test_concurrent_fetches_both_succeed(tiny_hub, tiny_recipe, tiny_checkpoint, artifacts):
    tiny_hub.state.faults[WEIGHTS] = Fault(delay=0.05)

    processes = [subprocess_fetch(tiny_recipe, artifacts) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]

    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
        assert stdout == f"source: {source_dir(artifacts)} (commit {TINY_COMMIT})\n"
    assert_placed(artifacts, tiny_checkpoint)
    assert json.loads(record_path(artifacts).read_text()) == expected_record(tiny_recipe)


def test_cli_subprocess(tiny_hub, tiny_recipe, tiny_checkpoint, artifacts):
    stdout, stderr = (process := subprocess_fetch(tiny_recipe, artifacts)).communicate(timeout=300)

    assert process.returncode == 0, stderr
    assert stdout == f"source: {source_dir(artifacts)} (commit {TINY_COMMIT})\n"
    assert f"{TINY_REPO}: revision main -> commit {TINY_COMMIT}" in stderr
    assert_placed(artifacts, tiny_checkpoint)


# --- library API ----------------------------------------------------------


def test_fetch_function_returns_record(tiny_hub, tiny_recipe, artifacts):
    recipe = load_recipe(str(tiny_recipe))

    record = fetch(recipe, Layout.for_recipe(recipe, artifacts))

    assert record == expected_record(tiny_recipe)


def test_ensure_source_uses_placed_files(tiny_source):
    # HF_ENDPOINT is a closed port here, so any download attempt would fail.
    recipe_path, artifacts = tiny_source
    recipe = load_recipe(str(recipe_path))

    record = ensure_source(recipe, Layout.for_recipe(recipe, artifacts))

    assert record == expected_record(recipe_path)


def test_ensure_source_fetches_when_size_differs(tiny_source):
    recipe_path, artifacts = tiny_source
    recipe = load_recipe(str(recipe_path))
    (source_dir(artifacts) / "vocab.txt").write_text("short\n")

    with pytest.raises(HubUnreachableError):
        ensure_source(recipe, Layout.for_recipe(recipe, artifacts))


def test_ensure_source_fetches_when_pins_differ(tiny_source, tiny_hub, tiny_checkpoint):
    recipe_path, artifacts = tiny_source
    record = json.loads(record_path(artifacts).read_text())
    record["files"][0]["sha384"] = "0" * 96
    record_path(artifacts).write_text(json.dumps(record))
    recipe = load_recipe(str(recipe_path))

    result = ensure_source(recipe, Layout.for_recipe(recipe, artifacts))

    assert result == expected_record(recipe_path)
    assert len(tiny_hub.state.gets(WEIGHTS)) == 1


def test_read_source_record_malformed(tiny_source):
    recipe_path, artifacts = tiny_source
    layout = Layout.for_recipe(load_recipe(str(recipe_path)), artifacts)
    record_path(artifacts).write_text('{"repo": "x"}')

    assert read_source_record(layout) is None


def test_read_source_record_missing(artifacts):
    assert read_source_record(Layout(root=artifacts / "tiny-ner", name="tiny-ner")) is None
