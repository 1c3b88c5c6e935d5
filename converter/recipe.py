"""Recipes: one YAML file per model, loaded into frozen, validated types.

The format is documented in docs/recipes.md. Validation is strict: an
unknown key is an error, and every error names the file, the key path and
what is wrong, for example `x.yaml: source.files[2].sha384: expected 96 hex
digits`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from converter.errors import RecipeError, RecipeNotFoundError

PRECISIONS = ("FP32", "FP16")
TASKS = ("token-classification",)
INPUT_DTYPES = ("int64", "int32")
OUTPUT_DTYPES = ("float32",)
DEFAULT_OPSET = 18
SUPPORTED_OPSETS = range(14, 22)
HASH_LENGTHS = {"sha256": 64, "sha384": 96}

_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SourceFile:
    name: str
    size: int
    sha256: str | None = None
    sha384: str | None = None

    @property
    def hash_algorithm(self) -> str:
        """Strongest hash the recipe pins for this file."""
        return "sha384" if self.sha384 else "sha256"

    @property
    def hash_value(self) -> str:
        return self.sha384 or self.sha256  # type: ignore[return-value]


@dataclass(frozen=True)
class Source:
    repo: str
    revision: str
    files: tuple[SourceFile, ...]

    def file(self, name: str) -> SourceFile | None:
        return next((f for f in self.files if f.name == name), None)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class Tolerance:
    """Parity limits for one backend, each compared against PyTorch fp32 logits."""

    max_abs: float
    mean_abs: float
    min_cosine: float
    argmax_agreement: float
    entity_agreement: float


# Defaults for the `parity` section. ONNX and FP32 must reproduce PyTorch to
# float32 rounding; FP16 weights cost up to a few hundredths on a logit.
DEFAULT_TOLERANCES = {
    "ONNX": Tolerance(max_abs=1e-4, mean_abs=1e-5, min_cosine=0.99999, argmax_agreement=1.0, entity_agreement=1.0),
    "FP32": Tolerance(max_abs=1e-4, mean_abs=1e-5, min_cosine=0.99999, argmax_agreement=1.0, entity_agreement=1.0),
    "FP16": Tolerance(max_abs=0.05, mean_abs=0.005, min_cosine=0.9999, argmax_agreement=0.999, entity_agreement=0.95),
}


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    task: str
    license: str
    source: Source
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    precisions: tuple[str, ...]
    labels: tuple[str, ...] | None = None
    lower_case: bool = False
    opset: int = DEFAULT_OPSET
    tolerances: dict[str, Tolerance] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    path: Path | None = None
    sha256: str = ""

    @property
    def sequence_length(self) -> int:
        """Length of the fixed token window, the last dimension of the first input."""
        return self.inputs[0].shape[-1]

    @property
    def num_labels(self) -> int:
        return self.outputs[0].shape[-1]

    @property
    def model_argument(self) -> str:
        """What to pass as MODEL on the command line: the bundled name or the recipe file."""
        return str(self.path) if self.path else self.name


# --- locating -------------------------------------------------------------


def bundled_recipe_names() -> list[str]:
    """List the names of the recipes that ship inside the package."""
    folder = resources.files("converter.bundled_recipes")
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_recipe(model: str) -> Recipe:
    """Load MODEL: the name of a bundled recipe or the path of a recipe file."""
    path = Path(model)
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in model:
        if not path.is_file():
            raise RecipeNotFoundError(model, None, "recipe file not found", hint=_known_hint())
        return parse_recipe(path.read_bytes(), path)

    if model not in bundled_recipe_names():
        raise RecipeNotFoundError(
            model, None, "no bundled recipe with this name and no such file", hint=_known_hint()
        )
    resource = resources.files("converter.bundled_recipes") / f"{model}.yaml"
    return parse_recipe(resource.read_bytes(), Path(f"{model}.yaml"), bundled=True)


def _known_hint() -> str:
    names = ", ".join(bundled_recipe_names()) or "none"
    return f"Bundled recipes: {names}. Run `omz-like list`, or pass the path of a .yaml file"


# --- parsing --------------------------------------------------------------


def parse_recipe(data: bytes, path: Path, *, bundled: bool = False) -> Recipe:
    """Validate the YAML document DATA read from PATH and build a Recipe."""
    location = str(path)
    try:
        document = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RecipeError(location, None, "not valid UTF-8") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise RecipeError(location, None, f"{where}invalid YAML ({getattr(error, 'problem', error)})") from None

    checker = _Checker(location)
    top = checker.mapping(document, "", required=_REQUIRED_TOP, optional=_OPTIONAL_TOP)
    recipe = Recipe(
        name=checker.pattern(top["name"], "name", _NAME, "expected lowercase letters, digits and single hyphens"),
        description=checker.text(top["description"], "description"),
        task=checker.choice(top["task"], "task", TASKS),
        license=checker.text(top["license"], "license"),
        source=_source(checker, top["source"]),
        inputs=_tensors(checker, top["inputs"], "inputs", INPUT_DTYPES, default_dtype=None),
        outputs=_tensors(checker, top["outputs"], "outputs", OUTPUT_DTYPES, default_dtype="float32"),
        precisions=_precisions(checker, top["precisions"]),
        labels=_labels(checker, top.get("labels")),
        lower_case=_tokenizer(checker, top.get("tokenizer")),
        opset=_export(checker, top.get("export")),
        tolerances=_tolerances(checker, top.get("parity")),
        path=None if bundled else path.resolve(),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    _check_consistency(checker, recipe)
    return recipe


_REQUIRED_TOP = ("name", "description", "task", "license", "source", "inputs", "outputs", "precisions")
_OPTIONAL_TOP = ("labels", "tokenizer", "export", "parity")


def _source(checker: _Checker, value: Any) -> Source:
    source = checker.mapping(value, "source", required=("repo", "revision", "files"))
    repo = checker.pattern(source["repo"], "source.repo", _REPO, "expected `owner/name`")
    revision = checker.text(source["revision"], "source.revision")
    entries = checker.sequence(source["files"], "source.files")

    files = []
    for index, entry in enumerate(entries):
        files.append(_source_file(checker, entry, f"source.files[{index}]"))
    names = [f.name for f in files]
    for index, name in enumerate(names):
        if names.index(name) != index:
            checker.fail(f"source.files[{index}].name", f"duplicate file {name!r}")
    return Source(repo=repo, revision=revision, files=tuple(files))


def _source_file(checker: _Checker, value: Any, key: str) -> SourceFile:
    entry = checker.mapping(value, key, required=("name", "size"), optional=tuple(HASH_LENGTHS))
    name = checker.text(entry["name"], f"{key}.name")
    if name.startswith("/") or ".." in Path(name).parts or "\\" in name:
        checker.fail(f"{key}.name", f"{name!r} must be a relative path inside the repository")
    size = checker.integer(entry["size"], f"{key}.size", minimum=0)

    hashes = {}
    for algorithm, length in HASH_LENGTHS.items():
        if algorithm in entry:
            digest = checker.text(entry[algorithm], f"{key}.{algorithm}")
            if not re.fullmatch(f"[0-9a-f]{{{length}}}", digest):
                checker.fail(f"{key}.{algorithm}", f"expected {length} hex digits")
            hashes[algorithm] = digest
    if not hashes:
        checker.fail(key, "missing hash: give sha256 or sha384")
    return SourceFile(name=name, size=size, **hashes)


def _tensors(checker: _Checker, value: Any, key: str, dtypes: tuple[str, ...], *, default_dtype: str | None) -> tuple[TensorSpec, ...]:
    specs = []
    required = ("name", "shape") if default_dtype else ("name", "shape", "dtype")
    optional = ("dtype",) if default_dtype else ()
    for index, item in enumerate(checker.sequence(value, key)):
        where = f"{key}[{index}]"
        entry = checker.mapping(item, where, required=required, optional=optional)
        shape = checker.sequence(entry["shape"], f"{where}.shape")
        dims = tuple(checker.integer(d, f"{where}.shape[{i}]", minimum=1) for i, d in enumerate(shape))
        dtype = checker.choice(entry.get("dtype", default_dtype), f"{where}.dtype", dtypes)
        specs.append(TensorSpec(name=checker.text(entry["name"], f"{where}.name"), shape=dims, dtype=dtype))
    return tuple(specs)


def _precisions(checker: _Checker, value: Any) -> tuple[str, ...]:
    items = checker.sequence(value, "precisions")
    precisions = tuple(checker.choice(p, f"precisions[{i}]", PRECISIONS) for i, p in enumerate(items))
    if len(set(precisions)) != len(precisions):
        checker.fail("precisions", "each precision may appear once")
    return precisions


def _labels(checker: _Checker, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    labels = tuple(checker.text(v, f"labels[{i}]") for i, v in enumerate(checker.sequence(value, "labels")))
    if len(set(labels)) != len(labels):
        checker.fail("labels", "each label may appear once")
    return labels


def _tokenizer(checker: _Checker, value: Any) -> bool:
    if value is None:
        return False
    entry = checker.mapping(value, "tokenizer", optional=("lower_case",))
    lower_case = entry.get("lower_case", False)
    if not isinstance(lower_case, bool):
        checker.fail("tokenizer.lower_case", f"expected true or false, got {lower_case!r}")
    return lower_case


def _export(checker: _Checker, value: Any) -> int:
    if value is None:
        return DEFAULT_OPSET
    entry = checker.mapping(value, "export", optional=("opset",))
    opset = checker.integer(entry.get("opset", DEFAULT_OPSET), "export.opset", minimum=1)
    if opset not in SUPPORTED_OPSETS:
        checker.fail("export.opset", f"{opset} is not supported, expected {SUPPORTED_OPSETS.start} to {SUPPORTED_OPSETS.stop - 1}")
    return opset


def _tolerances(checker: _Checker, value: Any) -> dict[str, Tolerance]:
    tolerances = dict(DEFAULT_TOLERANCES)
    if value is None:
        return tolerances
    section = checker.mapping(value, "parity", optional=tuple(DEFAULT_TOLERANCES))
    for backend, limits in section.items():
        fields = tuple(Tolerance.__dataclass_fields__)
        entry = checker.mapping(limits, f"parity.{backend}", optional=fields)
        merged = dict(DEFAULT_TOLERANCES[backend].__dict__)
        for name, number in entry.items():
            merged[name] = checker.number(number, f"parity.{backend}.{name}")
            if name != "max_abs" and name != "mean_abs" and not 0.0 <= merged[name] <= 1.0:
                checker.fail(f"parity.{backend}.{name}", f"expected a number from 0 to 1, got {number}")
        tolerances[backend] = Tolerance(**merged)
    return tolerances


def _check_consistency(checker: _Checker, recipe: Recipe) -> None:
    if not recipe.outputs:
        checker.fail("outputs", "expected at least one output")
    if not recipe.inputs:
        checker.fail("inputs", "expected at least one input")
    if recipe.labels is not None and len(recipe.labels) != recipe.num_labels:
        checker.fail(
            "labels", f"{len(recipe.labels)} labels, but outputs[0].shape ends in {recipe.num_labels}"
        )
    lengths = {spec.shape[-1] for spec in recipe.inputs}
    if len(lengths) != 1 or recipe.outputs[0].shape[1:2] != (recipe.sequence_length,):
        checker.fail("inputs", "every input and outputs[0] must share one sequence length")
    names = [spec.name for spec in recipe.inputs + recipe.outputs]
    if len(set(names)) != len(names):
        checker.fail("inputs", "input and output names must be unique")


class _Checker:
    """Type checks that report `file: key.path: problem`."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, problem: str) -> None:
        raise RecipeError(self.file, key or None, problem)

    def mapping(self, value: Any, key: str, *, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, got {_kind(value)}")
        prefix = f"{key}." if key else ""
        for name in value:
            if name not in required and name not in optional:
                allowed = ", ".join(required + optional)
                self.fail(f"{prefix}{name}", f"unknown key, expected one of: {allowed}")
        for name in required:
            if name not in value:
                self.fail(f"{prefix}{name}", "missing required key")
        return value

    def sequence(self, value: Any, key: str) -> list:
        if not isinstance(value, list):
            self.fail(key, f"expected a list, got {_kind(value)}")
        return value

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected a non-empty string, got {_kind(value)}")
        return value

    def integer(self, value: Any, key: str, *, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {_kind(value)}")
        if value < minimum:
            self.fail(key, f"expected at least {minimum}, got {value}")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            self.fail(key, f"expected a non-negative number, got {_kind(value)}")
        return float(value)

    def choice(self, value: Any, key: str, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            self.fail(key, f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    def pattern(self, value: Any, key: str, regex: re.Pattern, expectation: str) -> str:
        text = self.text(value, key)
        if not regex.fullmatch(text):
            self.fail(key, f"{expectation}, got {text!r}")
        return text


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, (dict, list)):
        return type(value).__name__
    return repr(value)
