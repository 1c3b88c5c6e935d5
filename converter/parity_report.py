"""Parity metrics of one backend against PyTorch, and how they are shown.

Every metric covers only positions whose attention_mask is 1, so padding is
never compared. The report is a plain dictionary that is written as JSON.
Non-finite measured values are stored as null and always fail their check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.decoding import entity_spans
from converter.files import atomic_path
from converter.recipe import Tolerance

PASS, FAIL = "PASS", "FAIL"

# (metric, Tolerance field or None, comparison). `nonfinite` must be 0.
CHECKS = (
    ("nonfinite", None, "=="),
    ("max_abs", "max_abs", "<="),
    ("mean_abs", "mean_abs", "<="),
    ("min_cosine", "min_cosine", ">="),
    ("argmax_agreement", "argmax_agreement", ">="),
    ("entity_agreement", "entity_agreement", ">="),
)


@dataclass(frozen=True)
class Position:
    """The logit with the largest absolute difference: input index, token position and class index."""

    input_index: int
    position: int
    label_index: int


def measure(reference: np.ndarray, candidate: np.ndarray, mask: np.ndarray, *, labels: Sequence[str], entity_mask: np.ndarray) -> dict[str, float]:
    """Compare CANDIDATE logits [N, L, C] with REFERENCE logits over the positions where MASK [N, L] is 1.

    ENTITY_MASK [N, L] selects the word-piece positions whose tags are
    decoded into entities ([CLS] and [SEP] excluded).
    """
    real = mask.astype(bool)
    expected = reference[real].astype(np.float64)
    actual = candidate[real].astype(np.float64)
    difference = np.abs(actual - expected)
    return {
        "nonfinite": int(np.size(actual) - np.count_nonzero(np.isfinite(actual))),
        "max_abs": float(difference.max()),
        "mean_abs": float(difference.mean()),
        "min_cosine": min_cosine(reference, candidate, real),
        "argmax_agreement": float(np.mean(expected.argmax(axis=-1) == actual.argmax(axis=-1))),
        "entity_agreement": entity_agreement(reference, candidate, entity_mask, labels=labels),
    }


def min_cosine(reference: np.ndarray, candidate: np.ndarray, real: np.ndarray) -> float:
    """Return the smallest cosine similarity over inputs, each input's real logits taken as one vector."""
    values = []
    for index in range(reference.shape[0]):
        expected = reference[index][real[index]].astype(np.float64).ravel()
        actual = candidate[index][real[index]].astype(np.float64).ravel()
        norms = np.linalg.norm(expected) * np.linalg.norm(actual)
        if not np.isfinite(norms):
            values.append(math.nan)
        elif norms == 0.0:
            values.append(1.0 if not expected.any() and not actual.any() else 0.0)
        else:
            values.append(float(expected @ actual / norms))
    return float(np.min(values))


def entity_agreement(reference: np.ndarray, candidate: np.ndarray, entity_mask: np.ndarray, *, labels: Sequence[str]) -> float:
    """Return the fraction of inputs whose decoded entity lists (spans and types) are identical."""
    same = 0
    for index in range(reference.shape[0]):
        selected = entity_mask[index].astype(bool)
        expected = [labels[i] for i in reference[index][selected].argmax(axis=-1)]
        actual = [labels[i] for i in candidate[index][selected].argmax(axis=-1)]
        same += entity_spans(expected) == entity_spans(actual)
    return same / reference.shape[0]


