"""An API model in the learned labeler: its label distribution read from the top_logprobs of
its generated answer's first token (scoring.generated_label_distribution), combined with the
embedding view fitted on the config's labeled examples."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from fake_openai_server import prompt_text, top_candidates

from autolabel_lite import LabelingAgent
from autolabel_lite.errors import ConfigError
from autolabel_lite.scoring import LABEL_FLOOR, generated_label_distribution

from conftest import write_csv
from test_learned import EXAMPLES


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


# -- through the openai provider and the fake server, over HTTP ---------------------------------

# The model the fake server plays knows a few kitchen words and answers "sport" otherwise.
KITCHEN_WORDS = ("dough", "onions", "cake", "soup", "eggs", "sauce", "garlic", "bread", "chicken", "pasta")
# The top_logprobs it lists for its answer's first token: the other label and some punctuation too.
FIRST_TOKEN_ALTERNATIVES = {
    "sport": [("sport", math.log(0.6)), (" Cooking", math.log(0.25)), (",", math.log(0.15))],
    "cooking": [("cooking", math.log(0.7)), ("Sport", math.log(0.2)), ("\n", math.log(0.1))],
}
NEW_ROWS = [
    {"text": "The winger crossed and the striker headed it in."},
    {"text": "Whisk the cream, then fold in the melted chocolate."},  # no kitchen word: the server answers "sport"
]


def kitchen_responder(request: dict) -> str:
    row = prompt_text(request).rpartition("Now the input to label:")[2].lower()
    return "cooking" if any(word in row for word in KITCHEN_WORDS) else "sport"


def first_token_alternatives(token: str, k: int) -> list[tuple[str, float]]:
    return FIRST_TOKEN_ALTERNATIVES.get(token, top_candidates(token, k))[:k]


def learned_api_config(fake_server, **prompt) -> dict:
    return {
        "task_name": "topic",
        "task_type": "classification",
        "dataset": {"input_columns": ["text"], "label_column": "topic"},
        "model": {"provider": "openai", "name": "fake-model", "base_url": fake_server.base_url, "compute_confidence": True},
        "prompt": {
            "labels": ["sport", "cooking"],
            "few_shot_examples": EXAMPLES,
            "few_shot_num": 0,
            "structured_output": False,
            **prompt,
        },
    }


def label_new_rows(config: dict, tmp_path):
    data = write_csv(tmp_path / "new.csv", ["text"], [[row["text"]] for row in NEW_ROWS])
    result = LabelingAgent(config).run(data, progress=False)
    return result, [outcome for _, outcome in result.rows()]


def test_an_api_models_top_logprobs_are_combined_with_the_embedding_view(fake_server, tmp_path):
    fake_server.responder = kitchen_responder
    fake_server.alternatives = first_token_alternatives

    result, outcomes = label_new_rows(learned_api_config(fake_server), tmp_path)

    # Each labeled example was answered once to fit on, then each new row: chat completions only.
    assert fake_server.stats.by_endpoint == {"chat": len(EXAMPLES) + len(NEW_ROWS)}
    assert result.stats.errors == 0
    for outcome in outcomes:
        answered = outcome.details["raw_output"]
        # The model's distribution, worked out here from what the server listed for that answer.
        listed = {token.strip().lower(): math.exp(logprob) for token, logprob in FIRST_TOKEN_ALTERNATIVES[answered]}
        on_labels = listed["sport"] + listed["cooking"]  # the punctuation's share is dropped
        assert outcome.details["llm_label_probs"] == pytest.approx({label: listed[label] / on_labels for label in ("sport", "cooking")})
        assert set(outcome.details["embedding_label_probs"]) == {"sport", "cooking"}
        # The label is the combined distribution's choice, with the learned confidence.
        probs = outcome.details["label_probs"]
        assert outcome.label == max(probs, key=probs.get)
        assert outcome.confidence == outcome.details["learned_confidence"]
    assert [o.details["raw_output"] for o in outcomes] == ["sport", "sport"]
    # The server's answer for the chocolate row is wrong; the fitted combination overrules it.
    assert [o.label for o in outcomes] == ["sport", "cooking"]

    again, _ = label_new_rows(learned_api_config(fake_server), tmp_path)
    assert again.stats.model_calls == 0  # the examples' answers and the rows' are cached


def test_without_top_logprobs_the_embedding_view_labels_alone(fake_server, tmp_path):
    fake_server.responder = kitchen_responder
    fake_server.returns_logprobs = False

    with pytest.warns(UserWarning, match="no top_logprobs: the learned labeler labels with the embedding view alone"):
        result, outcomes = label_new_rows(learned_api_config(fake_server), tmp_path)

    assert result.stats.errors == 0
    assert [o.label for o in outcomes] == ["sport", "cooking"]
    for outcome in outcomes:
        assert "llm_label_probs" not in outcome.details
        assert 0.5 < outcome.confidence <= 1


@pytest.mark.parametrize(
    ("prompt", "reason"),
    [
        ({"structured_output": True}, "structured output puts inside JSON: set prompt.structured_output false"),
        ({"chain_of_thought": True}, "chain_of_thought puts after the reasoning"),
        ({"labeling_mode": "score"}, "set prompt.labeling_mode generate"),
    ],
)
def test_forced_learning_says_why_an_api_model_cannot_be_combined(fake_server, prompt, reason):
    config = learned_api_config(fake_server, **prompt)
    config["learning"] = {"enabled": True}
    with pytest.raises(ConfigError, match=rf"^learning.enabled: .*{reason}"):
        LabelingAgent(config).run(write_csv(Path("rows.csv"), ["text"], [["a row"]]), progress=False)


@pytest.mark.parametrize("prompt", [{"structured_output": True}, {"few_shot_examples": None}])
def test_learning_stays_off_by_default_where_it_cannot_apply_or_has_nothing_to_fit(fake_server, tmp_path, prompt):
    fake_server.responder = kitchen_responder

    _, outcomes = label_new_rows(learned_api_config(fake_server, **prompt), tmp_path)

    # The generated answers are the labels, as before the learned labeler read API models.
    assert [o.label for o in outcomes] == ["sport", "sport"]
    assert all("embedding_label_probs" not in o.details for o in outcomes)
