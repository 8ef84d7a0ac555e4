"""The ``openai`` provider through the real ``openai`` client over HTTP, against the fake server:
chat completions with logprobs, retries on transient faults, bounded retries on permanent ones."""

from __future__ import annotations

import copy
import json
import sqlite3

import pytest
from fake_openai_server import token_logprob, tokenize

from autolabel_lite import LabelingAgent
from autolabel_lite.cli import main

from conftest import LABELS, REVIEWS, read_csv

EXPECTED_LABELS = [label for _, label in REVIEWS]


def with_model(config: dict, **model) -> dict:
    changed = copy.deepcopy(config)
    changed["model"].update(model)
    return changed


def run_cli(config: dict, data, tmp_path, *flags: str) -> tuple[int, list[dict[str, str]]]:
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    output = tmp_path / "labeled.csv"
    status = main(["run", str(config_path), str(data), "--output", str(output), "--no-progress", *flags])
    return status, read_csv(output) if output.exists() else []


def test_chat_completions_ask_for_and_keep_logprobs(fake_server, api_config, reviews_csv, cache_path):
    result = LabelingAgent(api_config).run(reviews_csv, progress=False)

    requests = fake_server.requests
    assert len(requests) == len(REVIEWS)
    for request in requests:
        assert request.path == "/v1/chat/completions"
        assert request.body["model"] == "fake-model"
        assert request.body["logprobs"] is True and request.body["top_logprobs"] == 5
    # Each row's prompt reached the server with the row in the user message.
    sent = sorted(request.body["messages"][-1]["content"] for request in requests)
    assert all(any(review in content for content in sent) for review, _ in REVIEWS)

    rows = list(result.rows())
    assert [res.label for _, res in rows] == EXPECTED_LABELS
    for _, res in rows:
        assert res.error == ""
        assert res.details["raw_output"] == res.label
        assert res.details["tokens"] == tokenize(res.label)
        assert res.details["logprobs"] == [pytest.approx(token_logprob(t)) for t in tokenize(res.label)]

    # The cache keeps the alternatives too (top_logprobs), for the confidence methods.
    with sqlite3.connect(cache_path) as connection:
        stored = [json.loads(value) for (value,) in connection.execute("SELECT value FROM model_calls")]
    assert len(stored) == len(REVIEWS)
    for generation in stored:
        assert len(generation["top_logprobs"]) == len(generation["tokens"])
        first = generation["top_logprobs"][0]
        assert len(first) == 5 and generation["tokens"][0] in first


@pytest.mark.parametrize("fault", ["429", "503", "drop", "timeout", "malformed", "empty_choices"])
def test_transient_fault_is_retried_and_the_row_labeled(fake_server, api_config, reviews_csv, tmp_path, fault):
    fake_server.script = [fault, "ok"]  # the first request fails once; Retry-After: 0 on the 429
    fake_server.hang_seconds = 5

    status, rows = run_cli(with_model(api_config, timeout=1.0), reviews_csv, tmp_path)

    assert status == 0
    assert [r["sentiment_label"] for r in rows] == EXPECTED_LABELS
    assert all(r["sentiment_error"] == "" and r["sentiment_accepted"] == "true" for r in rows)
    assert fake_server.stats.faults[fault] == 1
    assert fake_server.stats.by_endpoint["chat"] == len(REVIEWS) + 1


@pytest.mark.parametrize(
    ("fault", "attempts", "reason"),
    [
        ("500", 3, "HTTP 500 from the model server"),
        ("malformed", 3, "malformed JSON from the model server"),
        ("empty_choices", 3, "model server returned no choices"),
    ],
)
def test_permanent_fault_flags_the_row_and_the_run_goes_on(fake_server, api_config, reviews_csv, tmp_path, fault, attempts, reason):
    # One request at a time, so the first row gets every scripted fault.
    fake_server.script = [fault] * attempts
    config = with_model(api_config, max_retries=2, concurrency=1)

    status, rows = run_cli(config, reviews_csv, tmp_path, "--rejected", str(tmp_path / "rejected.csv"))

    assert status == 0
    assert len(rows) == len(REVIEWS)
    failed, *labeled = rows
    assert failed["review"] == REVIEWS[0][0]
    assert (failed["sentiment_label"], failed["sentiment_accepted"], failed["sentiment_error"]) == ("", "false", reason)
    assert [r["sentiment_label"] for r in labeled] == EXPECTED_LABELS[1:]
    assert all(r["sentiment_error"] == "" for r in labeled)
    # Retries are bounded: max_retries + 1 attempts for a retryable fault, one for the rest.
    assert fake_server.stats.faults[fault] == attempts
    assert fake_server.stats.by_endpoint["chat"] == attempts + len(labeled)
    assert [r["review"] for r in read_csv(tmp_path / "rejected.csv")] == [REVIEWS[0][0]]


def test_a_client_error_is_not_retried(fake_server, api_config, reviews_csv, tmp_path):
    config = with_model(api_config, max_retries=2)
    config["model"]["params"] = {"temperature": 5}  # the server answers 400: out of range

    status, rows = run_cli(config, reviews_csv, tmp_path)

    assert status == 0
    assert {r["sentiment_error"] for r in rows} == {"HTTP 400 from the model server"}
    assert fake_server.stats.by_endpoint["chat"] == len(REVIEWS)  # one attempt per row


def test_failed_row_is_retried_by_the_next_run(fake_server, api_config, reviews_csv):
    fake_server.script = ["500"] * 3
    config = with_model(api_config, max_retries=2, concurrency=1)
    first = LabelingAgent(config).run(reviews_csv, progress=False)
    assert first.stats.errors == 1

    again = LabelingAgent(config).run(reviews_csv, progress=False)

    assert again.stats.resumed == len(REVIEWS) - 1
    assert again.stats.model_calls == 1
    assert [res.label for _, res in again.rows()] == EXPECTED_LABELS
    assert all(res.error == "" for _, res in again.rows())


def test_output_matching_no_label_is_flagged_not_dropped(fake_server, api_config, reviews_csv, tmp_path):
    fake_server.responder = lambda request: "I would rather not say."

    status, rows = run_cli(api_config, reviews_csv, tmp_path)

    assert status == 0
    assert [r["review"] for r in rows] == [review for review, _ in REVIEWS]
    for row in rows:
        assert (row["sentiment_label"], row["sentiment_accepted"]) == ("", "false")
        assert row["sentiment_error"] == "output 'I would rather not say.' matches no label"


def test_label_scoring_through_completions_with_echo(fake_server, api_config, reviews_csv):
    config = copy.deepcopy(api_config)
    config["prompt"]["labeling_mode"] = "score"

    result = LabelingAgent(config).run(reviews_csv, progress=False)

    assert result.stats.errors == 0
    # The fake server's logprobs depend on the label's tokens only, never on the prompt, so
    # contextual calibration divides out exactly what the row's scores hold: no label is preferred.
    assert token_logprob("\npositive") != token_logprob("\nnegative")  # uncalibrated, they would not tie
    for _, res in result.rows():
        assert res.details["label_probs"] == pytest.approx({label: 0.5 for label in LABELS})
    for request in fake_server.requests:
        assert request.body["echo"] is True and request.body["max_tokens"] == 0
    # One request per label per row, plus the content-free calibration prompts scored once per run.
    content_free_prompts = 3
    assert fake_server.stats.by_endpoint == {"completions": len(LABELS) * (len(REVIEWS) + content_free_prompts)}
