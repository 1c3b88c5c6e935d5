"""Measure each build stage, the whole build, the no-op build, predict, and the optimum-cli peer.

Usage, from the repository root with the project's virtual environment active:

    python -m benchmarks.run [--work-dir DIR] [--output-dir benchmarks/results] [--optimum-bin DIR]

The checkpoint has the full bert-base-NER configuration with random weights
(tests/checkpoints.py). It is placed in the artifacts folder with its
source.json record, as `fetch` leaves it, so `fetch` verifies the placed
files and downloads nothing. Every command runs as a subprocess with
HF_ENDPOINT at a closed loopback port, so nothing can reach another host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.measure import Measurement, measure
from benchmarks.report import STAGES, write_report
from converter.files import write_json_atomic
from converter.parity_inputs import corpus_sentences
from converter.recipe import load_recipe
from converter.tokenization import WordPieceTokenizer
from tests.checkpoints import place_source

CLOSED_ENDPOINT = "http://127.0.0.1:9"
MODEL_NAME = "bert-base-ner-random"


def main(argv: list[str] | None = None) -> None:
    arguments = _parse_arguments(argv)
    work = arguments.work_dir or Path(tempfile.mkdtemp(prefix="omz-like-benchmark."))
    work.mkdir(parents=True, exist_ok=True)
    env = _subprocess_env(work)
    checkpoint, recipe_path = _prepare_checkpoint(work, tiny=arguments.tiny)
    sentences = _write_sentences(work / "sentences.txt", arguments.sentences, checkpoint=checkpoint, recipe_path=recipe_path)

    results: dict = {"work_dir": str(work), "checkpoint": "tiny" if arguments.tiny else "full-size", "sentences": arguments.sentences}
    results["stages"] = _measure_stages(recipe_path, checkpoint, work, env)
    results["build"], results["noop_builds"] = _measure_builds(recipe_path, checkpoint, work, env, noop_runs=arguments.noop_runs)
    results["predict_cli"] = _run(["predict", recipe_path, "--input", sentences, "--json", "--artifacts-dir", work / "build"], work, env, "predict-cli")
    results["predict"] = _compare_predict(recipe_path, work / "build", sentences, work, env)
    results["peer"] = _measure_peer(arguments.optimum_bin, checkpoint, work, env)

    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(arguments.output_dir / "results.json", results)
    write_report(results, arguments.output_dir)
    print((arguments.output_dir / "results.md").read_text(encoding="utf-8"))


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, help="Folder for the checkpoint and the artifacts (default: a new temporary folder).")
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"), help="Folder that receives results.json, results.md and results.png.")
    parser.add_argument("--optimum-bin", type=Path, help="bin/ folder of a virtual environment with optimum-cli (default: this environment's).")
    parser.add_argument("--sentences", type=int, default=1000, help="Lines given to predict and to the transformers pipeline.")
    parser.add_argument("--noop-runs", type=int, default=3, help="Builds with nothing to do; the median wall time is reported.")
    parser.add_argument("--tiny", action="store_true", help="Use the tiny test checkpoint, to check the script itself quickly.")
    return parser.parse_args(argv)


def _subprocess_env(work: Path) -> dict[str, str]:
    """Return this environment with every Hugging Face cache in WORK and the Hub endpoint at a closed loopback port."""
    env = dict(os.environ)
    env.update(
        HF_ENDPOINT=CLOSED_ENDPOINT,
        HF_HOME=str(work / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(Path.cwd()), env.get("PYTHONPATH")])),
    )
    env.pop("OMZ_LIKE_ARTIFACTS_DIR", None)
    return env


def _prepare_checkpoint(work: Path, *, tiny: bool) -> tuple[Path, Path]:
    """Write the checkpoint (once per WORK folder) and its recipe, in a subprocess.

    The subprocess imports torch and keeps the model in memory, so this
    process stays small while it measures the others.
    """
    checkpoint = work / "checkpoint"
    recipe_path = work / "recipes" / f"{MODEL_NAME}.yaml"
    spec = "TINY" if tiny else "FULL_SIZE"
    code = (
        "import sys\nfrom pathlib import Path\nfrom tests import checkpoints as c\n"
        "folder, recipe = Path(sys.argv[1]), Path(sys.argv[2])\n"
        f"if not (folder / 'pytorch_model.bin').is_file():\n    c.write_checkpoint(folder, c.{spec})\n"
        f"c.write_recipe(recipe, folder, name='{MODEL_NAME}', repo='benchmarks/{MODEL_NAME}')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(checkpoint), str(recipe_path)], check=True, env=_subprocess_env(work))
    return checkpoint, recipe_path


def _write_sentences(path: Path, count: int, *, checkpoint: Path, recipe_path: Path) -> Path:
    """Write COUNT lines: the parity corpus's sentences that fit one model input, repeated in order.

    Longer sentences are left out because `predict` splits them into
    overlapping windows while the pipeline runs them in one pass (and fails
    beyond 512 positions), so the two would no longer see the same inputs.
    """
    recipe = load_recipe(str(recipe_path))
    tokenizer = WordPieceTokenizer(checkpoint / "vocab.txt", lower_case=recipe.lower_case)
    capacity = recipe.sequence_length - 2
    corpus = [line for line in corpus_sentences() if len(tokenizer.tokenize(line).ids) <= capacity]
    path.write_text("\n".join(corpus[index % len(corpus)] for index in range(count)) + "\n", encoding="utf-8")
    return path


def _place_source(recipe_path: Path, checkpoint: Path, artifacts: Path) -> None:
    """Start ARTIFACTS afresh with the checkpoint placed in <name>/source/, as `fetch` leaves it."""
    if artifacts.exists():
        shutil.rmtree(artifacts)
    place_source(recipe_path, checkpoint, artifacts, commit_hash="0" * 40)


def _run(arguments: list, work: Path, env: dict[str, str], label: str) -> dict:
    """Run `python -m converter ARGUMENTS...` under measurement and return the figures."""
    command = [sys.executable, "-m", "converter", *map(str, arguments)]
    result = measure(command, log_path=work / "logs" / f"{label}.log", env=env)
    print(f"{label}: exit {result.exit_code}, {result.wall_s:.1f} s, {result.peak_rss_gb:.2f} GB", file=sys.stderr)
    return _as_dict(result)


def _as_dict(result: Measurement) -> dict:
    return {
        "command": " ".join(Path(part).name if index == 0 else part for index, part in enumerate(result.command)),
        "exit_code": result.exit_code,
        "wall_s": result.wall_s,
        "cpu_s": result.cpu_s,
        "peak_rss_gb": round(result.peak_rss_gb, 3),
        "kernel_peak_rss_gb": round(result.kernel_peak_rss_bytes / 1e9, 3),
        "tree_peak_pss_gb": round(result.tree_peak_pss_bytes / 1e9, 3),
        "log": result.log_path,
    }


def _measure_stages(recipe_path: Path, checkpoint: Path, work: Path, env: dict[str, str]) -> dict:
    artifacts = work / "stages"
    _place_source(recipe_path, checkpoint, artifacts)
    return {stage: _run([stage, recipe_path, "--artifacts-dir", artifacts], work, env, f"stage-{stage}") for stage in STAGES}


def _measure_builds(recipe_path: Path, checkpoint: Path, work: Path, env: dict[str, str], *, noop_runs: int) -> tuple[dict, dict]:
    """Measure a build into a fresh artifacts folder, then NOOP_RUNS builds with nothing to do."""
    artifacts = work / "build"
    _place_source(recipe_path, checkpoint, artifacts)
    command = ["build", recipe_path, "--artifacts-dir", artifacts]
    full = _run(command, work, env, "build")
    runs = [_run(command, work, env, f"build-noop-{index}") for index in range(noop_runs)]
    noop = {
        "runs": runs,
        "median_wall_s": round(statistics.median(run["wall_s"] for run in runs), 3),
        "max_peak_rss_gb": max(run["peak_rss_gb"] for run in runs),
        "exit_codes": [run["exit_code"] for run in runs],
    }
    return full, noop


def _compare_predict(recipe_path: Path, artifacts: Path, sentences: Path, work: Path, env: dict[str, str]) -> dict:
    output = work / "predict-compare.json"
    command = [sys.executable, "-m", "benchmarks.predict_compare", str(recipe_path), str(artifacts), str(sentences), str(output)]
    measured = _as_dict(measure(command, log_path=work / "logs" / "predict-compare.log", env=env))
    comparison = json.loads(output.read_text()) if measured["exit_code"] == 0 else None
    return {"process": measured, "comparison": comparison}


def _measure_peer(optimum_bin: Path | None, checkpoint: Path, work: Path, env: dict[str, str]) -> dict:
    """Run optimum-cli's OpenVINO and ONNX exports on the same checkpoint, when optimum-cli is installed."""
    folder = optimum_bin or Path(sys.executable).parent
    executable = folder / "optimum-cli"
    if not executable.is_file():
        return {"installed": False, "looked_in": str(folder)}
    commands = {
        "openvino_fp16": [str(executable), "export", "openvino", "--model", str(checkpoint), "--task", "token-classification", "--weight-format", "fp16", str(work / "optimum-openvino")],
        "onnx": [str(executable), "export", "onnx", "--model", str(checkpoint), "--task", "token-classification", str(work / "optimum-onnx")],
    }
    peer = {"installed": True, "looked_in": str(folder)}
    for key, command in commands.items():
        peer[key] = _as_dict(measure(command, log_path=work / "logs" / f"optimum-{key}.log", env=env))
    return peer


if __name__ == "__main__":
    main()
