"""Structured output: the constrained decoder always writes valid JSON of the task's shape
(property test over random texts and random model scores), API servers are sent the
task's schema as ``response_format``, and a server that refuses it still labels every row."""

from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolabel_lite import LabelingAgent
from autolabel_lite.spans import find_occurrences
from autolabel_lite.structured import ConstrainedDecoder, object_schema

from conftest import write_csv

TYPES = ["Location", "Organization", "Person"]
NER_SCHEMA = object_schema({kind: {"type": "array", "items": {"type": "string"}} for kind in TYPES})
STRUCTURE_TOKENS = ['"', '",', '"]', "]", ",", ", ", " ", '"}', "{", ":", "\n", "\\", "�"]
STOP = 0


def random_decoder(text: str, seed: int, max_tokens: int, extra: list[str] = ()) -> ConstrainedDecoder:
    """A decoder over a vocabulary of the text's words and pieces plus structure and junk
    tokens, driven by random scores: any model, however bad, must give a valid answer."""
    words = text.split()
    pieces = {w[:cut] for w in words for cut in range(1, len(w) + 1)} | {" " + w for w in words}
    vocab = ["<stop>", *sorted(pieces), *STRUCTURE_TOKENS, *extra, "zzz", " qq", "Ω"]
    index = {token: i for i, token in enumerate(vocab)}
    rng = np.random.default_rng(seed)

    def encode(forced: str) -> list[int]:
        return [index.get(ch, index["zzz"]) for ch in forced]

    return ConstrainedDecoder(
        step=lambda ids: rng.normal(size=len(vocab)),
        ranked=lambda scores: np.argsort(-scores),
        vocab=vocab,
        encode=encode,
        stop_ids={STOP},
        max_tokens=max_tokens,
    )


words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    text=st.lists(words, min_size=1, max_size=20).map(" ".join),
    seed=st.integers(0, 2**32 - 1),
    max_tokens=st.integers(1, 120),
)
def test_ner_answers_are_always_an_object_of_entity_lists_copied_from_the_text(text, seed, max_tokens):
    decoder = random_decoder(text, seed, max_tokens)
    decoder.start(np.random.default_rng(seed).normal(size=len(decoder._vocab)))

    decoded = decoder.decode(NER_SCHEMA, copy_from=text)

    answer = json.loads(decoded.text)  # valid JSON, wherever the budget ran out
    assert list(answer) == TYPES
    entities = [entity for kind in TYPES for entity in answer[kind]]
    assert all(isinstance(entity, str) and entity == entity.strip() and entity for entity in entities)
    assert all(find_occurrences(text, entity) for entity in entities), (text, entities)
    assert len(set(entities)) == len(entities)
    assert len(decoded.pieces) == len(decoded.logprobs)  # the pieces spell the answer, for confidence


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), max_tokens=st.integers(1, 40))
def test_enum_answers_are_always_one_of_the_labels(seed, max_tokens):
    labels = ["positive", "negative", "neutral", "not sure"]
    text = " ".join(labels)
    decoder = random_decoder(text, seed, max_tokens, extra=["pos", "neg", "neu", "not", " sure"])
    decoder.start(np.random.default_rng(seed).normal(size=len(decoder._vocab)))

    decoded = decoder.decode(object_schema({"label": {"type": "string", "enum": labels}}))

    assert json.loads(decoded.text)["label"] in labels


def test_the_model_chooses_entities_the_structure_is_written_for_it():
    text = "Ada Lovelace visited London ."
    vocab = ["<stop>", "Ada", " Lovelace", " London", "London", '"', '"]', '",', "]", ",", "{", "}", " ", ":", "[", "x"]
    index = {t: i for i, t in enumerate(vocab)}
    # A scripted "model": after the Person key it writes Ada Lovelace, after Location London.
    fed: list[str] = []

    def step(ids):
        fed.extend(vocab[i] for i in ids)
        so_far = "".join(fed)
        wish = ["x"]
        if so_far.endswith('"Location": ['):
            wish = ['"']
        elif so_far.endswith('"Location": ["'):
            wish = ["London"]
        elif so_far.endswith('"Person": ["'):
            wish = ["Ada"]
        elif so_far.endswith("Ada"):
            wish = [" Lovelace"]
        elif so_far.endswith(("London", "Lovelace")):
            wish = ['"]']
        elif so_far.endswith('"Person": ['):
            wish = ['"']
        elif so_far.endswith("["):
            wish = ["]"]
        scores = np.full(len(vocab), -10.0)
        for rank, token in enumerate(wish):
            scores[index[token]] = -0.5 - rank
        return scores

    def encode(forced: str) -> list[int]:
        """Forced structure, one character per token (new characters join the vocabulary)."""
        for ch in forced:
            if ch not in index:
                index[ch] = len(vocab)
                vocab.append(ch)
        return [index[ch] for ch in forced]

    decoder = ConstrainedDecoder(
        step=step, ranked=lambda scores: np.argsort(-scores), vocab=vocab, encode=encode, stop_ids={0}, max_tokens=64
    )
    decoder.start(step([]))
    decoded = decoder.decode(NER_SCHEMA, copy_from=text)

    assert decoded.text == '{"Location": ["London"], "Organization": [], "Person": ["Ada Lovelace"]}'
    # Model-chosen pieces carry the model's log-probabilities; forced structure carries 0.
    chosen = [(piece, logprob) for piece, logprob in zip(decoded.pieces, decoded.logprobs) if logprob != 0.0]
    assert chosen == [("London", -0.5), ("Ada", -0.5), (" Lovelace", -0.5)]


