"""`omz-like info`: what a recipe describes and where its artifacts go."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from converter.cli.options import DEFAULT_ARTIFACTS_DIR, ArtifactsDir, Json, Model, open_model
from converter.files import read_json
from converter.layout import Layout
from converter.recipe import Recipe


def info(model: Model, artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS_DIR, as_json: Json = False) -> None:
    """Describe MODEL: source, inputs, outputs, labels, precisions and artifact paths."""
    recipe, layout = open_model(model, artifacts_dir)
    document = describe(recipe, layout)
    if as_json:
        typer.echo(json.dumps(document, indent=2))
        return
    _print_human(document)


def describe(recipe: Recipe, layout: Layout) -> dict:
    """Return the info document of RECIPE, as `info --json` prints it."""
    record = read_json(layout.source_record) or {}
    artifacts = {"source": str(layout.source_dir), "onnx": str(layout.onnx_path)}
    artifacts.update({p: str(layout.ir_xml(p)) for p in recipe.precisions})
    return {
        "name": recipe.name,
        "description": recipe.description,
        "task": recipe.task,
        "license": recipe.license,
        "recipe": str(recipe.path) if recipe.path else f"bundled:{recipe.name}.yaml",
        "source": {
            "repo": recipe.source.repo,
            "revision": recipe.source.revision,
            "commit_hash": record.get("commit_hash"),
            "files": [{"name": f.name, "size": f.size, f.hash_algorithm: f.hash_value} for f in recipe.source.files],
        },
        "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in recipe.inputs],
        "outputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in recipe.outputs],
        "labels": list(recipe.labels) if recipe.labels else None,
        "precisions": list(recipe.precisions),
        "opset": recipe.opset,
        "artifacts": artifacts,
        "artifacts_present": {key: Path(path).exists() for key, path in artifacts.items()},
    }


def _print_human(document: dict) -> None:
    source = document["source"]
    lines = [
        f"name:        {document['name']}",
        f"description: {document['description']}",
        f"task:        {document['task']}",
        f"license:     {document['license']}",
        f"recipe:      {document['recipe']}",
        f"source:      {source['repo']} @ {source['revision']}"
        + (f" (commit {source['commit_hash']})" if source["commit_hash"] else ""),
    ]
    lines += [f"  {f['name']}  {f['size']} bytes" for f in source["files"]]
    lines.append("inputs:")
    lines += [f"  {t['name']}  {t['shape']}  {t['dtype']}" for t in document["inputs"]]
    lines.append("outputs:")
    lines += [f"  {t['name']}  {t['shape']}  {t['dtype']}" for t in document["outputs"]]
    lines.append(f"labels:      {', '.join(document['labels']) if document['labels'] else '(from the checkpoint)'}")
    lines.append(f"precisions:  {', '.join(document['precisions'])}")
    lines.append(f"opset:       {document['opset']}")
    lines.append("artifacts:")
    for key, path in document["artifacts"].items():
        state = "present" if document["artifacts_present"][key] else "missing"
        lines.append(f"  {key:<7} {path}  ({state})")
    typer.echo("\n".join(lines))
