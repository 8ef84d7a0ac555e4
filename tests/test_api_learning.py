"""An API model in the learned labeler: its label distribution read from the top_logprobs of
its generated answer's first token (scoring.generated_label_distribution), combined with the
embedding view fitted on the config's labeled examples."""

from __future__ import annotations

import math

import pytest

from autolabel_lite.scoring import LABEL_FLOOR, generated_label_distribution


def test_each_label_gets_the_mass_of_the_alternatives_that_begin_it_and_the_rest_is_dropped():
    first = {"positive": math.log(0.6), " Negative": math.log(0.2), "neg": math.log(0.1), ",": math.log(0.05)}
    probs = generated_label_distribution(["positive"], [first], ["positive", "negative", "neutral"])
    # Case and a token's leading space are folded; "," begins no label and is dropped.
    matched = 0.6 + 0.2 + 0.1
    unnormalised = [0.6 / matched, 0.3 / matched, LABEL_FLOOR]
    assert probs == pytest.approx([p / sum(unnormalised) for p in unnormalised])


def test_not_toxic_and_toxic_take_their_own_alternatives():
    first = {"not": math.log(0.7), " Toxic": math.log(0.2), "\n": math.log(0.1)}
    probs = generated_label_distribution(["not", " toxic"], [first, {" toxic": 0.0}], ["toxic", "not toxic"])
    assert probs == pytest.approx([0.2 / 0.9, 0.7 / 0.9])


def test_a_shared_first_token_is_split_by_the_next_tokens_when_it_was_generated_else_evenly():
    labels = ["card arrival", "card linking", "cash withdrawal"]
    first = {"card": math.log(0.8), "Card": math.log(0.1), " cash": math.log(0.1)}
    second = {" arrival": math.log(0.75), " linking": math.log(0.25)}
    probs = generated_label_distribution(["card", " arrival"], [first, second], labels)
    # "card" was generated, so the second position (computed after it) splits its 0.8;
    # "Card" was not: nothing tells its labels apart, so it is split evenly.
    assert probs == pytest.approx([0.8 * 0.75 + 0.05, 0.8 * 0.25 + 0.05, 0.1])
    # Without a later position, the generated token is split evenly too.
    assert generated_label_distribution(["card"], [first], labels) == pytest.approx([0.45, 0.45, 0.1])


def test_a_label_the_answer_ends_takes_what_continues_no_longer_label():
    labels = ["spam", "spam offer"]
    first = {"spam": 0.0}
    second = {" offer": math.log(0.3), "\n": math.log(0.6), " the": math.log(0.1)}
    probs = generated_label_distribution(["spam", "\n"], [first, second], labels)
    assert probs == pytest.approx([0.7, 0.3])


def test_a_leading_quote_or_newline_is_not_the_answer():
    quote = {'"': 0.0}
    answer = {"negative": math.log(0.9), "positive": math.log(0.1)}
    probs = generated_label_distribution(['"', "negative", '"'], [quote, answer, quote], ["positive", "negative"])
    assert probs == pytest.approx([0.1, 0.9])


def test_no_distribution_without_top_logprobs_or_when_no_alternative_begins_a_label():
    assert generated_label_distribution(["positive"], [], ["positive", "negative"]) is None
    assert generated_label_distribution([], [], ["positive", "negative"]) is None
    label_first = {"Label": math.log(0.9), "Answer": math.log(0.1)}
    assert generated_label_distribution(["Label", ":", " positive"], [label_first, {}, {}], ["positive", "negative"]) is None
