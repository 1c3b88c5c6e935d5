"""Convert the ONNX model to OpenVINO IR, FP32 and FP16, from one converted graph.

`openvino.save_model` compresses weights to FP16 by default, so the FP32 IR
is saved with compress_to_fp16=False. Saving with compression does not alter
the in-memory graph (tests check that FP32 saved after FP16 is unchanged),
and FP32 is still saved first.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path

from converter.checkpoint import checkpoint_labels
from converter.errors import ArtifactError, ConversionError, DiskFullError
from converter.export import export_onnx, onnx_is_stale
from converter.files import disk_full_as_error
from converter.layout import Layout
from converter.recipe import PRECISIONS, Recipe

log = logging.getLogger(__name__)

# Runtime-info section of the IR that records where it came from.
RT_INFO_SECTION = "omz_like"


def convert_ir(recipe: Recipe, layout: Layout, precisions: tuple[str, ...], *, source_record: dict, dry_run: bool = False) -> dict[str, Path]:
    """Write the IR of each precision in PRECISIONS and return their .xml paths.

    Runs `export_onnx` first when the ONNX file is missing or older than its
    inputs. With DRY_RUN, only logs the steps.
    """
    ordered = tuple(p for p in PRECISIONS if p in precisions)
    if onnx_is_stale(recipe, layout):
        export_onnx(recipe, layout, source_record=source_record, dry_run=dry_run)

    onnx_path = layout.onnx_path
    targets = {precision: layout.ir_xml(precision) for precision in ordered}
    log.info("convert: openvino.convert_model onnx=%s", onnx_path)
    for precision, xml_path in targets.items():
        log.info("convert: onnx=%s precision=%s compress_to_fp16=%s -> %s", onnx_path, precision, precision == "FP16", xml_path)
    if dry_run:
        return targets

    model = _convert_onnx(recipe, onnx_path)
    number_generated_names(model)
    for key, value in origin_info(recipe, layout, source_record).items():
        model.set_rt_info(value, [RT_INFO_SECTION, key])
    for precision, xml_path in targets.items():
        save_ir(model, xml_path, compress_to_fp16=precision == "FP16")
        log.info("convert: wrote %s", xml_path)
    return targets


def number_generated_names(model) -> None:
    """Renumber the operation names that OpenVINO generated, by their position in the graph.

    OpenVINO 2026.4 names operations it creates `<Type>_<N>` from a
    process-wide counter, so a second conversion in the same process would
    write different names. Tensor names, which inputs bind to, are unchanged.
    """
    for index, operation in enumerate(model.get_ordered_ops()):
        match = _GENERATED_NAME.fullmatch(operation.get_friendly_name())
        if match:
            operation.set_friendly_name(f"{match.group(1)}_{index}")


_GENERATED_NAME = re.compile(r"([A-Za-z][A-Za-z0-9]*)_(\d+)")


def origin_info(recipe: Recipe, layout: Layout, source_record: dict) -> dict[str, str]:
    """Return the origin fields stored in the IR's runtime info: no paths and no timestamps."""
    labels = recipe.labels if recipe.labels is not None else checkpoint_labels(layout)
    return {
        "recipe": recipe.name,
        "recipe_sha256": recipe.sha256,
        "source_repo": str(source_record.get("repo", recipe.source.repo)),
        "source_revision": str(source_record.get("revision", recipe.source.revision)),
        "commit_hash": str(source_record.get("commit_hash") or ""),
        # JSON keeps labels that contain spaces or commas unambiguous.
        "labels": json.dumps(list(labels)),
    }


