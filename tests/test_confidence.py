"""Confidence methods: their arithmetic on hand-computed log-probabilities, and each method
end to end through the ``openai`` provider against the fake server, whose token
log-probabilities are a known function of the token (``token_logprob``)."""

from __future__ import annotations

import copy
import math

import pytest
from fake_openai_server import default_responder, token_logprob

from autolabel_lite import ConfigError, LabelingAgent, load_config
from autolabel_lite.confidence.base import normalised_certainty
from autolabel_lite.confidence.logprob import part_logprobs, token_offsets, token_probability
from autolabel_lite.confidence.semantic_entropy import group_answers, semantic_certainty
from autolabel_lite.confidence.verbalized import parse_probability
from autolabel_lite.rouge import rouge_l

from conftest import REVIEWS, read_csv, write_csv

# -- arithmetic, no model ----------------------------------------------------------------


def test_first_token_and_geometric_mean_probability():
    assert token_probability([-0.5, -1.0], "first") == pytest.approx(math.exp(-0.5))
    assert token_probability([-0.5, -1.0], "mean") == pytest.approx(math.exp(-0.75))  # sqrt(e^-0.5 * e^-1)


def test_tokens_are_placed_in_the_text_whether_decoded_or_raw_pieces():
    assert token_offsets(["\n", "Answer", ":", " not", " toxic"], "\nAnswer: not toxic") == [
        (0, 1), (1, 7), (7, 8), (8, 12), (12, 18)
    ]
    # Byte-level BPE pieces from teacher forcing: "Ġ" is a space.
    assert token_offsets(["not", "Ġtoxic"], "not toxic") == [(0, 3), (3, 9)]
    # A fragment of a multi-byte character cannot be placed; the next token picks up the thread.
    assert token_offsets(["caf", "\ufffd", "é", " ok"], "café ok") == [(0, 3), (3, 3), (3, 4), (4, 7)]


def test_a_label_part_takes_the_tokens_that_spell_it():
    tokens = ["Answer", ":", " not", " toxic"]
    logprobs = [-2.0, -1.5, -0.3, -0.1]
    assert part_logprobs("Answer: not toxic", tokens, logprobs, ["not toxic"]) == [[-0.3, -0.1]]
    assert part_logprobs("Answer: not toxic", tokens, logprobs, ["toxic"]) == [[-0.1]]
    assert part_logprobs("Answer: not toxic", tokens, logprobs, ["positive"]) is None
    # Tokens of some other output are not reused for this one.
    assert part_logprobs("Answer: not toxic at all", tokens, logprobs, ["not toxic"]) is None


def test_a_model_that_reasons_first_is_scored_on_its_final_answer():
    tokens = ["It", " is", " not", " toxic", ".", " Answer", ":", " not", " toxic"]
    logprobs = [-1.0, -1.0, -0.9, -0.8, -1.0, -1.0, -1.0, -0.2, -0.05]
    assert part_logprobs("It is not toxic. Answer: not toxic", tokens, logprobs, ["not toxic"]) == [[-0.2, -0.05]]


def test_normalised_certainty_is_one_minus_entropy_over_its_maximum():
    assert normalised_certainty([1.0, 0.0], 2) == 1.0
    assert normalised_certainty([0.5, 0.5], 2) == pytest.approx(0.0)
    # H = -(0.7 ln 0.7 + 0.2 ln 0.2 + 0.1 ln 0.1) = 0.80182; 1 - H / ln 3 = 0.27015
    assert normalised_certainty([0.7, 0.2, 0.1], 3) == pytest.approx(0.27015, abs=1e-5)
    assert normalised_certainty([1.0], 1) == 1.0


def test_rouge_l_is_the_f1_of_the_longest_common_word_subsequence():
    # LCS "the cat on the mat" = 5 of 6 words each way.
    assert rouge_l("The cat sat on the mat", "the cat lay on the mat.") == pytest.approx(5 / 6)
    # LCS 1: precision 1/1, recall 1/4 -> F1 0.4
    assert rouge_l("Paris", "the city of Paris") == pytest.approx(0.4)
    assert rouge_l("", "...") == 1.0
    assert rouge_l("Paris", "") == 0.0
    assert rouge_l("toxic", "not toxic") == pytest.approx(2 / 3)  # below the default 0.7: two groups


