from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from converter.errors import RecipeError
from converter.recipe import DEFAULT_TOLERANCES, load_recipe

MINIMAL = {
    "name": "mini",
    "description": "Minimal recipe.",
    "task": "token-classification",
    "license": "MIT",
    "source": {
        "repo": "owner/model",
        "revision": "main",
        "files": [{"name": "config.json", "size": 10, "sha256": "a" * 64}],
    },
    "inputs": [{"name": "input_ids", "shape": [1, 8], "dtype": "int64"}],
    "outputs": [{"name": "output", "shape": [1, 8, 3]}],
    "precisions": ["FP32"],
}


def write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def broken(tmp_path: Path, edit) -> str:
    document = yaml.safe_load(yaml.safe_dump(MINIMAL))
    edit(document)
    with pytest.raises(RecipeError) as caught:
        load_recipe(str(write(tmp_path, document)))
    return str(caught.value)


def test_minimal_recipe_loads_with_defaults(tmp_path):
    recipe = load_recipe(str(write(tmp_path, MINIMAL)))

    assert recipe.name == "mini"
    assert recipe.labels is None
    assert recipe.lower_case is False
    assert recipe.opset == 18
    assert recipe.tolerances == DEFAULT_TOLERANCES
    assert recipe.sequence_length == 8
    assert recipe.num_labels == 3
    assert recipe.outputs[0].dtype == "float32"


def test_bundled_recipe_pins_open_model_zoo_hashes():
    recipe = load_recipe("bert-base-ner")

    assert recipe.source.repo == "dslim/bert-base-NER"
    assert [(f.name, f.size) for f in recipe.source.files] == [
        ("config.json", 829),
        ("vocab.txt", 213450),
        ("pytorch_model.bin", 433316646),
    ]
    assert recipe.source.file("pytorch_model.bin").sha384.startswith("59e6fefd0f29534c")
    assert recipe.labels == ("O", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
    assert [t.name for t in recipe.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert recipe.outputs[0].shape == (1, 128, 9)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(nmae="x"), "x.yaml: nmae: unknown key"),
        (lambda d: d.pop("license"), "x.yaml: license: missing required key"),
        (lambda d: d.update(name="Bert_NER"), "x.yaml: name: expected lowercase letters"),
        (lambda d: d["source"]["files"][0].update(sha256="abc"), "x.yaml: source.files[0].sha256: expected 64 hex digits"),
        (lambda d: d["source"]["files"][0].pop("sha256"), "x.yaml: source.files[0]: missing hash"),
        (lambda d: d["source"]["files"][0].update(size=-1), "x.yaml: source.files[0].size: expected at least 0"),
        (lambda d: d["source"]["files"][0].update(name="../etc/passwd"), "must be a relative path"),
        (lambda d: d["source"].update(repo="no-owner"), "x.yaml: source.repo: expected `owner/name`"),
        (lambda d: d.update(precisions=["FP8"]), "x.yaml: precisions[0]: expected one of FP32, FP16, got 'FP8'"),
        (lambda d: d.update(precisions=["FP32", "FP32"]), "x.yaml: precisions: each precision may appear once"),
        (lambda d: d["inputs"][0].update(dtype="float32"), "x.yaml: inputs[0].dtype: expected one of int64, int32"),
        (lambda d: d["inputs"][0].update(shape=[1, 0]), "x.yaml: inputs[0].shape[1]: expected at least 1"),
        (lambda d: d.update(labels=["O", "B-PER"]), "x.yaml: labels: 2 labels, but outputs[0].shape ends in 3"),
        (lambda d: d.update(tokenizer={"lower_case": "yes"}), "x.yaml: tokenizer.lower_case: expected true or false"),
        (lambda d: d.update(export={"opset": 7}), "x.yaml: export.opset: 7 is not supported"),
        (lambda d: d.update(parity={"FP16": {"max_abs": "big"}}), "x.yaml: parity.FP16.max_abs: expected a non-negative number"),
        (lambda d: d.update(parity={"FP64": {}}), "x.yaml: parity.FP64: unknown key"),
        (lambda d: d.update(task="translation"), "x.yaml: task: expected one of token-classification"),
    ],
)
def test_invalid_recipe_names_key_and_problem(tmp_path, edit, message):
    assert message in broken(tmp_path, edit)


def test_parity_tolerance_overrides_one_field(tmp_path):
    document = dict(MINIMAL, parity={"FP16": {"max_abs": 0.1}})
    recipe = load_recipe(str(write(tmp_path, document)))

    assert recipe.tolerances["FP16"].max_abs == 0.1
    assert recipe.tolerances["FP16"].argmax_agreement == DEFAULT_TOLERANCES["FP16"].argmax_agreement


def test_invalid_yaml_reports_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: a\nsource: [unclosed\n")
    with pytest.raises(RecipeError) as caught:
        load_recipe(str(path))
    assert "bad.yaml: line" in str(caught.value)
    assert "invalid YAML" in str(caught.value)


def test_missing_recipe_file_lists_bundled(tmp_path):
    with pytest.raises(RecipeError) as caught:
        load_recipe(str(tmp_path / "none.yaml"))
    assert "recipe file not found" in str(caught.value)
    assert "bert-base-ner" in str(caught.value)


def test_errors_survive_pickling():
    import pickle

    from converter.errors import IntegrityError

    error = IntegrityError("pytorch_model.bin", "sha384", "aa", "bb", hint="Fetch again")
    restored = pickle.loads(pickle.dumps(error))

    assert type(restored) is IntegrityError
    assert str(restored) == str(error)
    assert restored.expected == "aa"
    assert restored.hint == "Fetch again"
