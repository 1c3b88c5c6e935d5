"""`build`: fetch, export, convert and parity in order, incremental and all-or-nothing.

A stage is skipped when the digest of its inputs (hashes, settings, tool
versions) equals the one in the manifest and its recorded outputs still
hash as recorded. When any stage must run, the build works in a staging
folder (`<dir>/.<name>.build`) seeded with hard links to the current
artifacts, and swaps it into place only after every stage has passed. An
interrupted or failed build therefore leaves the previous complete
artifacts (or none), never a mix.

Heavy modules (torch, transformers, openvino) are imported inside the stage
runners, so a build with nothing to do stays fast.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from converter import manifest as manifest_io
from converter.errors import ArtifactError, ParityError
from converter.files import model_lock, read_json
from converter.layout import Layout
from converter.parity_inputs import FULL, QUICK
from converter.recipe import Recipe

if TYPE_CHECKING:
    from converter.parity import Reference

log = logging.getLogger(__name__)

STAGES = ("fetch", "export", "convert", "parity")


@dataclass
class StageOutcome:
    name: str
    ran: bool
    seconds: float = 0.0
    reason: str = ""


@dataclass
class BuildResult:
    layout: Layout
    stages: list[StageOutcome] = field(default_factory=list)
    manifest: dict | None = None

    @property
    def up_to_date(self) -> bool:
        return not any(stage.ran for stage in self.stages)


@dataclass
class _Context:
    """State shared by the stages of one build."""

    recipe: Recipe
    layout: Layout
    precisions: tuple[str, ...]
    cache: manifest_io.StatCache
    previous: dict | None
    versions: dict[str, str]
    revision: str | None = None
    offline: bool = False
    parity_inputs: str = QUICK
    record: dict | None = None
    hashes: dict[str, str] = field(default_factory=dict)
    stage_entries: dict[str, dict] = field(default_factory=dict)
    parity_report: dict | None = None
    # PyTorch's logits for the parity inputs, computed by this build's export stage.
    reference: Reference | None = None


def build(
    recipe: Recipe,
    artifacts_dir: Path,
    precisions: tuple[str, ...],
    *,
    force: bool = False,
    revision: str | None = None,
    offline: bool = False,
    parity_inputs: str = QUICK,
) -> BuildResult:
    """Bring `<artifacts_dir>/<name>` up to date with RECIPE; raise ParityError when parity fails.

    PARITY_INPUTS names the parity input set, "quick" or "full" (see
    `converter.parity_inputs`). A passed full check also counts as a quick
    one. When the quick set fails, the full set runs and gives the verdict,
    so a build never fails a model that the full check passes.
    """
    layout = Layout.for_recipe(recipe, artifacts_dir)
    if layout.root.exists() and not layout.root.is_dir():
        raise ArtifactError(layout.root, "exists and is not a folder", hint="Move the file away or choose another --artifacts-dir")
    with model_lock(layout.lock_file):
        _recover_interrupted_swap(layout)
        cache = manifest_io.StatCache(_stat_cache_path(layout))
        previous = None if force else manifest_io.read_manifest(layout)
        context = _Context(recipe, layout, precisions, cache, previous, manifest_io.tool_versions(), revision, offline, parity_inputs)

        if previous is not None and _plan_is_noop(context):
            # Manifests written before input sets existed lack the key, so it comes from the parity report.
            previous.setdefault("parity_inputs", _checked_input_set(read_json(layout.parity_report)))
            result = BuildResult(layout, [StageOutcome(s, ran=False, reason="up to date") for s in STAGES], previous)
            _log_stages(result.stages)
            return result
        return _build_in_staging(context)


# --- planning -------------------------------------------------------------


def _plan_is_noop(context: _Context) -> bool:
    """Check, without running anything, that every stage is recorded as done with these inputs."""
    previous = context.previous
    if previous.get("precisions") != list(context.precisions) or context.revision is not None:
        return False
    context.record = read_json(context.layout.source_record)
    for stage in STAGES:
        digest = _STAGE_DIGESTS[stage](context)
        entry = previous.get("stages", {}).get(stage)
        if entry is None or entry.get("digest") != digest or not _outputs_match(context, entry) or not _covers(context, stage):
            log.debug("%s is out of date", stage)
            return False
        context.stage_entries[stage] = entry
    return previous.get("parity_passed") is True


def _covers(context: _Context, stage: str) -> bool:
    """Return True unless STAGE is parity and its report, already checked against the manifest, covers fewer inputs than asked."""
    if stage != "parity":
        return True
    checked = _checked_input_set(read_json(context.layout.parity_report))
    return checked == FULL or checked == context.parity_inputs


def _checked_input_set(report: dict | None) -> str | None:
    """Return the input set a parity report covers; reports written before input sets existed covered the full set."""
    if not isinstance(report, dict) or not isinstance(report.get("inputs"), dict):
        return None
    return report["inputs"].get("set", FULL)


def _outputs_match(context: _Context, entry: dict) -> bool:
    """Check that the stage's recorded outputs exist and still hash as the manifest records."""
    recorded = {a["path"]: a for a in context.previous.get("artifacts", [])}
    for relative in entry.get("outputs", []):
        path = context.layout.root / relative
        artifact = recorded.get(relative)
        if artifact is None or not path.is_file() or path.stat().st_size != artifact["size"]:
            return False
        digest = context.cache.sha256(path)
        if digest != artifact["sha256"]:
            return False
        context.hashes[relative] = digest
    return True


