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
        # Either a label from the set, or no label and a reason: never a silent gap.
        if res.label:
            assert res.label in LABELS and res.error == ""
        else:
            assert res.error.endswith("matches no label")


def test_packed_label_scoring_with_a_reused_prefix_equals_plain_forward_passes():
    # The two speed-ups of local scoring, checked against the plainest computation: one
    # full forward pass of prompt + label per label, no cache, no mask.
    import asyncio

    import torch

    agent = LabelingAgent(SENTIMENT_CONFIG)
    provider = agent.provider
    labels = ["positive", "negative", "not sure at all", "very positive indeed"]  # multi-token: the mask matters
    rows = [{"review": "Great value, works as described."}, {"review": "Stopped working after a week."}]
    examples = [agent.prompt_builder.render_example(e) for e in agent.examples]
    prompts = [agent.prompt_builder.render(row, examples) for row in rows]

    async def score_in_turn():  # the second row reuses the first row's prefix
        return [await provider.score(prompt, labels) for prompt in prompts]

    scored = asyncio.run(score_in_turn())

    tokenizer, model = provider._tokenizer, provider._model
    for prompt, scores in zip(prompts, scored):
        ids = provider._prompt_ids(prompt)
        for label, score in zip(labels, scores):
            label_ids = tokenizer(label, add_special_tokens=False).input_ids
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([ids + label_ids])).logits[0].float()
            expected = torch.log_softmax(logits, dim=-1)[len(ids) - 1 : -1].gather(1, torch.tensor(label_ids)[:, None])[:, 0]
            assert score.tokens == tokenizer.convert_ids_to_tokens(label_ids)
            assert score.logprobs == pytest.approx(expected.tolist(), abs=1e-4)
