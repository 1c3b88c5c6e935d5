"""Export the fetched checkpoint to a fixed-shape ONNX model and prove it against PyTorch.

The exporter is torch's dynamo-based one (`dynamo=True`, torch 2.13), with
the weights in an external data file beside the .onnx. It references the
PyTorch tensors instead of copying them into one protobuf. On the full-size
checkpoint (2-core CPU machine, /usr/bin/time -v) an export peaked near
0.9 GB RSS and took about 7 s of export time. The TorchScript exporter
(`dynamo=False`) peaked at 2.2 GB and took 35 s.

The dynamo exporter stores each node's Python stack trace, with absolute
file paths, in the node's metadata. `_strip_metadata` removes it so that
two exports in two folders write byte-identical files. With a padded
example sentence it traces the attention-mask path that real inputs take.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.checkpoint import check_checkpoint, load_token_classifier, source_files, token_logits
from converter.errors import ArtifactError, ExportError
from converter.files import disk_full_as_error, read_json
from converter.isolation import run_isolated
from converter.layout import Layout
from converter.recipe import Recipe
from converter.tokenization import MODEL_INPUTS, WordPieceTokenizer

log = logging.getLogger(__name__)

# A real sentence with entities, so tracing runs on real token ids and a padded attention mask.
EXAMPLE_SENTENCE = "My name is Sarah Jessica Parker and I live in New York, said the European Union."


def resolve_source(recipe: Recipe, layout: Layout, *, dry_run: bool = False) -> dict:
    """Return the source record, fetching the checkpoint first when source/ is incomplete.

    With DRY_RUN nothing is fetched: the record on disk is returned, or one
    built from the recipe with no commit hash.
    """
    if dry_run:
        record = read_json(layout.source_record)
        if isinstance(record, dict):
            return record
        log.info("fetch: %s@%s -> %s (source/ is missing, a real run fetches it first)", recipe.source.repo, recipe.source.revision, layout.source_dir)
        return {"repo": recipe.source.repo, "revision": recipe.source.revision, "commit_hash": None, "files": []}

    # Imported here because fetching pulls in the Hub client, which export does not otherwise need.
    from converter.fetching import ensure_source

    return ensure_source(recipe, layout)


def onnx_is_stale(recipe: Recipe, layout: Layout) -> bool:
    """Return True when the ONNX file is missing or older than a source file or the recipe file."""
    if not layout.onnx_path.is_file():
        return True
    built = layout.onnx_path.stat().st_mtime
    inputs = source_files(recipe, layout)
    if recipe.path is not None:
        inputs.append(Path(recipe.path))
    return any(path.is_file() and path.stat().st_mtime > built for path in inputs)


def example_inputs(recipe: Recipe, layout: Layout, text: str = EXAMPLE_SENTENCE) -> dict[str, np.ndarray]:
    """Tokenize TEXT into the recipe's inputs, padded to its sequence length, in the recipe's dtypes."""
    tokenizer = WordPieceTokenizer(layout.source_dir / "vocab.txt", lower_case=recipe.lower_case)
    packed = tokenizer.encode_padded(text, recipe.sequence_length)
    return {spec.name: packed[spec.name].astype(spec.dtype) for spec in recipe.inputs}


@dataclass(frozen=True)
class ExportResult:
    """The exported ONNX path, and PyTorch's logits for the caller's reference inputs (None without them)."""

    path: Path
    reference_logits: np.ndarray | None = None


def export_onnx(
    recipe: Recipe,
    layout: Layout,
    *,
    source_record: dict,
    dry_run: bool = False,
    reference_inputs: dict[str, np.ndarray] | None = None,
) -> ExportResult:
    """Export the checkpoint to `layout.onnx_path`, check it and compare it with PyTorch.

    With DRY_RUN, only logs the step. The files appear under their final
    names only after every check has passed. REFERENCE_INPUTS (name -> int64
    [N, L]) also run through the loaded PyTorch model, so that a build's
    parity check needs no second PyTorch process.
    """
    _check_input_names(recipe)
    target = layout.onnx_path
    origin = f"{source_record.get('repo')}@{source_record.get('commit_hash')}"
    log.info(
        "export: checkpoint=%s (%s) exporter=torch.onnx.dynamo opset=%d inputs=%s -> %s",
        layout.source_dir, origin, recipe.opset, ",".join(s.name for s in recipe.inputs), target,
    )
    if dry_run:
        return ExportResult(target)

    check_checkpoint(recipe, layout)
    inputs = example_inputs(recipe, layout)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".incomplete", dir=target.parent))
    try:
        staged = staging / target.name
        with disk_full_as_error(target):
            expected, reference_logits = run_isolated(_export_and_run_torch, recipe, layout, inputs, staged, reference_inputs)
        _check_onnx(recipe, staged, inputs, expected)
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("export: wrote %s", target)
    return ExportResult(target, reference_logits)


def _check_input_names(recipe: Recipe) -> None:
    unknown = [spec.name for spec in recipe.inputs if spec.name not in MODEL_INPUTS]
    if unknown:
        where = recipe.path or f"{recipe.name}.yaml"
        raise ExportError(
            f"{where}: inputs {unknown} are not model inputs, expected names from {list(MODEL_INPUTS)}",
            hint="Rename the recipe's inputs to the model's argument names",
        )


def _export_and_run_torch(
    recipe: Recipe, layout: Layout, inputs: dict[str, np.ndarray], path: Path, reference_inputs: dict[str, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Write the ONNX model to PATH; return PyTorch's logits for INPUTS and for REFERENCE_INPUTS (None without them)."""
    import torch

    model = load_token_classifier(recipe, layout)
    reference_logits = None if reference_inputs is None else token_logits(model, reference_inputs)
    names = tuple(spec.name for spec in recipe.inputs)
    wrapper = _named_inputs_module(model, names)
    arguments = tuple(torch.from_numpy(inputs[name]) for name in names)

    # torch.onnx logs a warning per torchvision operator it cannot register; none is used here.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with torch.no_grad():
        expected = wrapper(*arguments).numpy()
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # The exporter prints its progress on stdout, which belongs to results.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            program = torch.onnx.export(
                wrapper, arguments, input_names=list(names), output_names=[recipe.outputs[0].name],
                opset_version=recipe.opset, dynamo=True, external_data=True, optimize=True, verbose=False,
            )
    _strip_metadata(program.model)
    program.save(str(path), external_data=True)
    # The check runs in this child because torch.onnx has already imported onnx here,
    # so the parent never needs to import it.
    _run_checker(path)

    # Free the PyTorch weights (the program references them) before the caller loads ONNX Runtime.
    del program, wrapper, model
    gc.collect()
    return expected, reference_logits