def _convert_onnx(recipe: Recipe, onnx_path: Path):
    """Read ONNX_PATH into an OpenVINO model and check its input and output names and static shapes."""
    import openvino as ov

    if not onnx_path.is_file():
        raise ArtifactError(onnx_path, "ONNX file not found", hint="Run `omz-like export MODEL` first")
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as error:  # OpenVINO's frontends raise several unexported exception types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConversionError(
            f"{onnx_path}: openvino.convert_model failed ({first_line})", hint="Rebuild the ONNX file with `omz-like export MODEL --force`"
        ) from None
    problem = io_problem(recipe, model)
    if problem:
        raise ConversionError(f"{onnx_path}: {problem}", hint="Rebuild the ONNX file with `omz-like export MODEL --force`")
    return model


def io_problem(recipe: Recipe, model) -> str | None:
    """Describe how MODEL's tensor names or static shapes differ from the recipe's, or return None."""
    actual = [(port.get_any_name(), port.get_partial_shape()) for port in list(model.inputs) + list(model.outputs)]
    expected = [(spec.name, spec.shape) for spec in recipe.inputs + recipe.outputs]
    if len(actual) != len(expected):
        return f"{len(actual)} inputs and outputs, but the recipe lists {len(expected)}"
    for (name, shape), (expected_name, expected_shape) in zip(actual, expected):
        if name != expected_name or not shape.is_static or tuple(shape.to_shape()) != expected_shape:
            return f"tensor {name} {shape} differs from the recipe's {expected_name} {list(expected_shape)}"
    return None


def save_ir(model, xml_path: Path, *, compress_to_fp16: bool) -> None:
    """Save MODEL as XML_PATH and its .bin, under temporary names first.

    OpenVINO writes both files itself, so they are saved beside the target
    as `.<name>.*.incomplete.xml/.bin`. The old .xml goes first, the new .bin
    moves in next and the .xml last, so an interrupted run never leaves an
    .xml beside a .bin it was not saved with.
    """
    import openvino as ov

    xml_path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{xml_path.stem}.", suffix=".incomplete.xml", dir=xml_path.parent)
    os.close(handle)
    temporary_xml = Path(name)
    temporary_bin = temporary_xml.with_suffix(".bin")
    try:
        with disk_full_as_error(xml_path):
            try:
                ov.save_model(model, str(temporary_xml), compress_to_fp16=compress_to_fp16)
            except RuntimeError as error:
                _raise_save_error(xml_path, error)
            xml_path.unlink(missing_ok=True)
            os.replace(temporary_bin, xml_path.with_suffix(".bin"))
            os.replace(temporary_xml, xml_path)
    finally:
        temporary_xml.unlink(missing_ok=True)
        temporary_bin.unlink(missing_ok=True)


def _raise_save_error(xml_path: Path, error: RuntimeError) -> None:
    # OpenVINO reports a failed write as a RuntimeError carrying the OS message.
    text = str(error)
    if "No space left" in text or "Disk quota" in text:
        raise DiskFullError(f"{xml_path}: no space left on the device", hint="Free disk space or choose another --artifacts-dir") from None
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    raise ConversionError(f"{xml_path}: openvino.save_model failed ({first_line})") from None


def ir_is_current(layout: Layout, precision: str) -> bool:
    """Return True when the IR of PRECISION exists and is not older than the ONNX file."""
    xml_path, bin_path = layout.ir_xml(precision), layout.ir_bin(precision)
    if not (xml_path.is_file() and bin_path.is_file() and layout.onnx_path.is_file()):
        return False
    return xml_path.stat().st_mtime >= layout.onnx_path.stat().st_mtime


def check_ir(recipe: Recipe, xml_path: Path) -> None:
    """Read the IR at XML_PATH and check its tensor names and shapes, raising ArtifactError when it is unreadable."""
    import openvino as ov

    try:
        model = ov.Core().read_model(str(xml_path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArtifactError(xml_path, f"invalid IR ({first_line})", hint="Rebuild it with `omz-like convert MODEL --force`") from None
    problem = io_problem(recipe, model)
    if problem:
        raise ArtifactError(xml_path, problem, hint="Rebuild it with `omz-like convert MODEL --force`")
