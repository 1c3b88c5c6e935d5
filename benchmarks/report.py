"""Turn the results of `benchmarks.run` into results.md (tables and targets) and results.png (a chart)."""

from __future__ import annotations

from pathlib import Path

from converter.files import atomic_path, write_bytes_atomic

# Figures reported for optimum-cli on a 2-core, 24 GB machine with the same
# full-size checkpoint. This script did not measure them, so they stand in
# only when optimum-cli is missing or fails, and the report labels them "quoted".
STAGES = ("fetch", "export", "convert", "parity")
QUOTED_PEER = {
    "optimum-cli export openvino --weight-format fp16": {"wall_s": 15.0, "peak_rss_gb": 1.0},
    "optimum-cli export onnx": {"wall_s": 15.0, "peak_rss_gb": 2.2},
}
BUILD_PEAK_RSS_LIMIT_GB = 1.2
NOOP_BUILD_LIMIT_S = 1.5
PREDICT_SPEEDUP_TARGET = 2.0


def write_report(results: dict, output_dir: Path) -> None:
    """Write OUTPUT_DIR/results.md and OUTPUT_DIR/results.png from RESULTS."""
    rows = measured_rows(results)
    text = "\n".join([*_steps_table(rows), "", *_predict_table(results), "", *_targets_table(results), ""])
    write_bytes_atomic(output_dir / "results.md", text.encode("utf-8"))
    _write_chart(rows, results, output_dir / "results.png")


def measured_rows(results: dict) -> list[tuple[str, dict]]:
    """Return (label, measurement) for every measured command, in the order they ran."""
    # results.json stores keys sorted, so the stages are put back in build order here.
    rows = [(f"stage: {stage}", results["stages"][stage]) for stage in STAGES if stage in results["stages"]]
    rows.append(("build (fresh artifacts folder)", results["build"]))
    rows += [(f"build, nothing to do (run {index + 1})", run) for index, run in enumerate(results["noop_builds"]["runs"])]
    rows.append((f"predict CLI, {results['sentences']} lines", results["predict_cli"]))
    rows.append(("predict vs pipeline (both, one process)", results["predict"]["process"]))
    peer = results["peer"]
    if peer["installed"]:
        rows += [(f"peer: optimum-cli {key}", peer[key]) for key in ("openvino_fp16", "onnx")]
    return rows