def test_answers_are_grouped_transitively_by_rouge_l():
    a, b, c = "w1 w2 w3 w4 w5", "w1 w2 w3 w4 w5 w6 w7", "w3 w4 w5 w6 w7"
    assert rouge_l(a, b) >= 0.7 and rouge_l(b, c) >= 0.7 and rouge_l(a, c) < 0.7
    assert group_answers([a, c, "unrelated", b], 0.7) == [0, 0, 1, 0]


def test_semantic_certainty_weighs_groups_by_sequence_probability():
    answers = ["Paris", "Paris.", "London"]
    logprobs = [math.log(0.5), math.log(0.3), math.log(0.2)]
    # Groups {Paris, Paris.} = 0.8 and {London} = 0.2: H = 0.50040; 1 - H / ln 3 = 0.54451
    value, groups = semantic_certainty(answers, logprobs, 0.7)
    assert groups == 2
    assert value == pytest.approx(0.54451, abs=1e-5)
    assert semantic_certainty(["Paris"] * 4, [-3.0, -1.0, -2.0, -0.5], 0.7) == (1.0, 1)


@pytest.mark.parametrize(
    "text, value",
    [("0.85", 0.85), ("Confidence: .9", 0.9), ("I'd say 85%.", 0.85), ("1", 1.0), ("0", 0.0),
     ("7", None), ("-0.5", None), ("I am quite sure.", None), ("", None)],
)
def test_verbalized_answers_are_parsed_as_probabilities(text, value):
    assert parse_probability(text) == (pytest.approx(value) if value is not None else None)


# -- config ------------------------------------------------------------------------------


def base_config(**confidence) -> dict:
    return {"task_name": "t", "prompt": {"labels": ["a", "b"]}, "model": {"compute_confidence": True}, "confidence": confidence}


@pytest.mark.parametrize(
    "config, message",
    [
        (base_config(method="vibes"), "confidence.method: unknown confidence method 'vibes'; expected one of auto, entropy, learned, logprob, p_true"),
        (base_config(samples=1), "confidence.samples: Input should be greater than or equal to 2"),
        (base_config(rouge_threshold=1.5), "confidence.rouge_threshold: Input should be less than or equal to 1"),
        (base_config(token_probability="max"), "confidence.token_probability: Input should be 'first' or 'mean'"),
        (base_config(verifier={"provider": "nope"}), "confidence.verifier.provider: unknown provider 'nope'"),
        (
            {**base_config(method="entropy"), "task_type": "named_entity_recognition", "prompt": {"labels": ["Person"]}},
            "confidence.method: entropy does not apply to named_entity_recognition tasks",
        ),
        (
            {**base_config(method="entropy"), "task_type": "multilabel_classification"},
            "confidence.method: entropy does not apply to multilabel_classification tasks",
        ),
    ],
)
def test_config_errors_name_the_key(config, message):
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value).startswith(message)


def test_methods_that_apply_load_for_every_task_type():
    for method in ("logprob", "p_true", "verbalized", "semantic_entropy"):
        config = {**base_config(method=method), "task_type": "named_entity_recognition", "prompt": {"labels": ["Person"]}}
        assert load_config(config).confidence.method == method
    qa = {**base_config(method="entropy"), "task_type": "question_answering", "dataset": {"input_columns": ["c", "q"]}}
    assert load_config(qa).confidence.method == "entropy"  # QA scores a fixed set of span candidates


# -- each method through the openai provider and the fake server --------------------------


def confident(config: dict, method: str, **options) -> dict:
    changed = copy.deepcopy(config)
    changed["model"]["compute_confidence"] = True
    changed["confidence"] = {"method": method, **options}
    return changed