def _hashes_of(context: _Context, prefixes: tuple[str, ...]) -> dict[str, str]:
    return {path: digest for path, digest in sorted(context.hashes.items()) if path.startswith(prefixes)}


def _fetch_digest(context: _Context) -> str:
    source = context.recipe.source
    return manifest_io.digest_of(
        {
            "repo": source.repo,
            "revision": context.revision or source.revision,
            "files": [[f.name, f.size, f.hash_algorithm, f.hash_value] for f in source.files],
        }
    )


def _export_digest(context: _Context) -> str:
    recipe = context.recipe
    return manifest_io.digest_of(
        {
            "source": _hashes_of(context, ("source/", "source.json")),
            "opset": recipe.opset,
            "inputs": [[t.name, list(t.shape), t.dtype] for t in recipe.inputs],
            "outputs": [[t.name, list(t.shape), t.dtype] for t in recipe.outputs],
            "lower_case": recipe.lower_case,
            "labels": list(recipe.labels or []),
            "tools": {k: context.versions[k] for k in ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers", "omz-like")},
        }
    )


def _convert_digest(context: _Context) -> str:
    recipe = context.recipe
    return manifest_io.digest_of(
        {
            "onnx": _hashes_of(context, ("onnx/",)),
            "precisions": list(context.precisions),
            "origin": [recipe.name, recipe.source.repo, (context.record or {}).get("commit_hash"), list(recipe.labels or [])],
            "tools": {k: context.versions[k] for k in ("openvino", "omz-like")},
        }
    )


def _parity_digest(context: _Context) -> str:
    recipe = context.recipe
    ir_prefixes = tuple(f"{p}/" for p in context.precisions)
    return manifest_io.digest_of(
        {
            "artifacts": _hashes_of(context, ("source/", "onnx/") + ir_prefixes),
            "precisions": list(context.precisions),
            "tolerances": {k: v.__dict__ for k, v in sorted(recipe.tolerances.items())},
            "lower_case": recipe.lower_case,
            "tools": dict(context.versions),
        }
    )


_STAGE_DIGESTS: dict[str, Callable[[_Context], str]] = {
    "fetch": _fetch_digest,
    "export": _export_digest,
    "convert": _convert_digest,
    "parity": _parity_digest,
}


# --- running --------------------------------------------------------------


def _build_in_staging(context: _Context) -> BuildResult:
    final = context.layout
    staging = Layout(root=_staging_root(final), name=final.name)
    _seed_staging(final, staging, _kept_files(context))
    context.layout = staging
    context.hashes.clear()
    result = BuildResult(final)

    for stage in STAGES:
        outcome = _run_or_skip(context, stage)
        result.stages.append(outcome)

    document = _manifest_document(context)
    manifest_io.write_manifest(staging, document)
    if not document["parity_passed"]:
        error = ParityError(
            f"{_failure_summary(context)}; the previous artifacts in {final.root} are unchanged",
            hint=f"See {staging.parity_report} for every metric. The new artifacts stay in {staging.root} until the next build",
        )
        error.verdicts = document["parity"]
        error.parity_inputs = document["parity_inputs"]
        raise error

    _swap_into_place(staging, final)
    _refresh_stat_cache(context, final)
    result.manifest = document
    return result


def _run_or_skip(context: _Context, stage: str) -> StageOutcome:
    if stage == "fetch" or stage == "export":
        context.record = read_json(context.layout.source_record)
    digest = _STAGE_DIGESTS[stage](context)
    entry = (context.previous or {}).get("stages", {}).get(stage)
    up_to_date = entry is not None and entry.get("digest") == digest and _outputs_match(context, entry) and _covers(context, stage)
    if up_to_date and (stage != "parity" or (context.previous or {}).get("parity_passed") is True):
        context.stage_entries[stage] = entry
        outcome = StageOutcome(stage, ran=False, reason="up to date")
        _log_stages([outcome])
        return outcome

    log.info("%s: running", stage)
    started = time.monotonic()
    _RUNNERS[stage](context)
    outputs = _stage_outputs(context, stage)
    for path in outputs:
        context.hashes[context.layout.relative(path)] = context.cache.sha256(path)
    if stage == "fetch":
        context.record = read_json(context.layout.source_record)
    context.stage_entries[stage] = {"digest": digest, "outputs": sorted(context.layout.relative(p) for p in outputs)}
    outcome = StageOutcome(stage, ran=True, seconds=time.monotonic() - started)
    _log_stages([outcome])
    return outcome


def _stage_outputs(context: _Context, stage: str) -> list[Path]:
    layout = context.layout
    if stage == "fetch":
        return manifest_io.files_under(layout.source_dir) + [layout.source_record]
    if stage == "export":
        return manifest_io.files_under(layout.onnx_dir)
    if stage == "convert":
        return [p for precision in context.precisions for p in manifest_io.files_under(layout.ir_dir(precision))]
    return [layout.parity_report]


def _run_fetch(context: _Context) -> None:
    from converter.fetching import fetch

    fetch(context.recipe, context.layout, revision=context.revision, offline=context.offline)


def _run_export(context: _Context) -> None:
    """Export, and keep PyTorch's logits for the parity inputs so that the parity stage needs no PyTorch process."""
    from converter.export import export_onnx
    from converter.parity import Reference, stacked_inputs
    from converter.parity_inputs import arrays_digest

    _remove_tree(context.layout.onnx_dir)
    arrays = stacked_inputs(context.recipe, context.layout, context.parity_inputs)
    result = export_onnx(context.recipe, context.layout, source_record=context.record, reference_inputs=arrays)
    context.reference = Reference(arrays_digest(arrays), result.reference_logits)


def _run_convert(context: _Context) -> None:
    from converter.conversion import convert_ir
    from converter.isolation import run_isolated

    for precision in context.precisions:
        _remove_tree(context.layout.ir_dir(precision))
    run_isolated(convert_ir, context.recipe, context.layout, context.precisions, source_record=context.record)


def _run_parity(context: _Context) -> None:
    """Check the requested input set. When the quick set fails, check the full set, whose verdict is final."""
    from converter.isolation import run_isolated
    from converter.parity import backend_verdicts, run_parity, verdict

    recipe, layout, precisions = context.recipe, context.layout, context.precisions
    report = run_isolated(run_parity, recipe, layout, precisions, input_set=context.parity_inputs, reference=context.reference)
    if context.parity_inputs == QUICK and not verdict(report):
        failed = ", ".join(key for key, value in backend_verdicts(report).items() if value != "PASS")
        log.warning("parity: %s failed on the quick set; checking the full set, whose verdict is final", failed)
        report = run_isolated(run_parity, recipe, layout, precisions, input_set=FULL)
    context.parity_report = report


_RUNNERS: dict[str, Callable[[_Context], None]] = {
    "fetch": _run_fetch,
    "export": _run_export,
    "convert": _run_convert,
    "parity": _run_parity,
}


# --- manifest -------------------------------------------------------------


def _manifest_document(context: _Context) -> dict:
    recipe, layout = context.recipe, context.layout
    record = context.record or {}
    verdicts = _parity_verdicts(context)
    all_outputs = sorted({p for entry in context.stage_entries.values() for p in entry["outputs"]})
    artifacts = [
        {"path": p, "size": (layout.root / p).stat().st_size, "sha256": context.hashes[p]} for p in all_outputs
    ]
    return {
        "format": manifest_io.MANIFEST_FORMAT,
        "recipe": {"name": recipe.name, "sha256": recipe.sha256},
        "source": {
            "repo": record.get("repo", recipe.source.repo),
            "revision": record.get("revision", recipe.source.revision),
            "commit_hash": record.get("commit_hash"),
            "files": record.get("files", []),
        },
        "tools": context.versions,
        "export": {"opset": recipe.opset, "exporter": f"torch.onnx dynamo (torch {context.versions['torch']})"},
        "precisions": list(context.precisions),
        "stages": context.stage_entries,
        "artifacts": artifacts,
        "parity": verdicts,
        "parity_inputs": _checked_input_set(_parity_report(context)),
        "parity_passed": bool(verdicts) and all(v == "PASS" for v in verdicts.values()),
    }


def _failure_summary(context: _Context) -> str:
    """Name each failed parity check and its limit, as `omz-like parity` does."""
    from converter.parity_report import describe_failure

    report = _parity_report(context)
    if not isinstance(report, dict) or not any(not b["passed"] for b in report.get("backends", {}).values()):
        return "parity failed: no parity report with a failed backend was written"
    return describe_failure(report)


def _parity_report(context: _Context) -> dict | None:
    """Return this build's parity report, or the one on disk when parity was skipped."""
    return context.parity_report or read_json(context.layout.parity_report)


def _parity_verdicts(context: _Context) -> dict[str, str]:
    """Return PASS or FAIL per backend from this build's parity report, or the recorded ones when parity was skipped."""
    report = _parity_report(context)
    if report is None:
        return {}
    from converter.parity import backend_verdicts

    return backend_verdicts(report)


# --- staging and swapping -------------------------------------------------


def _kept_files(context: _Context) -> set[str]:
    """Return the artifacts a new build may reuse: the recipe's source files and what the manifest lists.

    Files the manifest does not list (a stray file, a precision this build
    does not make) are left out, so the new folder contains exactly what its
    manifest will list.
    """
    layout = context.layout
    kept = {f"source/{entry.name}" for entry in context.recipe.source.files}
    if layout.source_record.is_file():
        kept.add(layout.relative(layout.source_record))
    listed = {a["path"] for a in (context.previous or {}).get("artifacts", [])}
    precision_folders = {"onnx", *context.precisions}
    kept |= {path for path in listed if path.split("/", 1)[0] in precision_folders}
    return kept


def _seed_staging(final: Layout, staging: Layout, kept: set[str]) -> None:
    """Fill the staging folder with hard links to the current artifacts in KEPT."""
    _remove_tree(staging.root)
    staging.root.mkdir(parents=True)
    for relative in sorted(kept):
        path = final.root / relative
        if not path.is_file():
            continue
        target = staging.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def _swap_into_place(staging: Layout, final: Layout) -> None:
    """Replace FINAL's folder with STAGING's; an interruption between the renames is repaired on the next build."""
    old = _old_root(final)
    _remove_tree(old)
    if final.root.exists():
        os.replace(final.root, old)
    os.replace(staging.root, final.root)
    _remove_tree(old)


def _recover_interrupted_swap(layout: Layout) -> None:
    """Restore the previous artifacts if a swap was cut short, and drop a stale staging folder."""
    old = _old_root(layout)
    if old.exists() and not layout.root.exists():
        log.warning("restoring %s from an interrupted build", layout.root)
        os.replace(old, layout.root)
    _remove_tree(old)
    _remove_tree(_staging_root(layout))


def _staging_root(layout: Layout) -> Path:
    return layout.root.parent / f".{layout.name}.build"


def _old_root(layout: Layout) -> Path:
    return layout.root.parent / f".{layout.name}.old"


def _stat_cache_path(layout: Layout) -> Path:
    return layout.root.parent / f".{layout.name}.stat.json"


def _refresh_stat_cache(context: _Context, final: Layout) -> None:
    files = [(final.root / relative, digest) for relative, digest in context.hashes.items()]
    context.cache.refresh(files)


def _remove_tree(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _log_stages(outcomes: list[StageOutcome]) -> None:
    for outcome in outcomes:
        position = STAGES.index(outcome.name) + 1
        if outcome.ran:
            log.info("[%d/%d] %s: done in %.1f s", position, len(STAGES), outcome.name, outcome.seconds)
        else:
            log.info("[%d/%d] %s: %s", position, len(STAGES), outcome.name, outcome.reason)