def _strip_metadata(model) -> None:
    """Remove stack traces and other per-install metadata from every node of an onnx_ir model."""
    graphs = [model.graph, *model.functions.values()]
    for graph in graphs:
        for node in graph.all_nodes() if hasattr(graph, "all_nodes") else graph:
            node.metadata_props.clear()
            node.doc_string = None
    model.metadata_props.clear()
    model.graph.metadata_props.clear()


def _named_inputs_module(model, names: tuple[str, ...]):
    """Wrap MODEL so that positional tensors in recipe order reach its keyword arguments NAMES.

    The ONNX inputs then bind to the model's arguments by name, whatever
    order the recipe lists them in, and the single output is the logits.
    """
    import torch

    class NamedInputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(**dict(zip(names, tensors))).logits

    return NamedInputs()


def _run_checker(path: Path) -> None:
    """Run onnx.checker on the model file at PATH, raising ExportError when it rejects the model."""
    import onnx

    try:
        # By path, so external data is checked from disk and never loaded into Python.
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as error:
        raise ExportError(f"{path.name}: onnx.checker rejected the exported model ({error})") from None


def _check_onnx(recipe: Recipe, path: Path, inputs: dict[str, np.ndarray], expected: np.ndarray) -> None:
    """Run one ONNX Runtime inference on PATH and compare it with PyTorch's logits."""
    from converter.runtime import onnx_session

    session = onnx_session(path)
    actual = session.run(None, inputs)[0]
    spec = recipe.outputs[0]
    if tuple(actual.shape) != spec.shape:
        raise ExportError(f"{path.name}: output {spec.name} has shape {list(actual.shape)}, expected {list(spec.shape)}")

    tolerance = recipe.tolerances["ONNX"].max_abs
    max_diff = float(np.max(np.abs(actual - expected)))
    log.info("export: ONNX Runtime vs PyTorch max_abs_diff=%.3g (tolerance %.3g)", max_diff, tolerance)
    if not max_diff <= tolerance:
        raise ExportError(
            f"{path.name}: ONNX Runtime output differs from PyTorch by {max_diff:.3g}, tolerance {tolerance:.3g}",
            hint="Try another opset in the recipe's export.opset, or report the checkpoint",
        )


def onnx_artifact_files(onnx_path: Path) -> list[Path]:
    """Return ONNX_PATH followed by the external data files it references, if any."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import uses_external_data

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except (OSError, ValueError, DecodeError) as error:
        raise ArtifactError(onnx_path, f"invalid ONNX file ({error})", hint="Rebuild it with `omz-like export MODEL --force`") from None
    locations = set()
    for tensor in model.graph.initializer:
        if uses_external_data(tensor):
            entries = {entry.key: entry.value for entry in tensor.external_data}
            locations.add(entries["location"])
    return [Path(onnx_path)] + [Path(onnx_path).parent / name for name in sorted(locations)]


def _move_into_place(staging: Path, target: Path) -> None:
    """Move external data files beside TARGET first and the .onnx file last."""
    staged_model = staging / target.name
    for path in sorted(staging.iterdir()):
        if path != staged_model:
            with disk_full_as_error(target.parent / path.name):
                os.replace(path, target.parent / path.name)
    with disk_full_as_error(target):
        os.replace(staged_model, target)
