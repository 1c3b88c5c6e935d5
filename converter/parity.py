"""Prove each artifact against the PyTorch checkpoint on real text and edge inputs.

PyTorch (fp32) runs first over every input and is released before ONNX
Runtime and OpenVINO load, so that two copies of the weights never sit in
memory together. OpenVINO runs with its inference precision pinned to f32
by default, so the check measures the conversion and not the runtime's bf16
default. Every backend is compared before the verdict, so one report shows
all failures. A build's report goes to `layout.parity_report`; the
`parity` command passes `layout.parity_check_report` instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.checkpoint import checkpoint_labels, load_token_classifier, token_logits
from converter.errors import ArtifactError, UsageError
from converter.files import write_json_atomic
from converter.isolation import run_isolated
from converter.layout import Layout
from converter.manifest import tool_versions
from converter.parity_inputs import FULL, ParityInput, build_inputs, inputs_digest, save_inputs as write_inputs, stack_inputs
from converter.parity_report import (
    PASS,
    FAIL,
    absolute_differences,
    check_metrics,
    json_number,
    limits,
    measure,
    worst_position,
)
from converter.recipe import Recipe
from converter.runtime import compile_ir, onnx_session
from converter.tokenization import WordPieceTokenizer

log = logging.getLogger(__name__)

RUNTIME_PRECISIONS = ("f32", "default")
REPORT_FORMAT = 1


@dataclass(frozen=True)
class Reference:
    """PyTorch logits that were computed elsewhere (a build's export stage) for the inputs whose digest is INPUTS_SHA256."""

    inputs_sha256: str
    logits: np.ndarray


@dataclass
class ParityResult:
    """A parity report and, per backend, the absolute logit differences it summarises."""

    report: dict
    differences: dict[str, np.ndarray]


def run_parity(
    recipe: Recipe,
    layout: Layout,
    precisions: tuple[str, ...],
    *,
    runtime_precision: str = "f32",
    extra_texts: list[str] = (),
    save_inputs: Path | None = None,
    input_set: str = FULL,
    reference: Reference | None = None,
    report_path: Path | None = None,
) -> dict:
    """Compare ONNX and each IR precision with PyTorch, write parity.json and return the report.

    INPUT_SET is "full" or "quick" (see `converter.parity_inputs`). A
    REFERENCE whose digest matches the inputs replaces the PyTorch run. The
    report goes to REPORT_PATH (default `layout.parity_report`). A failed
    comparison does not raise, so call `verdict(report)` for the
    outcome. A missing artifact raises ArtifactError.
    """
    return measure_parity(
        recipe,
        layout,
        precisions,
        runtime_precision=runtime_precision,
        extra_texts=extra_texts,
        save_inputs=save_inputs,
        input_set=input_set,
        reference=reference,
        report_path=report_path,
    ).report


def verdict(report: dict) -> bool:
    """Return True when every check of every backend in REPORT passed."""
    return bool(report["backends"]) and all(backend["passed"] for backend in report["backends"].values())


def backend_verdicts(report: dict) -> dict[str, str]:
    """Return PASS or FAIL per backend key (ONNX, FP32, FP16)."""
    return {key: PASS if backend["passed"] else FAIL for key, backend in report["backends"].items()}


def measure_parity(
    recipe: Recipe,
    layout: Layout,
    precisions: tuple[str, ...],
    *,
    runtime_precision: str = "f32",
    extra_texts: list[str] = (),
    save_inputs: Path | None = None,
    input_set: str = FULL,
    reference: Reference | None = None,
    report_path: Path | None = None,
) -> ParityResult:
    """Run `run_parity` and also return the absolute differences, which `--plot` draws."""
    if runtime_precision not in RUNTIME_PRECISIONS:
        raise UsageError(f"invalid runtime precision {runtime_precision!r}", hint=f"Valid values: {', '.join(RUNTIME_PRECISIONS)}")
    require_artifacts(recipe, layout, precisions)

    tokenizer = WordPieceTokenizer(layout.source_dir / "vocab.txt", lower_case=recipe.lower_case)
    inputs = build_inputs(tokenizer, recipe.sequence_length, extra_texts=list(extra_texts), input_set=input_set)
    if save_inputs is not None:
        write_inputs(Path(save_inputs), inputs)
        log.info("parity: wrote the %d input windows to %s", len(inputs), save_inputs)

    if reference is not None and reference.inputs_sha256 == inputs_digest(inputs):
        log.info("parity: PyTorch logits for the %d inputs come from the export stage", len(inputs))
        torch_logits = reference.logits
    else:
        torch_logits = run_pytorch(recipe, layout, inputs)
    labels = recipe.labels or checkpoint_labels(layout)
    mask = np.concatenate([item.tensors["attention_mask"] for item in inputs])
    entity_mask = _entity_mask(inputs, tokenizer)

    backends, differences = {}, {}
    for key, outputs, details in _run_backends(recipe, layout, precisions, inputs, runtime_precision=runtime_precision):
        tolerance = recipe.tolerances[key]
        metrics = measure(torch_logits, outputs, mask, labels=labels, entity_mask=entity_mask)
        checks = check_metrics(metrics, tolerance)
        worst = worst_position(torch_logits, outputs, mask)
        backends[key] = {
            **details,
            "metrics": {name: json_number(value) for name, value in metrics.items()},
            "tolerance": dict(tolerance.__dict__),
            "limits": limits(tolerance),
            "checks": checks,
            "passed": all(v == PASS for v in checks.values()),
            "worst_token": _worst_token(worst, inputs, torch_logits, outputs, labels),
        }
        differences[key] = absolute_differences(torch_logits, outputs, mask)
        _log_verdict(key, backends[key])

    report = _report(recipe, inputs, backends, runtime_precision=runtime_precision, input_set=input_set)
    write_json_atomic(report_path or layout.parity_report, report)
    return ParityResult(report=report, differences=differences)


def stacked_inputs(recipe: Recipe, layout: Layout, input_set: str = FULL) -> dict[str, np.ndarray]:
    """Return the inputs of INPUT_SET as int64 arrays [N, L], for a caller that runs PyTorch on them itself."""
    tokenizer = WordPieceTokenizer(layout.source_dir / "vocab.txt", lower_case=recipe.lower_case)
    return stack_inputs(build_inputs(tokenizer, recipe.sequence_length, input_set=input_set))


def require_artifacts(recipe: Recipe, layout: Layout, precisions: tuple[str, ...]) -> None:
    """Raise ArtifactError for the first missing file, before any backend loads."""
    vocab = layout.source_dir / "vocab.txt"
    if not vocab.is_file():
        raise ArtifactError(vocab, "vocabulary not found", hint=f"Run `omz-like fetch {recipe.model_argument}` first")
    if not layout.onnx_path.is_file():
        raise ArtifactError(layout.onnx_path, "ONNX file not found", hint=f"Run `omz-like convert {recipe.model_argument}` first")
    for precision in precisions:
        for path in (layout.ir_xml(precision), layout.ir_bin(precision)):
            if not path.is_file():
                raise ArtifactError(
                    path, f"{precision} IR file not found", hint=f"Run `omz-like convert {recipe.model_argument} --precision {precision}` first"
                )


def run_pytorch(recipe: Recipe, layout: Layout, inputs: list[ParityInput]) -> np.ndarray:
    """Run the checkpoint in PyTorch over every input and return the logits [N, L, C].

    The model runs in a child process (see `converter.isolation`),
    so its memory is returned to the system before ONNX Runtime and
    OpenVINO load their own copies of the weights.
    """
    log.info("parity: PyTorch on %d inputs", len(inputs))
    return run_isolated(_pytorch_logits, recipe, layout, stack_inputs(inputs))


def _pytorch_logits(recipe: Recipe, layout: Layout, stacked: dict[str, np.ndarray]) -> np.ndarray:
    return token_logits(load_token_classifier(recipe, layout), stacked)


def _run_backends(recipe: Recipe, layout: Layout, precisions: tuple[str, ...], inputs: list[ParityInput], *, runtime_precision: str):
    """Yield (backend key, logits [N, L, C], report details) for ONNX, then each IR precision, loading one at a time."""
    log.info("parity: ONNX Runtime on %s", layout.onnx_path)
    session = onnx_session(layout.onnx_path)
    output_name = session.get_outputs()[0].name
    logits = np.concatenate([session.run([output_name], _feed(recipe, item))[0] for item in inputs])
    del session
    details = {"runtime": "ONNX Runtime", "precision": "FP32", "inference_precision": "f32", "artifact": layout.relative(layout.onnx_path)}
    yield "ONNX", logits, details

    for precision in precisions:
        pinned = "f32" if runtime_precision == "f32" else None
        compiled = compile_ir(layout.ir_xml(precision), inference_precision=pinned)
        log.info("parity: OpenVINO CPU on the %s IR, inference precision %s", precision, compiled.inference_precision)
        logits = np.concatenate([compiled.infer(_feed(recipe, item)) for item in inputs])
        details = {
            "runtime": "OpenVINO CPU",
            "precision": precision,
            "inference_precision": compiled.inference_precision,
            "artifact": layout.relative(layout.ir_xml(precision)),
        }
        del compiled
        yield precision, logits, details


def _log_verdict(key: str, backend: dict) -> None:
    """Log PASS with max_abs, or FAIL with each failed metric and its limit."""
    metrics = backend["metrics"]
    if backend["passed"]:
        log.info("parity: %s %s (max_abs %.3g)", key, PASS, metrics["max_abs"])
        return
    failed = []
    for name, check in backend["checks"].items():
        if check != PASS:
            value = "not finite" if metrics[name] is None else f"{metrics[name]:.6g}"
            failed.append(f"{name} {value} (limit {backend['limits'][name]})")
    log.info("parity: %s %s: %s", key, FAIL, ", ".join(failed))


def _feed(recipe: Recipe, item: ParityInput) -> dict[str, np.ndarray]:
    """Return the input tensors of ITEM under the recipe's input names, in the recipe's dtypes."""
    return {spec.name: item.tensors[spec.name].astype(spec.dtype) for spec in recipe.inputs}


def _entity_mask(inputs: list[ParityInput], tokenizer: WordPieceTokenizer) -> np.ndarray:
    """Mark the real word-piece positions, leaving out [CLS] and [SEP], whose tags form entities."""
    ids = np.concatenate([item.tensors["input_ids"] for item in inputs])
    mask = np.concatenate([item.tensors["attention_mask"] for item in inputs]).astype(bool)
    return mask & (ids != tokenizer.cls_id) & (ids != tokenizer.sep_id)


def _worst_token(worst, inputs: list[ParityInput], reference: np.ndarray, outputs: np.ndarray, labels) -> dict:
    item = inputs[worst.input_index]
    index = (worst.input_index, worst.position, worst.label_index)
    expected, actual = float(reference[index]), float(outputs[index])
    return {
        "input": worst.input_index,
        "text": item.text,
        "position": worst.position,
        "token": item.pieces[worst.position],
        "label": labels[worst.label_index],
        "pytorch": json_number(expected),
        "backend": json_number(actual),
        "abs_diff": json_number(abs(actual - expected)),
    }


def _report(recipe: Recipe, inputs: list[ParityInput], backends: dict, *, runtime_precision: str, input_set: str) -> dict:
    kinds = [item.kind for item in inputs]
    return {
        "format": REPORT_FORMAT,
        "model": recipe.name,
        "recipe_sha256": recipe.sha256,
        "reference": "PyTorch fp32",
        "runtime_precision": runtime_precision,
        "inputs": {
            "set": input_set,
            "count": len(inputs),
            "corpus": kinds.count("corpus"),
            "user": kinds.count("user"),
            "edge": kinds.count("edge"),
            "truncated": [index for index, item in enumerate(inputs) if item.truncated],
            "sequence_length": recipe.sequence_length,
            "sha256": inputs_digest(inputs),
        },
        "backends": backends,
        "passed": bool(backends) and all(backend["passed"] for backend in backends.values()),
        "versions": tool_versions(),
    }

