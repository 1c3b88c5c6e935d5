"""Run the artifacts: ONNX Runtime sessions and OpenVINO compiled models.

OpenVINO's CPU plugin picks bf16 as its default inference precision on CPUs
that support it, so an unpinned "FP32" run can differ from PyTorch by 0.02
or more. Checks that measure the conversion pin the inference precision to
f32; `inference_precision=None` keeps the runtime's default, as deployed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.errors import ArtifactError


@dataclass
class CompiledIR:
    """An OpenVINO model compiled for one device, with the precision it actually runs at."""

    compiled: object
    xml_path: Path
    device: str
    inference_precision: str
    input_names: tuple[str, ...]

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Run one synchronous inference and return the first output."""
        request_inputs = {name: inputs[name] for name in self.input_names}
        return np.array(self.compiled(request_inputs)[0], copy=True)


def compile_ir(xml_path: Path, *, device: str = "CPU", inference_precision: str | None = "f32", performance_hint: str | None = None) -> CompiledIR:
    """Read and compile the IR at XML_PATH; INFERENCE_PRECISION None keeps the runtime default.

    PERFORMANCE_HINT, when given, is OpenVINO's PERFORMANCE_HINT property:
    LATENCY or THROUGHPUT (THROUGHPUT runs several requests in parallel).
    """
    import openvino as ov

    xml_path = Path(xml_path)
    bin_path = xml_path.with_suffix(".bin")
    for path in (xml_path, bin_path):
        if not path.is_file():
            raise ArtifactError(path, "IR file not found", hint="Run `omz-like convert MODEL` first")

    core = ov.Core()
    config = {} if inference_precision is None else {"INFERENCE_PRECISION_HINT": inference_precision}
    if performance_hint is not None:
        config["PERFORMANCE_HINT"] = performance_hint
    try:
        model = core.read_model(xml_path)
        compiled = core.compile_model(model, device, config)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArtifactError(xml_path, f"cannot load the IR ({first_line})", hint="Rebuild it with `omz-like convert MODEL --force`") from None

    try:
        used = _precision_name(str(compiled.get_property("INFERENCE_PRECISION_HINT")))
    except RuntimeError:
        # Virtual devices such as AUTO and MULTI do not report the property.
        used = "chosen by the device"
    names = tuple(port.get_any_name() for port in compiled.inputs)
    return CompiledIR(compiled=compiled, xml_path=xml_path, device=device, inference_precision=used, input_names=names)


def onnx_session(onnx_path: Path, *, threads: int | None = None):
    """Open an ONNX Runtime CPU session on ONNX_PATH (external data is read from beside it)."""
    import onnxruntime as ort

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ArtifactError(onnx_path, "ONNX file not found", hint="Run `omz-like export MODEL` first")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own unexported exception types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArtifactError(onnx_path, f"cannot load the ONNX model ({first_line})", hint="Rebuild it with `omz-like export MODEL --force`") from None


def _precision_name(value: str) -> str:
    """Map OpenVINO's element type text (`<Type: 'float32'>`, `f32`) to f32, f16 or bf16."""
    lowered = value.lower()
    for name, short in (("bfloat16", "bf16"), ("float16", "f16"), ("float32", "f32")):
        if name in lowered or short in lowered:
            return short
    return lowered
