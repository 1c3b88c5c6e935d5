"""Tests of `omz-like accuracy`: CoNLL reading, entity scoring and the per-backend run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from converter.accuracy import check_gold_labels, encode_sentence, parse_backends, score, word_labels
from converter.conll import read_conll, to_iob2
from converter.errors import DatasetError, UsageError
from converter.recipe import load_recipe
from converter.tokenization import WordPieceTokenizer
from tests.checkpoints import CONLL_LABELS, write_recipe

DATA = Path(__file__).parent / "data"

# Predictions for the five sentences of tests/data/iob*.conll, as a model
# would emit them. Gold has 10 entities: ORG EU, European Union; MISC German,
# British; PER Peter Blackburn, Werner Zwingmann; LOC BRUSSELS, Germany,
# Paris, Berlin. The predictions find 8 entities and 6 of them are right:
# British is missed, European Union is called MISC, Werner Zwingmann opens
# with I-PER (still one correct entity), and Paris Berlin is merged into one
# wrong LOC entity.
PREDICTED = [
    ["B-ORG", "O", "B-MISC", "O", "O", "O", "O", "O", "O"],
    ["B-PER", "I-PER"],
    ["B-LOC", "O"],
    ["B-LOC", "O", "O", "O", "O", "B-MISC", "I-MISC", "O", "O", "O", "I-PER", "I-PER", "O"],
    ["O", "O", "B-LOC", "I-LOC", "O"],
]


def write_bytes(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "data.conll"
    path.write_bytes(data)
    return path


# --- reading --------------------------------------------------------------


def test_read_conll_iob1_four_columns():
    dataset = read_conll(DATA / "iob1.conll")

    assert dataset.scheme == "IOB1"
    assert len(dataset.sentences) == 5
    assert dataset.word_count == 31
    assert dataset.sentences[0].words[:3] == ("EU", "rejects", "German")
    assert dataset.sentences[0].tags[:3] == ("I-ORG", "O", "I-MISC")
    assert dataset.sentences[0].lines[0] == 3
    assert dataset.sentences[4].tags == ("O", "O", "I-LOC", "B-LOC", "O")


def test_read_conll_iob2_two_columns():
    dataset = read_conll(DATA / "iob2.conll")

    assert dataset.scheme == "IOB2"
    assert len(dataset.sentences) == 5
    assert dataset.word_count == 31
    assert dataset.sentences[1].words == ("Peter", "Blackburn")
    assert dataset.sentences[1].tags == ("B-PER", "I-PER")


def test_iob1_rewritten_equals_iob2_file():
    iob1 = read_conll(DATA / "iob1.conll")
    iob2 = read_conll(DATA / "iob2.conll")

    assert [s.words for s in iob1.sentences] == [s.words for s in iob2.sentences]
    assert [to_iob2(s.tags) for s in iob1.sentences] == [list(s.tags) for s in iob2.sentences]


def test_to_iob2_keeps_b_between_same_type():
    assert to_iob2(["I-LOC", "B-LOC", "I-LOC", "I-PER", "O", "I-PER"]) == ["B-LOC", "B-LOC", "I-LOC", "B-PER", "O", "B-PER"]


def test_read_conll_tabs_and_crlf(tmp_path):
    path = write_bytes(tmp_path, b"Obama\tB-PER\r\nvisited\tO\r\n\r\nParis\tB-LOC\r\n")

    dataset = read_conll(path)

    assert [s.words for s in dataset.sentences] == [("Obama", "visited"), ("Paris",)]
    assert [s.tags for s in dataset.sentences] == [("B-PER", "O"), ("B-LOC",)]


BAD_FILES = [
    ("missing tag column", b"EU B-ORG\nrejects\n", 2, "missing tag column"),
    ("stray tab", b"EU NNP B-NP I-ORG\nrejects VBZ B-VP\tO\n", 2, "mixes tabs and spaces between columns: 'rejects VBZ B-VP\\tO'"),
    ("double space", b"EU  B-ORG\n", 1, "empty column (a space at the start or two in a row): 'EU  B-ORG'"),
    ("three columns", b"EU NNP B-ORG\n", 1, "expected 2 or 4 columns, found 3"),
    ("column count changes", b"EU NNP B-NP I-ORG\n\nrejects O\n", 3, "2 columns, but line 1 has 4"),
    ("tag without prefix", b"EU B-ORG\nPeter PER\n", 2, "invalid tag 'PER'"),
    ("IOBES tag", b"EU S-ORG\n", 1, "invalid tag 'S-ORG'"),
    ("non-UTF-8", b"EU B-ORG\n\nM\xfcller B-PER\n", 3, "not valid UTF-8 (byte 0xfc at offset 11)"),
]


@pytest.mark.parametrize(("data", "line", "problem"), [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_read_conll_bad_line(tmp_path, data, line, problem):
    path = write_bytes(tmp_path, data)

    with pytest.raises(DatasetError) as caught:
        read_conll(path)

    assert caught.value.line == line
    assert caught.value.message == f"{path}:{line}: {problem}"
    assert caught.value.hint


def test_read_conll_empty_file(tmp_path):
    path = write_bytes(tmp_path, b"-DOCSTART- -X- -X- O\n\n\n")

    with pytest.raises(DatasetError) as caught:
        read_conll(path)

    assert caught.value.message == f"{path}: no sentences found"


def test_read_conll_missing_file(tmp_path):
    with pytest.raises(DatasetError) as caught:
        read_conll(tmp_path / "absent.conll")

    assert caught.value.message == f"{tmp_path / 'absent.conll'}: file not found"


def test_unknown_gold_tag_names_line(tmp_path):
    path = write_bytes(tmp_path, b"Monday B-DATE\nin O\nParis B-LOC\n")

    with pytest.raises(DatasetError) as caught:
        check_gold_labels(read_conll(path), CONLL_LABELS)

    assert caught.value.message == f"{path}:1: tag 'B-DATE' is not a label of the checkpoint"
    assert "B-MISC" in caught.value.hint


# --- scoring --------------------------------------------------------------


@pytest.mark.parametrize("name", ["iob1.conll", "iob2.conll"])
def test_score_worked_by_hand(name):
    gold = [s.tags for s in read_conll(DATA / name).sentences]

    scores = score(gold, PREDICTED)

    assert scores.precision == pytest.approx(6 / 8, abs=1e-12)
    assert scores.recall == pytest.approx(6 / 10, abs=1e-12)
    assert scores.f1 == pytest.approx(2 / 3, abs=1e-12)
    assert scores.support == 10
    # ORG 2/3, MISC 1/2, PER 1, LOC 4/7: the mean is 115/168.
    assert scores.macro_f1 == pytest.approx(115 / 168, abs=1e-12)
    # Wrong words: British, European, Union, Berlin.
    assert scores.token_accuracy == pytest.approx(27 / 31, abs=1e-12)
    assert sorted(scores.per_type) == ["LOC", "MISC", "ORG", "PER"]


def test_score_per_type_worked_by_hand():
    gold = [s.tags for s in read_conll(DATA / "iob2.conll").sentences]

    per_type = score(gold, PREDICTED).per_type

    assert (per_type["ORG"].precision, per_type["ORG"].recall, per_type["ORG"].support) == (1.0, 0.5, 2)
    assert per_type["ORG"].f1 == pytest.approx(2 / 3, abs=1e-12)
    assert (per_type["MISC"].precision, per_type["MISC"].recall, per_type["MISC"].f1) == (0.5, 0.5, 0.5)
    assert (per_type["PER"].precision, per_type["PER"].recall, per_type["PER"].f1) == (1.0, 1.0, 1.0)
    assert per_type["LOC"].precision == pytest.approx(2 / 3, abs=1e-12)
    assert per_type["LOC"].recall == 0.5
    assert per_type["LOC"].f1 == pytest.approx(4 / 7, abs=1e-12)
    assert per_type["LOC"].support == 4


def test_score_equals_seqeval():
    gold = [list(s.tags) for s in read_conll(DATA / "iob1.conll").sentences]

    scores = score(gold, PREDICTED)
    report = classification_report(gold, PREDICTED, output_dict=True, zero_division=0)

    assert scores.precision == precision_score(gold, PREDICTED)
    assert scores.recall == recall_score(gold, PREDICTED)
    assert scores.f1 == f1_score(gold, PREDICTED)
    assert scores.macro_f1 == pytest.approx(report["macro avg"]["f1-score"], abs=1e-15)
    for kind in ("PER", "ORG", "LOC", "MISC"):
        assert scores.per_type[kind].f1 == report[kind]["f1-score"]


def test_torch_backend_scores_equal_seqeval(tiny_source):
    from converter.accuracy import evaluate, open_backend, predict_all
    from converter.checkpoint import checkpoint_labels
    from converter.layout import Layout

    recipe_path, artifacts = tiny_source
    recipe = load_recipe(str(recipe_path))
    layout = Layout.for_recipe(recipe, artifacts)
    dataset = read_conll(DATA / "iob1.conll")
    labels = checkpoint_labels(layout)
    tokenizer = WordPieceTokenizer(layout.source_dir / "vocab.txt")
    encoded = [encode_sentence(s.words, tokenizer, sequence_length=128) for s in dataset.sentences]
    predicted = predict_all(encoded, [open_backend("torch", recipe, layout)], tokenizer, labels, sequence_length=128)["torch"]
    gold = [list(s.tags) for s in dataset.sentences]

    entry = evaluate(dataset, recipe, layout, ["torch"])["backends"]["torch"]

    assert [len(tags) for tags in predicted] == [9, 2, 2, 13, 5]
    assert entry["precision"] == precision_score(gold, predicted)
    assert entry["recall"] == recall_score(gold, predicted)
    assert entry["f1"] == f1_score(gold, predicted)
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    assert entry["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"], abs=1e-15)


def test_score_without_entities_is_zero():
    scores = score([["O", "O"]], [["O", "O"]])

    assert (scores.precision, scores.recall, scores.f1, scores.macro_f1) == (0.0, 0.0, 0.0, 0.0)
    assert scores.token_accuracy == 1.0
    assert scores.per_type == {}


def test_parse_backends():
    recipe_precisions = ("FP32", "FP16")

    class FakeRecipe:
        precisions = recipe_precisions

    assert parse_backends(None, FakeRecipe) == ("torch", "onnx", "FP32", "FP16")
    assert parse_backends(["fp16,TORCH", "onnx", "torch"], FakeRecipe) == ("torch", "onnx", "FP16")
    with pytest.raises(UsageError) as caught:
        parse_backends(["torch,tflite"], FakeRecipe)
    assert caught.value.message == "invalid --backend 'tflite'"


# --- tokenization ---------------------------------------------------------


def test_word_without_pieces_is_labelled_o(tiny_checkpoint):
    tokenizer = WordPieceTokenizer(tiny_checkpoint / "vocab.txt")

    encoded = encode_sentence(["Obama", "\x07", "U.S.", "Paris"], tokenizer, sequence_length=128)

    assert encoded.first_pieces == [0, None, 1, 5]
    logits = [[0.0] * len(CONLL_LABELS) for _ in encoded.ids]
    for piece, label in ((0, "B-PER"), (1, "B-LOC"), (2, "I-PER"), (5, "B-LOC")):
        logits[piece][CONLL_LABELS.index(label)] = 1.0
    import numpy as np

    assert word_labels(encoded, np.asarray(logits), CONLL_LABELS) == ["B-PER", "O", "B-LOC", "B-LOC"]


def test_long_sentence_uses_windows(tiny_checkpoint):
    tokenizer = WordPieceTokenizer(tiny_checkpoint / "vocab.txt")

    encoded = encode_sentence(["the"] * 40, tokenizer, sequence_length=16)

    assert len(encoded.ids) == 40
    assert [(w.start, w.end) for w in encoded.windows] == [(0, 14), (7, 21), (14, 28), (21, 35), (26, 40)]
    assert sum(w.keep_end - w.keep_start for w in encoded.windows) == 40


# --- command line ---------------------------------------------------------


def build_artifacts(recipe_path: Path, artifacts: Path, precisions: tuple[str, ...]) -> None:
    from converter.conversion import convert_ir
    from converter.export import export_onnx
    from converter.files import read_json
    from converter.layout import Layout

    recipe = load_recipe(str(recipe_path))
    layout = Layout.for_recipe(recipe, artifacts)
    record = read_json(layout.source_record)
    export_onnx(recipe, layout, source_record=record)
    convert_ir(recipe, layout, precisions, source_record=record)


def test_cli_backends_match_torch(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source
    build_artifacts(recipe_path, artifacts, ("FP32",))

    result = run_cli(
        "accuracy", recipe_path, "--dataset", DATA / "iob1.conll", "--backend", "torch,onnx,FP32",
        "--artifacts-dir", artifacts, "--json",
    )

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "tiny-ner"
    assert report["scheme"] == "IOB1"
    assert (report["sentences"], report["words"], report["windows"], report["words_without_pieces"]) == (5, 31, 5, 0)
    assert list(report["backends"]) == ["torch", "onnx", "FP32"]
    torch_scores = report["backends"]["torch"]
    assert set(torch_scores) == {
        "precision", "recall", "f1", "macro_f1", "token_accuracy", "support", "per_type", "runtime_precision", "difference_to_torch",
    }
    assert torch_scores["support"] == 10
    assert report["backends"]["FP32"]["runtime_precision"] == "f32"
    for name in ("onnx", "FP32"):
        entry = report["backends"][name]
        for key in ("precision", "recall", "f1", "macro_f1", "token_accuracy", "per_type"):
            assert entry[key] == torch_scores[key], (name, key)
        assert set(entry["difference_to_torch"].values()) == {0.0}


def test_cli_human_output(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source

    result = run_cli("accuracy", recipe_path, "--dataset", DATA / "iob2.conll", "--backend", "torch", "--artifacts-dir", artifacts, "--limit", "2")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[2].startswith("sentences 2, words 11 (0 without word pieces, labelled O), windows 2 of 128 positions")
    assert lines[3] == "scheme:   gold tags IOB2, scored like conlleval (an I- tag after O opens an entity)"
    assert lines[5].split()[:3] == ["backend", "runtime", "precision"]
    assert lines[6].split()[:2] == ["torch", "-"]


def test_cli_long_sentences_score_every_word(run_cli, tiny_checkpoint, tmp_path):
    recipe_path = write_recipe(tmp_path / "short" / "tiny-ner.yaml", tiny_checkpoint, sequence_length=16)
    artifacts = tmp_path / "short-artifacts"
    source = artifacts / "tiny-ner" / "source"
    source.mkdir(parents=True)
    for name in ("config.json", "vocab.txt", "pytorch_model.bin"):
        (source / name).write_bytes((tiny_checkpoint / name).read_bytes())
    words = ["John", "Smith", "visited", "the", "city", "of", "London", "in", "May"] * 5
    tags = ["B-PER", "I-PER", "O", "O", "O", "O", "B-LOC", "O", "O"] * 5
    path = tmp_path / "long.conll"
    path.write_text("".join(f"{w} {t}\n" for w, t in zip(words, tags)))

    result = run_cli("accuracy", recipe_path, "--dataset", path, "--backend", "torch", "--artifacts-dir", artifacts, "--json")

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["words"], report["windows"], report["sequence_length"]) == (45, 6, 16)
    assert report["backends"]["torch"]["support"] == 10


def test_cli_missing_onnx_points_to_export(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source

    result = run_cli("accuracy", recipe_path, "--dataset", DATA / "iob2.conll", "--backend", "onnx", "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert result.stdout == ""
    onnx_path = artifacts / "tiny-ner" / "onnx" / "tiny-ner.onnx"
    assert result.stderr.splitlines()[-1] == f"error: {onnx_path}: file not found. Run `omz-like export {recipe_path.resolve()}` first"


def test_cli_missing_ir_points_to_convert(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source

    result = run_cli("accuracy", recipe_path, "--dataset", DATA / "iob2.conll", "--backend", "fp16", "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    xml_path = artifacts / "tiny-ner" / "FP16" / "tiny-ner.xml"
    assert result.stderr.splitlines()[-1] == f"error: {xml_path}: file not found. Run `omz-like convert {recipe_path.resolve()} --precision FP16` first"


def test_cli_unknown_tag_exits_1(run_cli, tiny_source, tmp_path):
    recipe_path, artifacts = tiny_source
    path = write_bytes(tmp_path, b"EU B-ORG\n\nMonday B-DATE\n")

    result = run_cli("accuracy", recipe_path, "--dataset", path, "--backend", "torch", "--artifacts-dir", artifacts)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {path}:3: tag 'B-DATE' is not a label of the checkpoint.")
    assert result.stderr.count("\n") == 1


def test_cli_invalid_backend_exits_2(run_cli, tiny_source):
    recipe_path, artifacts = tiny_source

    result = run_cli("accuracy", recipe_path, "--dataset", DATA / "iob2.conll", "--backend", "tflite", "--artifacts-dir", artifacts)

    assert result.exit_code == 2
    assert result.stderr == "error: invalid --backend 'tflite'. Valid values: torch, onnx, FP32, FP16\n"
