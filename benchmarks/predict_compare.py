"""Compare `predict` on an IR with the transformers pipeline on the PyTorch checkpoint.

Usage: python -m benchmarks.predict_compare RECIPE ARTIFACTS_DIR SENTENCES OUTPUT_JSON [--precision FP16]

`predict` runs twice: on the IR of PRECISION at the runtime's default
inference precision, as deployed, and on the FP32 IR pinned to f32. With
random weights the logits of different labels lie close together, so bf16
rounding alone can change a tag, and only the f32 run is expected to find
exactly the pipeline's entities. All sides run over the same lines. Loading (compiling the IR, building the
pipeline) is timed apart from the run, and throughput counts only the run.
Entities are compared per line as (type, start, end) tuples, so scores may
differ but spans and types must not.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from converter.files import write_json_atomic
from converter.layout import Layout
from converter.recipe import load_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("artifacts_dir", type=Path)
    parser.add_argument("sentences", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--precision", default="FP16")
    arguments = parser.parse_args()

    recipe = load_recipe(arguments.recipe)
    layout = Layout.for_recipe(recipe, arguments.artifacts_dir)
    lines = arguments.sentences.read_text(encoding="utf-8").splitlines()

    deployed = run_predict(recipe, layout, lines, precision=arguments.precision, inference_precision=None)
    exact = run_predict(recipe, layout, lines, precision="FP32", inference_precision="f32")
    pipeline = run_pipeline(layout, lines, lower_case=recipe.lower_case)
    write_json_atomic(arguments.output, {"deployed": compare(deployed, pipeline, lines), "f32": compare(exact, pipeline, lines)})


def run_predict(recipe, layout: Layout, lines: list[str], *, precision: str, inference_precision: str | None) -> dict:
    """Run `converter.predict` over LINES; INFERENCE_PRECISION None keeps the runtime's default, as deployed."""
    from converter.predict import open_predictor, predict_lines

    started = time.perf_counter()
    predictor = open_predictor(recipe, layout, precision=precision, inference_precision=inference_precision)
    loaded = time.perf_counter()
    entities = [[(e.type, e.start, e.end) for e in line.entities] for line in predict_lines(predictor, lines)]
    finished = time.perf_counter()
    return {
        "name": f"omz-like predict ({precision} IR, runs at {predictor.compiled.inference_precision})",
        "load_s": round(loaded - started, 3),
        "run_s": round(finished - loaded, 3),
        "entities": entities,
    }


def run_pipeline(layout: Layout, lines: list[str], *, lower_case: bool) -> dict:
    """Run transformers' token-classification pipeline with aggregation_strategy="simple" on CPU.

    The tokenizer is built from vocab.txt with the recipe's casing, because
    a checkpoint without tokenizer_config.json would otherwise get
    BertTokenizer's default, do_lower_case=True.
    """
    from transformers import BertTokenizerFast, pipeline
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    started = time.perf_counter()
    # NOTE: vocab.txt goes in as the positional argument. In transformers 5.25
    # the keyword vocab_file= yields a tokenizer that maps every word to [UNK].
    tokenizer = BertTokenizerFast(str(layout.source_dir / "vocab.txt"), do_lower_case=lower_case)
    tagger = pipeline("token-classification", model=str(layout.source_dir), tokenizer=tokenizer, aggregation_strategy="simple", device="cpu")
    loaded = time.perf_counter()
    results = tagger(lines)
    finished = time.perf_counter()
    entities = [[(e["entity_group"], e["start"], e["end"]) for e in line] for line in results]
    return {
        "name": "transformers pipeline (PyTorch, batch size 1)",
        "load_s": round(loaded - started, 3),
        "run_s": round(finished - loaded, 3),
        "entities": entities,
    }


def compare(openvino: dict, pipeline: dict, lines: list[str]) -> dict:
    """Return both sides' timings, the throughput ratio and the lines whose entities differ."""
    different = [index for index, (a, b) in enumerate(zip(openvino["entities"], pipeline["entities"])) if a != b]
    sides = {}
    for key, side in (("predict", openvino), ("pipeline", pipeline)):
        sides[key] = {
            "name": side["name"],
            "load_s": side["load_s"],
            "run_s": side["run_s"],
            "lines_per_s": round(len(lines) / side["run_s"], 1),
            "entities": sum(len(found) for found in side["entities"]),
        }
    return {
        "lines": len(lines),
        **sides,
        "throughput_ratio": round(sides["predict"]["lines_per_s"] / sides["pipeline"]["lines_per_s"], 2),
        "lines_with_different_entities": len(different),
        "first_differences": [
            {"line": index, "predict": openvino["entities"][index], "pipeline": pipeline["entities"][index]} for index in different[:5]
        ],
    }


if __name__ == "__main__":
    main()
