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
