"""Load the fetched checkpoint as a PyTorch token classifier, after checking it fits the recipe.

The checks read config.json directly, so a wrong checkpoint is rejected
before transformers loads any weights.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from converter.errors import CheckpointError
from converter.layout import Layout
from converter.recipe import Recipe

log = logging.getLogger(__name__)

TOKEN_CLASSIFICATION_SUFFIX = "ForTokenClassification"


def read_checkpoint_config(layout: Layout) -> dict[str, Any]:
    """Read source/config.json as a dictionary, raising CheckpointError when it is missing or invalid."""
    path = layout.source_dir / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found", hint="Run `omz-like fetch MODEL` first") from None
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid checkpoint configuration ({error})", hint="Run `omz-like fetch MODEL --force`") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def checkpoint_labels(layout: Layout) -> tuple[str, ...]:
    """Return the checkpoint's labels in class-index order, from id2label in config.json."""
    path = layout.source_dir / "config.json"
    id2label = read_checkpoint_config(layout).get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise CheckpointError(f"{path}: id2label is missing or empty", hint="Use a checkpoint saved with its label names")
    try:
        indexed = {int(key): str(value) for key, value in id2label.items()}
    except ValueError:
        raise CheckpointError(f"{path}: id2label keys must be integers, got {sorted(id2label)}") from None
    if sorted(indexed) != list(range(len(indexed))):
        raise CheckpointError(f"{path}: id2label keys must be 0 to {len(indexed) - 1}, got {sorted(indexed)}")
    return tuple(indexed[index] for index in range(len(indexed)))


def check_checkpoint(recipe: Recipe, layout: Layout) -> tuple[str, ...]:
    """Check that the checkpoint is a token classifier whose labels match RECIPE, and return the labels."""
    path = layout.source_dir / "config.json"
    architectures = read_checkpoint_config(layout).get("architectures") or []
    if not any(str(name).endswith(TOKEN_CLASSIFICATION_SUFFIX) for name in architectures):
        architecture_names = ", ".join(map(str, architectures)) or "none"
        raise CheckpointError(
            f"{path}: architecture {architecture_names} is not a token-classification model",
            hint=f"Use a checkpoint whose architectures list a *{TOKEN_CLASSIFICATION_SUFFIX} class",
        )

    labels = checkpoint_labels(layout)
    if len(labels) != recipe.num_labels:
        raise CheckpointError(
            f"{path}: the checkpoint has {len(labels)} labels, but the recipe's outputs[0].shape "
            f"{list(recipe.outputs[0].shape)} expects {recipe.num_labels}",
            hint="Fix outputs[0].shape in the recipe or use the matching checkpoint",
        )
    if recipe.labels is not None and tuple(recipe.labels) != labels:
        raise CheckpointError(
            f"{path}: id2label order {list(labels)} differs from the recipe's labels {list(recipe.labels)}",
            hint="List the labels in the recipe in the checkpoint's class-index order",
        )
    return labels


def load_token_classifier(recipe: Recipe, layout: Layout):
    """Load the checkpoint in source/ as a transformers token classifier in eval mode.

    Weights come from model.safetensors when the recipe lists a .safetensors
    file, else from the .bin file through torch.load(weights_only=True), so a
    pickled checkpoint cannot run code.
    """
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging as transformers_logging

    # The per-tensor "Loading weights" bar of transformers 5 would flood stderr,
    # which carries this package's step logs. This switch is process-wide.
    transformers_logging.disable_progress_bar()
    check_checkpoint(recipe, layout)
    use_safetensors = any(entry.name.endswith(".safetensors") for entry in recipe.source.files)
    log.debug("load checkpoint: %s use_safetensors=%s", layout.source_dir, use_safetensors)
    try:
        model = AutoModelForTokenClassification.from_pretrained(
            layout.source_dir, local_files_only=True, use_safetensors=use_safetensors, weights_only=True
        )
    except (OSError, ValueError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{layout.source_dir}: loading the checkpoint failed ({first_line})", hint="Run `omz-like fetch MODEL --force`"
        ) from None
    model.eval()
    model.requires_grad_(False)
    return model


def token_logits(model, stacked: dict) -> "np.ndarray":
    """Run MODEL over the int64 arrays in STACKED (name -> [N, L]) and return float32 logits [N, L, C].

    Rows go through in batches of 16, which costs fewer passes than single
    rows and keeps the activations of bert-base near 100 MB.
    """
    import numpy as np
    import torch

    count = len(next(iter(stacked.values())))
    logits = []
    with torch.inference_mode():
        for start in range(0, count, 16):
            feed = {name: torch.from_numpy(array[start : start + 16]) for name, array in stacked.items()}
            logits.append(model(**feed).logits.float().numpy().copy())
    return np.concatenate(logits)


def source_files(recipe: Recipe, layout: Layout) -> list[Path]:
    """Return the paths of the recipe's files in source/, the inputs of every later stage."""
    return [layout.source_dir / entry.name for entry in recipe.source.files]
