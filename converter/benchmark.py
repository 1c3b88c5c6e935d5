"""Latency and throughput of one model input on every backend: PyTorch, ONNX Runtime, OpenVINO.

Each backend runs the same padded sentence synchronously, one request at a
time, for a fixed wall-clock budget after a few warm-up runs. Throughput is
the number of inferences divided by the time they took, which makes it the
single-stream rate. `predict` reaches more because it keeps several
requests in flight. Backends load one after another and are released
before the next one loads, so peak memory stays at one model.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from converter.errors import ArtifactError
from converter.export import EXAMPLE_SENTENCE, example_inputs
from converter.layout import Layout
from converter.recipe import Recipe

log = logging.getLogger(__name__)

DEFAULT_SECONDS = 5.0
WARMUP_RUNS = 3
MIN_RUNS = 5
# OpenVINO runtime precisions measured per IR: pinned to f32, and the
# runtime's default (bf16 on CPUs that support it, else f32).
RUNTIME_PRECISIONS = ("f32", "default")


@dataclass(frozen=True)
class BenchmarkRow:
    """Timings of one backend on the benchmark input, in milliseconds."""

    backend: str
    artifact: str
    runtime_precision: str
    inference_precision: str
    runs: int
    median_ms: float
    p90_ms: float
    throughput_per_s: float


def require_artifacts(recipe: Recipe, layout: Layout, precisions: tuple[str, ...]) -> None:
    """Raise ArtifactError for the first missing input of the benchmark, before any backend loads."""
    needed = [layout.source_dir / "vocab.txt", layout.source_dir / "config.json", layout.onnx_path]
    for precision in precisions:
        needed += [layout.ir_xml(precision), layout.ir_bin(precision)]
    for path in needed:
        if not path.is_file():
            raise ArtifactError(path, "file not found", hint=f"Run `omz-like convert {recipe.model_argument}` first")


def run_benchmark(recipe: Recipe, layout: Layout, precisions: tuple[str, ...], *, seconds: float = DEFAULT_SECONDS, text: str = EXAMPLE_SENTENCE) -> dict:
    """Time PyTorch, ONNX Runtime and each IR precision on TEXT, and return the benchmark document."""
    require_artifacts(recipe, layout, precisions)
    inputs = example_inputs(recipe, layout, text)
    rows = [_benchmark_pytorch(recipe, layout, inputs, seconds=seconds), _benchmark_onnx(layout, inputs, seconds=seconds)]
    for precision in precisions:
        for runtime_precision in RUNTIME_PRECISIONS:
            rows.append(_benchmark_ir(layout, precision, inputs, runtime_precision=runtime_precision, seconds=seconds))

    return {
        "model": recipe.name,
        "sequence_length": recipe.sequence_length,
        "text": text,
        "tokens": int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else None,
        "seconds_per_backend": seconds,
        "rows": _with_speedup([asdict(row) for row in rows]),
    }


def time_runs(run: Callable[[], object], *, seconds: float, warmup: int = WARMUP_RUNS, min_runs: int = MIN_RUNS) -> tuple[list[float], float]:
    """Call RUN WARMUP times, then until SECONDS have passed and at least MIN_RUNS calls are timed.

    Returns the duration of each timed call in milliseconds and the wall
    time of the timed loop in seconds.
    """
    for _ in range(warmup):
        run()
    durations = []
    started = time.perf_counter()
    while len(durations) < min_runs or time.perf_counter() - started < seconds:
        before = time.perf_counter()
        run()
        durations.append((time.perf_counter() - before) * 1000.0)
    return durations, time.perf_counter() - started


def summarise(backend: str, artifact: str, durations: list[float], elapsed: float, *, runtime_precision: str, inference_precision: str) -> BenchmarkRow:
    """Reduce per-call DURATIONS (ms) and the loop's ELAPSED seconds to one row."""
    return BenchmarkRow(
        backend=backend,
        artifact=artifact,
        runtime_precision=runtime_precision,
        inference_precision=inference_precision,
        runs=len(durations),
        median_ms=round(float(np.median(durations)), 3),
        p90_ms=round(float(np.percentile(durations, 90)), 3),
        throughput_per_s=round(len(durations) / elapsed, 2),
    )


def _benchmark_pytorch(recipe: Recipe, layout: Layout, inputs: dict[str, np.ndarray], *, seconds: float) -> BenchmarkRow:
    import torch

    from converter.checkpoint import load_token_classifier

    model = load_token_classifier(recipe, layout)
    tensors = {name: torch.from_numpy(array.astype(np.int64)) for name, array in inputs.items()}

    def run() -> None:
        with torch.inference_mode():
            model(**tensors)

    log.info("benchmark: PyTorch eager, %s s", seconds)
    durations, elapsed = time_runs(run, seconds=seconds)
    del model
    gc.collect()
    return summarise("PyTorch", layout.relative(layout.source_dir), durations, elapsed, runtime_precision="f32", inference_precision="f32")


def _benchmark_onnx(layout: Layout, inputs: dict[str, np.ndarray], *, seconds: float) -> BenchmarkRow:
    from converter.runtime import onnx_session

    session = onnx_session(layout.onnx_path)
    names = [node.name for node in session.get_inputs()]
    feed = {name: inputs[name] for name in names}

    log.info("benchmark: ONNX Runtime, %s s", seconds)
    durations, elapsed = time_runs(lambda: session.run(None, feed), seconds=seconds)
    del session
    gc.collect()
    return summarise("ONNX Runtime", layout.relative(layout.onnx_path), durations, elapsed, runtime_precision="f32", inference_precision="f32")


def _benchmark_ir(layout: Layout, precision: str, inputs: dict[str, np.ndarray], *, runtime_precision: str, seconds: float) -> BenchmarkRow:
    from converter.runtime import compile_ir

    hint = None if runtime_precision == "default" else runtime_precision
    compiled = compile_ir(layout.ir_xml(precision), inference_precision=hint, performance_hint="LATENCY")
    feed = {name: inputs[name] for name in compiled.input_names}

    log.info("benchmark: OpenVINO %s, runtime precision %s (runs at %s), %s s", precision, runtime_precision, compiled.inference_precision, seconds)
    durations, elapsed = time_runs(lambda: compiled.infer(feed), seconds=seconds)
    used = compiled.inference_precision
    del compiled
    gc.collect()
    return summarise(f"OpenVINO {precision}", layout.relative(layout.ir_xml(precision)), durations, elapsed, runtime_precision=runtime_precision, inference_precision=used)


def _with_speedup(rows: list[dict]) -> list[dict]:
    """Add `speedup_vs_pytorch`: each row's throughput divided by the PyTorch row's."""
    reference = next(row["throughput_per_s"] for row in rows if row["backend"] == "PyTorch")
    return [{**row, "speedup_vs_pytorch": round(row["throughput_per_s"] / reference, 2)} for row in rows]