def _steps_table(rows: list[tuple[str, dict]]) -> list[str]:
    lines = [
        "| step | exit | wall s | CPU s | peak GB | largest process, max RSS GB | process tree, max PSS GB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, figures in rows:
        kernel, tree = figures.get("kernel_peak_rss_gb"), figures.get("tree_peak_pss_gb")
        lines.append(
            f"| {label} | {figures['exit_code']} | {figures['wall_s']:.2f} | {figures['cpu_s']:.2f} | {figures['peak_rss_gb']:.2f} "
            f"| {_number(kernel)} | {_number(tree)} |"
        )
    return lines


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _predict_table(results: dict) -> list[str]:
    comparisons = results["predict"]["comparison"]
    if comparisons is None:
        return [f"predict comparison failed, see {results['predict']['process']['log']}"]
    lines = [
        f"Predict over {results['sentences']} lines (load and run timed apart; lines/s counts the run only):",
        "",
        "| side | load s | run s | lines/s | entities found | lines whose entities differ from the pipeline |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for comparison in comparisons.values():
        side = comparison["predict"]
        lines.append(f"| {side['name']} | {side['load_s']:.2f} | {side['run_s']:.2f} | {side['lines_per_s']:.1f} | {side['entities']} | {comparison['lines_with_different_entities']} |")
    side = comparisons["f32"]["pipeline"]
    lines.append(f"| {side['name']} | {side['load_s']:.2f} | {side['run_s']:.2f} | {side['lines_per_s']:.1f} | {side['entities']} | - |")
    return lines


def peer_reference(results: dict) -> tuple[dict, str]:
    """Return optimum-cli's OpenVINO FP16 export figures and whether they were measured or quoted."""
    peer = results["peer"]
    if peer["installed"] and peer["openvino_fp16"]["exit_code"] == 0:
        return peer["openvino_fp16"], "measured"
    return QUOTED_PEER["optimum-cli export openvino --weight-format fp16"], "quoted, not measured here"


def evaluate_targets(results: dict) -> list[tuple[str, str, str, bool]]:
    """Return (target, measured, limit, met) for each target."""
    build, noop = results["build"], results["noop_builds"]
    peer, peer_source = peer_reference(results)
    targets = [
        ("build wall time <= optimum-cli openvino fp16", f"{build['wall_s']:.1f} s", f"{peer['wall_s']:.1f} s ({peer_source})", build["exit_code"] == 0 and build["wall_s"] <= peer["wall_s"]),
        ("build peak RSS", f"{build['peak_rss_gb']:.2f} GB", f"<= {BUILD_PEAK_RSS_LIMIT_GB} GB", build["exit_code"] == 0 and build["peak_rss_gb"] <= BUILD_PEAK_RSS_LIMIT_GB),
        ("build with nothing to do (median)", f"{noop['median_wall_s']:.2f} s", f"< {NOOP_BUILD_LIMIT_S} s", set(noop["exit_codes"]) == {0} and noop["median_wall_s"] < NOOP_BUILD_LIMIT_S),
    ]
    comparisons = results["predict"]["comparison"]
    if comparisons is None:
        targets.append(("predict throughput vs pipeline", "failed", f">= {PREDICT_SPEEDUP_TARGET}x", False))
        return targets
    deployed, exact = comparisons["deployed"], comparisons["f32"]
    targets.append(("FP16 predict throughput vs pipeline", f"{deployed['throughput_ratio']:.2f}x", f">= {PREDICT_SPEEDUP_TARGET}x", deployed["throughput_ratio"] >= PREDICT_SPEEDUP_TARGET))
    for label, comparison in (("FP16 predict, default precision", deployed), ("FP32 predict pinned to f32", exact)):
        differ = comparison["lines_with_different_entities"]
        targets.append((f"{label}: same entities as the pipeline", f"{differ} of {comparison['lines']} lines differ", "0 lines differ", differ == 0))
    return targets


def _targets_table(results: dict) -> list[str]:
    lines = ["| target | measured | limit | met |", "|---|---:|---:|---|"]
    for target, measured, limit, met in evaluate_targets(results):
        lines.append(f"| {target} | {measured} | {limit} | {'yes' if met else 'NO'} |")
    return lines


def _write_chart(rows: list[tuple[str, dict]], results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    labels = [label for label, _ in rows]
    figure, (wall_axis, memory_axis) = pyplot.subplots(1, 2, figsize=(13, 0.45 * len(rows) + 1.5), sharey=True)
    wall_axis.barh(labels, [figures["wall_s"] for _, figures in rows], color="tab:blue")
    memory_axis.barh(labels, [figures["peak_rss_gb"] for _, figures in rows], color="tab:orange")
    peer, peer_source = peer_reference(results)
    wall_axis.axvline(peer["wall_s"], color="black", linestyle="--", label=f"optimum-cli openvino fp16 ({peer_source})")
    memory_axis.axvline(BUILD_PEAK_RSS_LIMIT_GB, color="black", linestyle="--", label=f"build limit {BUILD_PEAK_RSS_LIMIT_GB} GB")
    wall_axis.set_xlabel("wall time, s")
    memory_axis.set_xlabel("peak resident memory, GB")
    wall_axis.invert_yaxis()
    for axis in (wall_axis, memory_axis):
        axis.legend(loc="lower right", fontsize="small")
    figure.suptitle(f"omz-like on the {results['checkpoint']} checkpoint")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    pyplot.close(figure)
