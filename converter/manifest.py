"""The build manifest: what was built from what, and checks against it.

`<dir>/<name>/manifest.json` is deterministic JSON (sorted keys, no
timestamps, no absolute paths). Each stage records a digest of its inputs
(hashes, settings, tool versions) and the artifacts it wrote, so a later
build can tell which stages are up to date.

Re-hashing 1.5 GB of artifacts takes over a second, so `build` keeps a stat
cache beside the model folder (`<dir>/.<name>.stat.json`): a file whose size,
inode, mtime and ctime are unchanged since it was hashed keeps its recorded
hash. Any write to a file changes its ctime, which no user command can set
back. `verify` never uses the cache: it re-hashes every byte.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from converter.files import file_digest, read_json, write_json_atomic
from converter.layout import Layout

MANIFEST_FORMAT = 1

# Distributions whose versions shape the artifacts; recorded in the manifest
# and part of the stage digests that use them.
TOOL_DISTRIBUTIONS = (
    "numpy",
    "torch",
    "transformers",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "openvino",
    "huggingface_hub",
    "tokenizers",
    "omz-like",
)


def tool_versions() -> dict[str, str]:
    """Return the installed versions, read from package metadata so nothing heavy is imported."""
    versions = {"python": platform.python_version()}
    for name in TOOL_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def digest_of(document: object) -> str:
    """Return the sha256 of DOCUMENT serialised as canonical JSON."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class StatCache:
    """Hashes of files keyed by their stat identity, so unchanged files are not re-read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict] = read_json(path) or {}

    @staticmethod
    def _identity(path: Path) -> list[int]:
        status = path.stat()
        return [status.st_size, status.st_ino, status.st_mtime_ns, status.st_ctime_ns]

    def sha256(self, path: Path) -> str:
        """Return PATH's sha256, from the cache when the file has not changed since it was hashed."""
        key = str(path.resolve())
        identity = self._identity(path)
        entry = self.entries.get(key)
        if entry and entry["identity"] == identity:
            return entry["sha256"]
        digest = file_digest(path, "sha256")
        self.entries[key] = {"identity": identity, "sha256": digest}
        return digest

    def refresh(self, files: list[tuple[Path, str]]) -> None:
        """Record the current identity of each (path, known sha256) pair and save the cache."""
        self.entries = {str(p.resolve()): {"identity": self._identity(p), "sha256": h} for p, h in files if p.exists()}
        write_json_atomic(self.path, self.entries)


def read_manifest(layout: Layout) -> dict | None:
    document = read_json(layout.manifest)
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        return None
    return document


def write_manifest(layout: Layout, document: dict) -> None:
    write_json_atomic(layout.manifest, document)


@dataclass
class VerifyResult:
    missing: list[str]
    changed: list[dict]
    extra: list[str]
    checked: int

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.extra)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checked": self.checked, "missing": self.missing, "changed": self.changed, "extra": self.extra}


def verify_artifacts(layout: Layout, manifest: dict) -> VerifyResult:
    """Re-hash every artifact the manifest lists and find files it does not list."""
    listed = {entry["path"]: entry for entry in manifest["artifacts"]}
    missing, changed = [], []
    for relative, entry in sorted(listed.items()):
        path = layout.root / relative
        if not path.is_file():
            missing.append(relative)
            continue
        size = path.stat().st_size
        digest = file_digest(path, "sha256")
        if size != entry["size"] or digest != entry["sha256"]:
            changed.append({"path": relative, "expected_sha256": entry["sha256"], "actual_sha256": digest, "expected_size": entry["size"], "actual_size": size})

    present = {p.relative_to(layout.root).as_posix() for p in layout.root.rglob("*") if p.is_file()}
    unlisted = {layout.relative(layout.manifest), layout.relative(layout.parity_check_report)}
    extra = sorted(present - set(listed) - unlisted)
    return VerifyResult(missing=missing, changed=changed, extra=extra, checked=len(listed))


def files_under(folder: Path) -> list[Path]:
    """List the regular files below FOLDER, skipping temporary `.incomplete` files."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".incomplete"))


# The constraints file sits at the top of a source checkout. A wheel does not
# ship it, so an installed package skips the version check.
CONSTRAINTS_FILE = Path(__file__).resolve().parents[1] / "constraints.txt"


def pinned_versions(path: Path = CONSTRAINTS_FILE) -> dict[str, str]:
    """Read `name==version` lines of the constraints file, names normalised as pip does."""
    if not path.is_file():
        return {}
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_normalise(name)] = version.strip()
    return pins


def version_drift(versions: dict[str, str], pins: dict[str, str]) -> list[str]:
    """Describe each tool whose running version differs from its pin, e.g. `torch 2.14.0 (pinned 2.13.0)`."""
    drift = []
    for name, running in sorted(versions.items()):
        pinned = pins.get(_normalise(name))
        if pinned and running.split("+", 1)[0] != pinned.split("+", 1)[0]:
            drift.append(f"{name} {running} (pinned {pinned})")
    return drift


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")