def run(config, data):
    result = LabelingAgent(config).run(data, progress=False)
    return result, [r for _, r in result.rows()]


def test_logprob_reuses_the_labeling_logprobs_first_token(fake_server, api_config, reviews_csv):
    result, rows = run(confident(api_config, "logprob"), reviews_csv)

    assert [r.label for r in rows] == [label for _, label in REVIEWS]
    for row in rows:  # one-token answers: the first token is the label
        assert row.confidence == pytest.approx(math.exp(token_logprob(row.label)))
    assert fake_server.stats.by_endpoint["completions"] == 0  # nothing teacher-forced
    assert result.stats.model_calls == len(REVIEWS)
    assert {"auroc", "ece"} <= set(result.metrics)  # the data has ground truth


def test_logprob_first_token_or_mean_over_a_multi_token_label(fake_server, api_config, tmp_path):
    api_config["prompt"]["labels"] = ["very positive", "negative"]
    data = write_csv(tmp_path / "r.csv", ["review", "gold"], [("Row: very positive indeed.", "very positive")])
    first, mean = math.exp(token_logprob("very")), math.exp((token_logprob("very") + token_logprob(" positive")) / 2)

    _, [row] = run(confident(api_config, "logprob"), data)
    assert row.confidence == pytest.approx(first)
    _, [row] = run(confident(api_config, "logprob", token_probability="mean"), data)
    assert row.confidence == pytest.approx(mean)


def test_logprob_teacher_forces_the_label_with_a_separate_verifier(fake_server, api_config, reviews_csv):
    verifier = {"provider": "openai", "name": "fake-verifier", "base_url": fake_server.base_url}
    result, rows = run(confident(api_config, "logprob", verifier=verifier), reviews_csv)

    # The echoed prompt ends with a newline that the fake tokenizer glues to the label's first word.
    for row in rows:
        assert row.confidence == pytest.approx(math.exp(token_logprob("\n" + row.label)))
    completions = [r.body for r in fake_server.requests if r.path == "/v1/completions"]
    assert len(completions) == len(REVIEWS)
    assert all(c["model"] == "fake-verifier" and c["echo"] and c["max_tokens"] == 0 for c in completions)


def test_ner_scores_each_entity_and_the_row_takes_the_least_confident(fake_server, tmp_path):
    answer = '{"Person": ["Ada Lovelace"], "Location": ["London"]}'
    fake_server.responder = lambda request: answer
    data = write_csv(tmp_path / "ner.csv", ["text"], [("Ada Lovelace lived in London.",)])
    config = {
        "task_name": "ner",
        "task_type": "named_entity_recognition",
        "model": {"provider": "openai", "name": "fake", "base_url": fake_server.base_url},
        "prompt": {"labels": ["Person", "Location"]},
    }
    result, [row] = run(confident(config, "logprob"), data)

    ada = math.exp((token_logprob("Ada") + token_logprob(" Lovelace")) / 2)  # mean over the entity's tokens
    london = math.exp(token_logprob("London"))
    assert row.details["entity_confidences"] == [
        {"text": "Ada Lovelace", "confidence": pytest.approx(ada, abs=1e-6)},
        {"text": "London", "confidence": pytest.approx(london, abs=1e-6)},
    ]
    assert row.confidence == pytest.approx(min(ada, london))
    result.to_csv(tmp_path / "out.csv")
    [exported] = read_csv(tmp_path / "out.csv")
    assert '"text": "London"' in exported["ner_entity_confidences"]


def test_p_true_is_yes_against_no(fake_server, api_config, reviews_csv):
    result, rows = run(confident(api_config, "p_true"), reviews_csv)

    yes, no = token_logprob("\nYes"), token_logprob("\nNo")
    for row in rows:
        assert row.confidence == pytest.approx(1 / (1 + math.exp(no - yes)))
    asked = [r.body["prompt"] for r in fake_server.requests if r.path == "/v1/completions"]
    assert len(asked) == 2 * len(REVIEWS)  # "Yes" and "No" per row
    assert all("Proposed answer: " in p and "Is the proposed answer correct? Answer Yes or No." in p for p in asked)


