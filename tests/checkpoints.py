"""Generated BERT token-classification checkpoints for the tests.

The Hub is unreachable from CI, so tests build checkpoints here: a tiny one
for speed and one with the full bert-base-NER configuration (random weights)
for truth. Both are deterministic: the same call writes the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import string
from dataclasses import dataclass
from pathlib import Path

import yaml

CONLL_LABELS = ("O", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Whole words the tests and the parity corpus use often, so that most of the
# text tokenizes into real word pieces instead of single characters.
COMMON_WORDS = (
    "the of and to in a is was for on that with by at from as it his her he she they we I you "
    "said says will has have had be been are were an this not but or its their after before "
    "Hello Sarah Jessica Parker who lives New York London Berlin Paris Obama visited love glad "
    "Pay now President Minister Prime United States Germany France Bank Company Inc Corp Ltd "
    "European Union Nations Council government police city World Cup League club team match "
    "John Smith Maria Garcia Angela Merkel Emmanuel Macron Google Microsoft Apple Amazon Reuters "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May "
    "June July August September October November December year years million billion percent"
).split()


@dataclass(frozen=True)
class CheckpointSpec:
    """Shape of a generated BERT model."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int = 512
    seed: int = 0


TINY = CheckpointSpec(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=1000)
FULL_SIZE = CheckpointSpec(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, vocab_size=28996)
TINY_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def build_vocab(size: int) -> list[str]:
    """Return SIZE WordPiece entries: specials, characters, ##characters, common words, then fillers."""
    characters = string.ascii_letters + string.digits + string.punctuation + "éèüöäñçÉ"
    vocab = list(SPECIAL_TOKENS) + list(characters) + [f"##{c}" for c in characters]
    vocab += [w for w in dict.fromkeys(COMMON_WORDS) if w not in vocab]
    if len(vocab) > size:
        raise ValueError(f"vocab size {size} is smaller than the {len(vocab)} base entries")
    vocab += [f"[unused{i}]" for i in range(size - len(vocab))]
    return vocab


def write_checkpoint(folder: Path, spec: CheckpointSpec = TINY, *, labels: tuple[str, ...] = CONLL_LABELS, architecture: str = "BertForTokenClassification") -> Path:
    """Write config.json, vocab.txt and pytorch_model.bin of a random BERT model into FOLDER."""
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    config = BertConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
        architectures=[architecture],
    )
    torch.manual_seed(spec.seed)
    model_class = BertForTokenClassification if architecture == "BertForTokenClassification" else BertModel
    model = model_class(config).eval()

    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    (folder / "vocab.txt").write_text("\n".join(build_vocab(spec.vocab_size)) + "\n", encoding="utf-8")
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def sha384(path: Path) -> str:
    return hashlib.sha384(path.read_bytes()).hexdigest()


def write_recipe(path: Path, checkpoint: Path, *, name: str = "tiny-ner", repo: str = "tests/tiny-ner", revision: str = "main", sequence_length: int = 128, extra: dict | None = None) -> Path:
    """Write a recipe for the checkpoint in CHECKPOINT, pinning its files' sizes and sha384."""
    labels = json.loads((checkpoint / "config.json").read_text())["id2label"]
    files = sorted(p.name for p in checkpoint.iterdir() if p.is_file())
    document = {
        "name": name,
        "description": "Generated BERT token classifier for tests.",
        "task": "token-classification",
        "license": "MIT",
        "source": {
            "repo": repo,
            "revision": revision,
            "files": [{"name": f, "size": (checkpoint / f).stat().st_size, "sha384": sha384(checkpoint / f)} for f in files],
        },
        "inputs": [
            {"name": n, "shape": [1, sequence_length], "dtype": "int64"}
            for n in ("input_ids", "attention_mask", "token_type_ids")
        ],
        "outputs": [{"name": "output", "shape": [1, sequence_length, len(labels)]}],
        "precisions": ["FP32", "FP16"],
    }
    document.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def place_source(recipe_path: Path, checkpoint: Path, artifacts: Path, *, commit_hash: str = TINY_COMMIT):
    """Copy CHECKPOINT into ARTIFACTS as `fetch` leaves it, with its source record; return the layout."""
    from converter.layout import Layout
    from converter.recipe import load_recipe

    recipe = load_recipe(str(recipe_path))
    layout = Layout.for_recipe(recipe, artifacts)
    layout.source_dir.mkdir(parents=True)
    for entry in recipe.source.files:
        shutil.copyfile(checkpoint / entry.name, layout.source_dir / entry.name)
    record = {
        "repo": recipe.source.repo,
        "revision": recipe.source.revision,
        "commit_hash": commit_hash,
        "files": [{"name": f.name, "size": f.size, f.hash_algorithm: f.hash_value} for f in recipe.source.files],
    }
    layout.source_record.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return layout
