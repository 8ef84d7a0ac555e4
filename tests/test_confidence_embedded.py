"""Confidence end to end with the embedded model (SmolLM2-135M-Instruct, offline) on two rows.

These check the pipeline, never the quality of the scores: the model is tiny.
"""

from __future__ import annotations

import math

import pytest

from autolabel_lite import LabelingAgent

from conftest import LABELS, read_csv, write_csv

pytestmark = pytest.mark.model

ROWS = [("I love it, five stars.", "positive"), ("Broken on arrival, refund please.", "negative")]


def sentiment_config(method: str, **options) -> dict:
    return {
        "task_name": "sentiment",
        "dataset": {"input_columns": ["review"], "label_column": "gold"},
        "model": {"provider": "embedded", "compute_confidence": True},
        "prompt": {"task_guidelines": "Classify the sentiment of the review.", "labels": LABELS, "max_output_tokens": 8},
        "confidence": {"method": method, **options},
    }


def test_every_method_scores_real_labels_and_a_rerun_computes_nothing(tmp_path):
    data = write_csv(tmp_path / "reviews.csv", ["review", "gold"], ROWS)
    options = {"semantic_entropy": {"samples": 2}}

    for method in ("logprob", "p_true", "verbalized", "entropy", "semantic_entropy"):
        result = LabelingAgent(sentiment_config(method, **options.get(method, {}))).run(data, progress=False)
        rows = [r for _, r in result.rows()]

        for row in rows:
            assert row.label in LABELS and row.error == "", (method, row)
            assert row.confidence is not None, (method, row)  # values: tests/test_transformers_tiny.py
        if method == "logprob":  # the chosen label's probability in the (learned) distribution that chose it
            assert [r.confidence for r in rows] == pytest.approx([r.details["label_probs"][r.label] for r in rows])
            assert all(r.details["label_probs"][r.label] == max(r.details["label_probs"].values()) for r in rows)
        if method == "entropy":  # the labeling pass's label distribution, reused
            for row in rows:
                probs = list(row.details["label_probs"].values())
                assert row.confidence == pytest.approx(1 + sum(p * math.log(p) for p in probs) / math.log(2))
        if method == "semantic_entropy":
            assert all("semantic_groups" in r.details for r in rows)  # 2 samples make 1 or 2 groups
        assert {"accuracy", "auroc", "ece"} <= set(result.metrics)

        result.to_csv(tmp_path / f"{method}.csv")
        assert all(row["sentiment_confidence"] for row in read_csv(tmp_path / f"{method}.csv"))

        config = sentiment_config(method, **options.get(method, {}))
        config["dataset"]["max_input_chars"] = 10_000  # a new run of the same prompts
        again = LabelingAgent(config).run(data, progress=False)
        assert again.stats.model_calls == 0, method
        assert [r.confidence for _, r in again.rows()] == [r.confidence for r in rows]


def test_a_local_verifier_scores_labels_from_a_server(fake_server, tmp_path):
    data = write_csv(tmp_path / "reviews.csv", ["review", "gold"], [("Row one: positive.", "positive"), ("Row two: negative.", "negative")])
    config = sentiment_config("logprob", verifier={"provider": "embedded"})
    config["model"] = {"provider": "openai", "name": "fake", "base_url": fake_server.base_url, "compute_confidence": True}

    result = LabelingAgent(config).run(data, progress=False)

    rows = [r for _, r in result.rows()]
    assert [r.label for r in rows] == ["positive", "negative"]
    assert all(0.0 < r.confidence < 1.0 and r.error == "" for r in rows)
    # The server labeled (chat) and was never asked to score; the local verifier teacher-forced the labels.
    assert fake_server.stats.by_endpoint == {"chat": 2}
    assert result.stats.model_calls == 4
