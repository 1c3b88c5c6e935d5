"""From word pieces and tags to entities, with the real tokenizer's offsets."""

from __future__ import annotations

import numpy as np
import pytest

from converter.decoding import Entity, Span, entities_from_logits, entities_from_tags, entity_spans
from converter.tokenization import WordPieceTokenizer
from tests.checkpoints import CONLL_LABELS, build_vocab


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> WordPieceTokenizer:
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(build_vocab(1000)) + "\n", encoding="utf-8")
    return WordPieceTokenizer(vocab, lower_case=False)


def decode(tokenizer: WordPieceTokenizer, text: str, tags: list[str]) -> list[Entity]:
    tokens = tokenizer.tokenize(text)
    assert len(tokens.ids) == len(tags), tokens.pieces
    scores = [0.5 + 0.01 * i for i in range(len(tags))]
    return entities_from_tags(text, tokens.offsets, tags, scores)


def test_spans_b_tag_starts_new_entity():
    assert entity_spans(["B-PER", "B-PER", "I-PER"]) == [Span("PER", 0, 1), Span("PER", 1, 3)]


def test_spans_i_tag_after_o_starts_entity():
    assert entity_spans(["O", "I-LOC", "I-LOC", "O"]) == [Span("LOC", 1, 3)]


def test_spans_i_tag_of_other_type_starts_entity():
    assert entity_spans(["B-PER", "I-ORG", "I-ORG"]) == [Span("PER", 0, 1), Span("ORG", 1, 3)]


def test_spans_all_outside_is_empty():
    assert entity_spans(["O", "O"]) == []


def test_cased_tokenizer_keeps_case(tokenizer):
    tokens = tokenizer.tokenize("Hello Paris")
    assert tokens.pieces == ["Hello", "Paris"]
    assert tokens.offsets == [(0, 5), (6, 11)]


def test_repeated_name_gets_its_own_offsets(tokenizer):
    text = "Hello Sarah Jessica Parker who Jessica lives in New York"
    tags = ["O", "B-PER", "I-PER", "I-PER", "O", "B-PER", "O", "O", "B-LOC", "I-LOC"]
    entities = decode(tokenizer, text, tags)
    assert [(e.type, e.start, e.end, e.text) for e in entities] == [
        ("PER", 6, 26, "Sarah Jessica Parker"),
        ("PER", 31, 38, "Jessica"),
        ("LOC", 48, 56, "New York"),
    ]
    assert entities[0].score == pytest.approx((0.51 + 0.52 + 0.53) / 3)
    assert entities[1].score == pytest.approx(0.55)
    assert entities[2].score == pytest.approx((0.58 + 0.59) / 2)


def test_number_span_is_sliced_from_text(tokenizer):
    text = "Pay 04-00-04 now"
    tokens = tokenizer.tokenize(text)
    assert tokens.pieces == ["Pay", "0", "##4", "-", "0", "##0", "-", "0", "##4", "now"]
    tags = ["O", "B-MISC"] + ["I-MISC"] * 7 + ["O"]
    entities = decode(tokenizer, text, tags)
    assert len(entities) == 1
    assert (entities[0].start, entities[0].end) == (4, 12)
    assert entities[0].text == text[4:12] == "04-00-04"


def test_emoji_word_keeps_string_indices(tokenizer):
    text = "glad😊 Obama visited Paris"
    tokens = tokenizer.tokenize(text)
    assert tokens.pieces == ["[UNK]", "Obama", "visited", "Paris"]
    entities = decode(tokenizer, text, ["O", "B-PER", "O", "B-LOC"])
    assert [(e.type, e.start, e.end, e.text) for e in entities] == [("PER", 6, 11, "Obama"), ("LOC", 20, 25, "Paris")]


def test_unknown_word_entity_keeps_original_text(tokenizer):
    text = "glad😊 Obama"
    entities = decode(tokenizer, text, ["B-MISC", "O"])
    assert [(e.start, e.end, e.text) for e in entities] == [(0, 5, "glad😊")]


def test_i_b_i_tags_give_three_entities(tokenizer):
    text = "I love London Berlin and Paris"
    entities = decode(tokenizer, text, ["O", "O", "I-LOC", "B-LOC", "O", "I-LOC"])
    assert [(e.type, e.text) for e in entities] == [("LOC", "London"), ("LOC", "Berlin"), ("LOC", "Paris")]
    assert [(e.start, e.end) for e in entities] == [(7, 13), (14, 20), (25, 30)]


def test_adjacent_b_tags_stay_apart(tokenizer):
    entities = decode(tokenizer, "London Berlin", ["B-LOC", "B-LOC"])
    assert [e.text for e in entities] == ["London", "Berlin"]


def test_subword_entity_has_no_hash_fragments(tokenizer):
    text = "Zq visited"
    tokens = tokenizer.tokenize(text)
    assert tokens.pieces == ["Z", "##q", "visited"]
    entities = decode(tokenizer, text, ["B-ORG", "I-ORG", "O"])
    assert [(e.text, e.start, e.end) for e in entities] == [("Zq", 0, 2)]


def test_logits_decode_to_best_labels(tokenizer):
    text = "Angela Merkel visited Paris"
    offsets = tokenizer.tokenize(text).offsets
    logits = np.full((4, len(CONLL_LABELS)), -10.0, dtype=np.float32)
    for position, tag in enumerate(["B-PER", "I-PER", "O", "B-LOC"]):
        logits[position, CONLL_LABELS.index(tag)] = 0.0
    logits[3, CONLL_LABELS.index("B-ORG")] = -1.0
    entities = entities_from_logits(text, offsets, logits, CONLL_LABELS)
    person_score = 1 / (1 + 8 * np.exp(-10.0))
    paris_score = 1 / (1 + np.exp(-1.0) + 7 * np.exp(-10.0))
    assert [(e.type, e.start, e.end, e.text) for e in entities] == [("PER", 0, 13, "Angela Merkel"), ("LOC", 22, 27, "Paris")]
    assert entities[0].score == pytest.approx(person_score, abs=1e-9)
    assert entities[1].score == pytest.approx(paris_score, abs=1e-9)


def test_logits_shape_mismatch_raises(tokenizer):
    with pytest.raises(ValueError, match=r"expected \(2, 9\)"):
        entities_from_logits("a b", [(0, 1), (2, 3)], np.zeros((3, 9)), CONLL_LABELS)


def test_tag_count_mismatch_raises():
    with pytest.raises(ValueError, match="must match"):
        entities_from_tags("a b", [(0, 1)], ["O", "O"], [1.0, 1.0])


def test_entity_json_fields():
    entity = Entity(type="PER", score=0.5, start=0, end=3, text="Bob")
    assert entity.to_json() == {"type": "PER", "score": 0.5, "start": 0, "end": 3, "text": "Bob"}
