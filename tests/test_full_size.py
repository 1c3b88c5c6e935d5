"""Export and both conversions end to end on a checkpoint with the full bert-base-NER configuration."""

from __future__ import annotations

import numpy as np
import pytest

from tests.checkpoints import CONLL_LABELS, write_recipe
from tests.test_convert import weight_types
from tests.test_export import open_layout, place_source, torch_logits

pytestmark = pytest.mark.full_size


def test_full_size_export_and_convert(run_cli, tmp_path, full_size_checkpoint):
    from converter.export import example_inputs
    from converter.runtime import compile_ir, onnx_session

    recipe_path = write_recipe(tmp_path / "bert-ner.yaml", full_size_checkpoint, name="bert-ner", extra={"labels": list(CONLL_LABELS)})
    artifacts = tmp_path / "artifacts"
    place_source(recipe_path, full_size_checkpoint, artifacts)
    recipe, layout = open_layout(recipe_path, artifacts)

    result = run_cli("convert", recipe_path, "--artifacts-dir", artifacts)

    assert result.exit_code == 0, result.stderr
    session = onnx_session(layout.onnx_path)
    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        ("input_ids", [1, 128]),
        ("attention_mask", [1, 128]),
        ("token_type_ids", [1, 128]),
    ]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("output", [1, 128, 9])]
    assert weight_types(layout.ir_xml("FP32")) == {"f32"}
    assert weight_types(layout.ir_xml("FP16")) == {"f16"}

    inputs = example_inputs(recipe, layout, "Angela Merkel met Emmanuel Macron in Paris on Monday, Reuters said.")
    expected = torch_logits(recipe, layout, inputs)
    for precision in ("FP32", "FP16"):
        compiled = compile_ir(layout.ir_xml(precision), inference_precision="f32")
        assert [p.get_any_name() for p in compiled.compiled.outputs] == ["output"]
        actual = compiled.infer(inputs)
        assert actual.shape == (1, 128, 9)
        limit = 1e-4 if precision == "FP32" else recipe.tolerances["FP16"].max_abs
        assert float(np.max(np.abs(actual - expected))) <= limit, precision
