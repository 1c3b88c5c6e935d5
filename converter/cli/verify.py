"""`omz-like verify`: re-hash every artifact against the manifest."""

from __future__ import annotations

import json

import typer

from converter.cli.options import DEFAULT_ARTIFACTS_DIR, ArtifactsDir, Json, Model, open_model
from converter.errors import ArtifactError, VerifyError
from converter.manifest import read_manifest, verify_artifacts


def verify(model: Model, artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS_DIR, as_json: Json = False) -> None:
    """Check that MODEL's artifacts are exactly those its manifest lists; exit 1 naming each difference."""
    recipe, layout = open_model(model, artifacts_dir)
    manifest = read_manifest(layout)
    if manifest is None:
        raise ArtifactError(layout.manifest, "manifest not found or unreadable", hint=f"Run `omz-like build {model}` first")

    result = verify_artifacts(layout, manifest)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        for path in result.missing:
            typer.echo(f"missing  {path}")
        for change in result.changed:
            typer.echo(f"changed  {change['path']}  expected sha256 {change['expected_sha256']}, got {change['actual_sha256']}")
        for path in result.extra:
            typer.echo(f"extra    {path}")
        if result.ok:
            typer.echo(f"{recipe.name}: all {result.checked} artifacts match {layout.manifest}")

    if not result.ok:
        problems = [f"missing {p}" for p in result.missing] + [f"changed {c['path']}" for c in result.changed] + [f"extra {p}" for p in result.extra]
        if result.extra and not (result.missing or result.changed):
            hint = "Delete the extra files; they are not part of the build"
        else:
            hint = f"Run `omz-like build {model} --force` to rebuild"
        raise VerifyError(f"{layout.root}: {len(problems)} artifact(s) differ from the manifest: {', '.join(problems)}", hint=hint)
