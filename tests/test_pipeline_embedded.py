"""The embedded model (SmolLM2-135M-Instruct, offline) labels a few rows end to end.

These check pipeline behaviour, never accuracy: the model is tiny.
"""

from __future__ import annotations

import json

import pytest

from autolabel_lite import LabelingAgent
from autolabel_lite.cli import main

from conftest import LABELS, REPO, read_csv, write_csv

pytestmark = pytest.mark.model

SENTIMENT_CONFIG = REPO / "task_configs" / "sentiment.json"
EXAMPLE_DATA = REPO / "examples" / "sentiment" / "reviews.csv"
OUTPUT_COLUMNS = ["sentiment_label", "sentiment_confidence", "sentiment_accepted", "sentiment_error"]


def test_cli_labels_the_example_and_a_rerun_makes_no_model_calls(tmp_path, capsys):
    output = tmp_path / "labeled.csv"

    status = main(["run", str(SENTIMENT_CONFIG), str(EXAMPLE_DATA), "--output", str(output), "--max-rows", "4", "--no-progress"])

    assert status == 0
    summary = capsys.readouterr().err
    assert "rows: 4  labeled: 4  errors: 0" in summary
    assert "accuracy:" in summary  # the example has a ground-truth column
    inputs = read_csv(EXAMPLE_DATA)[:4]
    rows = read_csv(output)
    assert list(rows[0]) == [*inputs[0], *OUTPUT_COLUMNS]
    assert [{k: r[k] for k in inputs[0]} for r in rows] == inputs
    for row in rows:
        assert row["sentiment_label"] in LABELS
        assert row["sentiment_error"] == ""
        assert row["sentiment_accepted"] in ("true", "false")

    again = LabelingAgent(SENTIMENT_CONFIG).run(EXAMPLE_DATA, max_rows=4, progress=False)
    again.to_csv(tmp_path / "again.csv")

    assert again.stats.model_calls == 0
    assert again.stats.resumed == 4
    assert read_csv(tmp_path / "again.csv") == rows


def test_free_generation_is_mapped_onto_the_labels_or_flagged(tmp_path):
    data = write_csv(tmp_path / "reviews.csv", ["review"], [("I love it, five stars.",), ("Broken on arrival, refund please.",)])
    config = json.loads(SENTIMENT_CONFIG.read_text())
    config["prompt"].update(labeling_mode="generate", max_output_tokens=8)

    result = LabelingAgent(config).run(data, progress=False)

    assert result.stats.model_calls == 2
    for _, res in result.rows():
        assert res.details["raw_output"].strip()
        assert len(res.details["tokens"]) == len(res.details["logprobs"]) <= 8
        assert all(lp <= 0 for lp in res.details["logprobs"])
        # Either a label from the set, or no label and a reason: never a silent gap.
        if res.label:
            assert res.label in LABELS and res.error == ""
        else:
            assert res.error.endswith("matches no label")
