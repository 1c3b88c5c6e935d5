"""Paths of a model's artifacts under the artifacts folder.

    <dir>/<name>/source/              the recipe's files, verified
    <dir>/<name>/source.json          repo, requested revision, resolved commit hash
    <dir>/<name>/onnx/<name>.onnx     fixed-shape ONNX (plus its external data, if any)
    <dir>/<name>/<PRECISION>/<name>.xml and .bin   OpenVINO IR
    <dir>/<name>/parity.json          the parity report of the last build, listed in the manifest
    <dir>/<name>/parity-check.json    the report of the last `omz-like parity`, not listed
    <dir>/<name>/manifest.json        what was built from what
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from converter.recipe import Recipe


@dataclass(frozen=True)
class Layout:
    root: Path
    name: str

    @classmethod
    def for_recipe(cls, recipe: Recipe, artifacts_dir: Path) -> Layout:
        return cls(root=Path(artifacts_dir) / recipe.name, name=recipe.name)

    @property
    def source_dir(self) -> Path:
        return self.root / "source"

    @property
    def source_record(self) -> Path:
        return self.root / "source.json"

    @property
    def onnx_dir(self) -> Path:
        return self.root / "onnx"

    @property
    def onnx_path(self) -> Path:
        return self.onnx_dir / f"{self.name}.onnx"

    def ir_dir(self, precision: str) -> Path:
        return self.root / precision

    def ir_xml(self, precision: str) -> Path:
        return self.ir_dir(precision) / f"{self.name}.xml"

    def ir_bin(self, precision: str) -> Path:
        return self.ir_dir(precision) / f"{self.name}.bin"

    @property
    def parity_report(self) -> Path:
        return self.root / "parity.json"

    @property
    def parity_check_report(self) -> Path:
        """Path of the `omz-like parity` report, kept apart so that the command never changes a file the manifest lists."""
        return self.root / "parity-check.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def lock_file(self) -> Path:
        return self.root.parent / f".{self.name}.lock"

    def relative(self, path: Path) -> str:
        """Return PATH relative to the model folder, with forward slashes."""
        return Path(path).relative_to(self.root).as_posix()
