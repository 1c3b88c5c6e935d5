"""`omz-like fetch`: download and verify a recipe's source files."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from converter import fetching
from converter.cli.options import DEFAULT_ARTIFACTS_DIR, ArtifactsDir, Json, Model, Quiet, Verbose, configure_logging, open_model
from converter.files import model_lock

Revision = Annotated[
    str | None,
    typer.Option("--revision", help="Branch, tag or 40-hex commit hash to fetch. Default: the recipe's source.revision.", show_default=False),
]
Offline = Annotated[
    bool,
    typer.Option("--offline", help="Use only the Hugging Face cache and send no request (as HF_HUB_OFFLINE=1 does)."),
]
Force = Annotated[bool, typer.Option("--force", help="Download and verify every file again, even when source/ is complete.")]


def fetch(
    model: Model,
    revision: Revision = None,
    offline: Offline = False,
    force: Force = False,
    artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS_DIR,
    as_json: Json = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Download MODEL's source files from the Hub, verify their sizes and hashes, and place them in <dir>/<name>/source/."""
    configure_logging(verbose=verbose, quiet=quiet)
    recipe, layout = open_model(model, artifacts_dir)

    with model_lock(layout.lock_file):
        record = fetching.fetch(recipe, layout, revision=revision, offline=offline, force=force)

    if as_json:
        typer.echo(json.dumps({"source_dir": str(layout.source_dir), **record}, indent=2, sort_keys=True))
        return
    typer.echo(f"source: {layout.source_dir} (commit {record['commit_hash']})")
