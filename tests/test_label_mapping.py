"""Free model output mapped onto the label set (tasks/classification.match_label)."""

from __future__ import annotations

import pytest

from autolabel_lite import load_config
from autolabel_lite.tasks import get_task_class
from autolabel_lite.tasks.classification import match_label

TOXICITY = ["toxic", "not toxic"]
SENTIMENT = ["positive", "negative", "neutral"]
INTENTS = ["card_arrival", "card_linking", "exchange_rate"]


@pytest.mark.parametrize(
    ("output", "labels", "expected"),
    [
        pytest.param("positive", SENTIMENT, "positive", id="exact"),
        pytest.param("  Positive \n", SENTIMENT, "positive", id="case and surrounding whitespace"),
        pytest.param("NOT   toxic", TOXICITY, "not toxic", id="inner whitespace"),
        pytest.param("not toxic", TOXICITY, "not toxic", id="longer label containing a shorter one"),
        pytest.param("Not toxic. The comment is polite.", TOXICITY, "not toxic", id="prefix: longest label first"),
        pytest.param("toxic, clearly", TOXICITY, "toxic", id="prefix"),
        pytest.param("Answer: negative", SENTIMENT, "negative", id="answer prefix"),
        pytest.param('The label is "neutral".', SENTIMENT, "neutral", id="quoted after a lead-in"),
        pytest.param("I think this review is negative overall", SENTIMENT, "negative", id="mentioned alone"),
        pytest.param("This comment is not toxic at all", TOXICITY, "not toxic", id="mention inside a longer label"),
        pytest.param("positve", SENTIMENT, "positive", id="close spelling"),
        pytest.param("nontoxic", TOXICITY, "not toxic", id="close spelling of a two-word label"),
        pytest.param("card arrival", INTENTS, "card_arrival", id="space for underscore"),
        pytest.param("card_arival", INTENTS, "card_arrival", id="close spelling of an identifier"),
        pytest.param("Not a duplicate", ["duplicate", "not duplicate"], "not duplicate", id="negated mention, close to the negative label"),
        pytest.param("It is not negative, it is positive", SENTIMENT, "positive", id="one label denied, one named"),
    ],
)
def test_output_maps_onto_label(output, labels, expected):
    assert match_label(output, labels) == expected


@pytest.mark.parametrize(
    ("output", "labels"),
    [
        pytest.param("banana", SENTIMENT, id="unrelated word"),
        pytest.param("", SENTIMENT, id="empty"),
        pytest.param("It is positive and negative", SENTIMENT, id="two labels mentioned"),
        pytest.param("card", INTENTS, id="only the shared part of two labels"),
        pytest.param("The sentiment is unclear", SENTIMENT, id="no label at all"),
        pytest.param("not positive", SENTIMENT, id="a label only denied"),
        pytest.param("The listings are not duplicate", ["duplicate", "distinct"], id="the only label named is denied"),
    ],
)
def test_output_without_a_clear_label_matches_nothing(output, labels):
    assert match_label(output, labels) is None


def test_label_keeps_the_configured_spelling():
    assert match_label("card arrival", ["Card Arrival", "Exchange Rate"]) == "Card Arrival"


@pytest.fixture
def classification():
    config = load_config({"task_name": "tox", "prompt": {"labels": TOXICITY}})
    return get_task_class(config.task_type)(config)


def test_parse_flags_output_that_matches_no_label(classification):
    parsed = classification.parse("I cannot decide about this one, sorry", {})
    assert parsed.label == ""
    assert parsed.error == "output 'I cannot decide about this one, sorry' matches no label"


def test_parse_shortens_long_output_in_the_error(classification):
    parsed = classification.parse("word " * 100, {})
    assert parsed.label == ""
    assert len(parsed.error) < 100
    assert "…" in parsed.error


def test_parse_returns_the_matched_label(classification):
    parsed = classification.parse(" Not Toxic\n", {})
    assert (parsed.label, parsed.error) == ("not toxic", None)
