from __future__ import annotations

import json
import subprocess
import sys


def test_list_prints_bundled_recipe(run_cli):
    result = run_cli("list")

    assert result.exit_code == 0
    assert result.stdout.split() == ["bert-base-ner", "token-classification", "FP32,FP16"]


def test_info_json_describes_recipe(run_cli):
    result = run_cli("info", "bert-base-ner", "--json", "--artifacts-dir", "out")

    document = json.loads(result.stdout)
    assert result.exit_code == 0
    assert document["source"]["repo"] == "dslim/bert-base-NER"
    assert document["artifacts"]["FP16"] == "out/bert-base-ner/FP16/bert-base-ner.xml"
    assert document["labels"][3] == "B-PER"


def test_unknown_model_is_one_line_exit_1(run_cli):
    result = run_cli("info", "no-such-model")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: no-such-model: no bundled recipe")


def test_python_m_converter_runs_cli():
    completed = subprocess.run([sys.executable, "-m", "converter", "list"], capture_output=True, text=True, check=False)

    assert completed.returncode == 0
    assert completed.stdout.startswith("bert-base-ner")


def test_predict_rejects_undecodable_argument(run_cli):
    result = run_cli("predict", "bert-base-ner", "caf\udce9")

    assert result.exit_code == 2
    assert "TEXT argument 1 is not valid UTF-8" in result.stderr


def test_build_under_a_file_is_one_line(run_cli, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")

    result = run_cli("build", "bert-base-ner", "--artifacts-dir", blocker / "sub")

    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "cannot create the lock file (Not a directory)" in result.stderr


def test_build_keeps_file_named_like_model(run_cli, tmp_path):
    (tmp_path / "bert-base-ner").write_text("user data")

    result = run_cli("build", "bert-base-ner", "--artifacts-dir", tmp_path)

    assert result.exit_code == 1
    assert "bert-base-ner: exists and is not a folder" in result.stderr
    assert (tmp_path / "bert-base-ner").read_text() == "user data"


def test_atomic_write_uses_default_mode(tmp_path):
    import os

    from converter.files import write_json_atomic

    target = tmp_path / "report.json"
    write_json_atomic(target, {"a": 1})
    umask = os.umask(0)
    os.umask(umask)

    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