# -- API servers ---------------------------------------------------------------------------


def ner_config(server) -> dict:
    return {
        "task_name": "news",
        "task_type": "named_entity_recognition",
        "dataset": {"input_columns": ["text"]},
        "model": {"provider": "openai", "name": "fake-model", "base_url": server.base_url, "max_retries": 0, "concurrency": 1},
        "prompt": {"labels": TYPES},
    }


def test_ner_sends_its_json_schema_as_response_format(fake_server, tmp_path):
    fake_server.responder = lambda request: '{"Location": ["London"], "Organization": [], "Person": []}'
    data = write_csv(tmp_path / "news.csv", ["text"], [("Ada flew to London .",)])

    result = LabelingAgent(ner_config(fake_server)).run(data, progress=False)

    sent = fake_server.requests[0].body["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"] == {
        "type": "object",
        "properties": {kind: {"type": "array", "items": {"type": "string"}} for kind in TYPES},
        "required": TYPES,
        "additionalProperties": False,
    }
    [(_, row)] = list(result.rows())
    assert json.loads(row.label) == {"Location": ["London"], "Organization": [], "Person": []}


def test_classification_and_qa_answers_come_back_inside_their_schema(fake_server, api_config, reviews_csv):
    fake_server.responder = lambda request: json.dumps({"label": "negative"})

    result = LabelingAgent(api_config).run(reviews_csv, progress=False)

    assert fake_server.requests[0].body["response_format"]["json_schema"]["schema"]["properties"] == {
        "label": {"type": "string", "enum": ["positive", "negative"]}
    }
    assert [row.label for _, row in result.rows()] == ["negative"] * 4


def test_a_server_refusing_response_format_is_asked_again_without_it_and_warned_about_once(fake_server, tmp_path):
    fake_server.accepts_response_format = False
    fake_server.responder = lambda request: '{"Location": ["London"], "Organization": [], "Person": []}'
    data = write_csv(tmp_path / "news.csv", ["text"], [("Ada flew to London .",), ("Bo stayed in London .",)])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = LabelingAgent(ner_config(fake_server)).run(data, progress=False)

    bodies = [request.body for request in fake_server.requests]
    assert ["response_format" in body for body in bodies] == [True, False, False]  # remembered for the run
    assert fake_server.stats.responses[400] == 1
    assert [str(w.message) for w in caught if "response_format" in str(w.message)] == [
        "the model server refused response_format (HTTP 400 from the model server); answers are requested as free text and parsed"
    ]
    assert [row.error for _, row in result.rows()] == ["", ""]


def test_structured_output_can_be_turned_off(fake_server, tmp_path):
    fake_server.responder = lambda request: '{"Location": ["London"]}'
    config = ner_config(fake_server)
    config["prompt"]["structured_output"] = False
    data = write_csv(tmp_path / "news.csv", ["text"], [("Ada flew to London .",)])

    LabelingAgent(config).run(data, progress=False)

    assert "response_format" not in fake_server.requests[0].body


@pytest.mark.model
def test_embedded_model_writes_parseable_entities_copied_from_the_text(tmp_path):
    config = {
        "task_name": "news",
        "task_type": "named_entity_recognition",
        "dataset": {"input_columns": ["text"]},
        "prompt": {"labels": TYPES, "max_output_tokens": 48},
    }
    texts = ["Angela Merkel met Emmanuel Macron in Paris on Tuesday .", "Toyota opened a plant in Kentucky ."]
    data = write_csv(tmp_path / "news.csv", ["text"], [(t,) for t in texts])

    result = LabelingAgent(config).run(data, progress=False)

    for (row, labeled), text in zip(result.rows(), texts):
        answer = json.loads(labeled.label)
        assert list(answer) == TYPES
        assert all(find_occurrences(text, entity) for values in answer.values() for entity in values)
        assert "not a JSON object" not in labeled.error