def test_verbalized_parses_the_number_and_counts_what_it_cannot(fake_server, api_config, reviews_csv):
    def responder(request):
        asked = request["messages"][-1]["content"]
        if "How likely is it" not in asked:
            return default_responder(request)
        return "0.85" if "Row one" in asked or "Row two" in asked else "Very likely!"

    fake_server.responder = responder
    result, rows = run(confident(api_config, "verbalized"), reviews_csv)

    assert [r.confidence for r in rows] == [0.85, 0.85, 0.0, 0.0]
    assert [r.details.get("confidence_unparsed") for r in rows] == [None, None, "Very likely!", "Very likely!"]
    assert result.stats.unparsed_confidences == 2
    assert "verbalized confidence: 2 answers held no number in [0, 1] (scored 0.0)" in result.summary()


def test_entropy_scores_every_label_in_one_distribution(fake_server, api_config, reviews_csv):
    api_config["prompt"]["label_scoring"] = "sum"
    _, rows = run(confident(api_config, "entropy"), reviews_csv)

    logits = [token_logprob("\npositive"), token_logprob("\nnegative")]
    probs = [math.exp(v) / sum(math.exp(w) for w in logits) for v in logits]
    expected = 1 + sum(p * math.log(p) for p in probs) / math.log(2)
    assert [r.confidence for r in rows] == pytest.approx([expected] * len(REVIEWS))


def test_semantic_entropy_groups_samples_weighted_by_their_probability(fake_server, api_config, reviews_csv):
    sampled = {0: "positive", 1: "positive", 2: "Positive.", 3: "negative", 4: "positive"}

    def responder(request):
        return sampled[request["seed"]] if request.get("temperature") else default_responder(request)

    fake_server.responder = responder
    _, rows = run(confident(api_config, "semantic_entropy"), reviews_csv)

    weights = [math.exp(sum(map(token_logprob, ["Positive", "."] if s == "Positive." else [s]))) for s in sampled.values()]
    positive = sum(w for w, s in zip(weights, sampled.values()) if s != "negative") / sum(weights)
    entropy = -(positive * math.log(positive) + (1 - positive) * math.log(1 - positive))
    for row in rows:
        assert row.confidence == pytest.approx(1 - entropy / math.log(5))
        assert row.details["semantic_groups"] == 2
    samples = [r.body for r in fake_server.requests if r.body.get("temperature")]
    assert sorted(s["seed"] for s in samples) == sorted(list(range(5)) * len(REVIEWS))
    assert {s["temperature"] for s in samples} == {0.5}


def test_confidence_calls_are_cached_so_a_new_run_computes_nothing(fake_server, api_config, reviews_csv):
    config = confident(api_config, "p_true")
    first, _ = run(config, reviews_csv)
    served = fake_server.stats.requests
    config["dataset"]["max_input_chars"] = 10_000  # a new run (new run key), the same prompts

    again, rows = run(config, reviews_csv)

    assert again.stats.resumed == 0 and again.stats.model_calls == 0
    assert fake_server.stats.requests == served
    assert [r.confidence for r in rows] == [r.confidence for _, r in first.rows()]


@pytest.mark.parametrize("method", ["logprob", "p_true", "entropy"])
def test_a_verifier_that_cannot_score_flags_the_row_and_keeps_its_label(fake_server, api_config, reviews_csv, method):
    # No completions endpoint under this path: the server answers 404, as chat-only servers do.
    verifier = {"provider": "openai", "name": "fake", "base_url": fake_server.base_url + "/chat-only"}
    result, rows = run(confident(api_config, method, verifier=verifier), reviews_csv)

    for row in rows:
        assert row.label and row.confidence is None and not row.final
        assert row.error.startswith("confidence: ProviderError: confidence.verifier: this server cannot score labels")
        assert "\n" not in row.error
    assert result.stats.errors == len(REVIEWS)