def absolute_differences(reference: np.ndarray, candidate: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return |candidate - reference| at the real positions, flattened, as float64."""
    real = mask.astype(bool)
    return np.abs(candidate[real].astype(np.float64) - reference[real].astype(np.float64)).ravel()


def worst_position(reference: np.ndarray, candidate: np.ndarray, mask: np.ndarray) -> Position:
    """Locate the real logit with the largest absolute difference, counting a non-finite value as the largest."""
    difference = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    difference[~np.isfinite(difference)] = np.inf
    difference[~mask.astype(bool)] = -1.0
    input_index, position, label_index = np.unravel_index(int(np.argmax(difference)), difference.shape)
    return Position(int(input_index), int(position), int(label_index))


def check_metrics(metrics: dict[str, float], tolerance: Tolerance) -> dict[str, str]:
    """Return PASS or FAIL for each metric against TOLERANCE."""
    verdicts = {}
    for metric, field, comparison in CHECKS:
        value = metrics[metric]
        limit = 0 if field is None else getattr(tolerance, field)
        if value is None or not math.isfinite(value):
            passed = False
        elif comparison == "==":
            passed = value == limit
        elif comparison == "<=":
            passed = value <= limit
        else:
            passed = value >= limit
        verdicts[metric] = PASS if passed else FAIL
    return verdicts


def json_number(value: float) -> float | None:
    """Return VALUE, or None when it is NaN or infinite, which JSON cannot hold."""
    return value if math.isfinite(value) else None


def limits(tolerance: Tolerance) -> dict[str, str]:
    """Return each check's limit as text, such as `<= 0.0001`, keyed by metric."""
    limit_texts = {}
    for metric, field, comparison in CHECKS:
        limit = 0 if field is None else getattr(tolerance, field)
        limit_texts[metric] = f"{comparison} {limit:g}"
    return limit_texts


# --- showing --------------------------------------------------------------


def print_table(report: dict, console) -> None:
    """Print one row per backend and metric: value, limit and verdict, on the rich CONSOLE.

    The precision column shows the artifact's precision and, after @, the
    inference precision the runtime used.
    """""
    from rich.table import Table

    table = Table(title=f"parity of {report['model']} against PyTorch on {report['inputs']['count']} inputs")
    for column in ("backend", "precision @ runtime", "metric", "value", "limit", "result"):
        table.add_column(column, justify="right" if column == "value" else "left")

    for key, backend in report["backends"].items():
        for index, (metric, _, _) in enumerate(CHECKS):
            verdict = backend["checks"][metric]
            first = index == 0
            table.add_row(
                backend["runtime"] if first else "",
                f"{backend['precision']} @ {backend['inference_precision']}" if first else "",
                metric,
                _format(backend["metrics"][metric]),
                backend["limits"][metric],
                f"[green]{verdict}[/green]" if verdict == PASS else f"[bold red]{verdict}[/bold red]",
                end_section=index == len(CHECKS) - 1,
            )
    console.print(table)
    overall = PASS if report["passed"] else FAIL
    console.print(f"parity: {overall} (inputs sha256 {report['inputs']['sha256'][:16]}...)")


def describe_failure(report: dict) -> str:
    """Summarise the failed checks of every backend and the worst token of the worst failing backend."""
    failed = {key: backend for key, backend in report["backends"].items() if not backend["passed"]}
    parts = []
    for key, backend in failed.items():
        checks = ", ".join(
            f"{metric} {_format(backend['metrics'][metric])} (limit {backend['limits'][metric]})"
            for metric, verdict in backend["checks"].items()
            if verdict == FAIL
        )
        parts.append(f"{key}: {checks}")

    worst_key = max(failed, key=lambda key: _sort_value(failed[key]["metrics"]["max_abs"]))
    token = failed[worst_key]["worst_token"]
    where = (
        f"worst token in {worst_key}: input {token['input']} {token['text']!r}, position {token['position']}, "
        f"token {token['token']!r}, label {token['label']}: PyTorch {_format(token['pytorch'])}, "
        f"{worst_key} {_format(token['backend'])}"
    )
    return f"parity failed for {'; '.join(parts)}; {where}"


def write_plot(path: Path, differences: dict[str, np.ndarray], *, title: str) -> None:
    """Draw a histogram of the absolute logit differences per backend into the PNG file PATH."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    floor = 1e-10
    largest = max([float(np.nanmax(np.where(np.isfinite(d), d, np.nan), initial=floor)) for d in differences.values()] + [floor * 10])
    bins = np.logspace(math.log10(floor), math.log10(largest) + 0.1, 60)
    figure, axes = pyplot.subplots(figsize=(8, 4.5))
    for key, values in differences.items():
        # Exact zeros cannot sit on a log axis, so they are counted in the first bin.
        shown = np.clip(values[np.isfinite(values)], floor, None)
        axes.hist(shown, bins=bins, histtype="step", linewidth=1.5, label=f"{key} (max {_format(float(values.max()))})")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel(f"|backend logit - PyTorch logit| (values below {floor:g} shown at {floor:g})")
    axes.set_ylabel("logits")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    with atomic_path(Path(path)) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    pyplot.close(figure)


def _format(value: float | None) -> str:
    if value is None:
        return "nan/inf"
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


def _sort_value(value: float | None) -> float:
    return math.inf if value is None else value
