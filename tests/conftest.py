"""Fixtures shared by every test: isolation from the real Hub and the user's caches."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# Nothing in the tests may reach a real host: an endpoint that a test does not
# set points at a closed loopback port, so the call fails at once.
CLOSED_ENDPOINT = "http://127.0.0.1:9"
os.environ["HF_ENDPOINT"] = CLOSED_ENDPOINT
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"

from converter.cli.app import main  # noqa: E402
from tests.checkpoints import TINY, place_source, write_checkpoint, write_recipe  # noqa: E402

# The loopback Hub fixtures `hub_server` and `tiny_hub`.
pytest_plugins = ["tests.hub_server"]


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory, monkeypatch):
    """Point every Hugging Face cache and the working folder at a fresh temporary directory."""
    home = tmp_path_factory.mktemp("hf-home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", CLOSED_ENDPOINT)
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "OMZ_LIKE_ARTIFACTS_DIR", "OMZ_LIKE_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("work"))


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys):
    """Run `omz-like ARGS...` in this process and return its exit code, stdout and stderr."""

    def run(*args) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            if exit_.code is None:
                code = 0
            elif isinstance(exit_.code, int):
                code = exit_.code
            else:
                code = 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random BERT token classifier with the CoNLL-2003 labels; treat it as read-only."""
    return write_checkpoint(tmp_path_factory.mktemp("tiny-checkpoint"), TINY)


@pytest.fixture
def tiny_recipe(tmp_path, tiny_checkpoint) -> Path:
    """A recipe file pinning the tiny checkpoint's files."""
    return write_recipe(tmp_path / "recipes" / "tiny-ner.yaml", tiny_checkpoint)


@pytest.fixture
def tiny_source(tmp_path, tiny_checkpoint, tiny_recipe):
    """Artifacts folder with the tiny checkpoint already placed in source/, as `fetch` leaves it.

    Returns (recipe path, artifacts dir). Use it to test later stages without
    the loopback Hub.
    """
    artifacts = tmp_path / "artifacts"
    place_source(tiny_recipe, tiny_checkpoint, artifacts)
    return tiny_recipe, artifacts


@pytest.fixture(scope="session")
def full_size_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint with the full bert-base-NER configuration and random weights (about 430 MB)."""
    from tests.checkpoints import FULL_SIZE

    return write_checkpoint(tmp_path_factory.mktemp("full-size-checkpoint"), FULL_SIZE)
