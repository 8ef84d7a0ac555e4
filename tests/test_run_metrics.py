"""The run-level confidence metrics (AUROC, ECE) against values computed by hand from the
rows' known correctness: a broken correctness check or metric must fail here."""

from __future__ import annotations

import math

import pytest

from fake_openai_server import token_logprob

from autolabel_lite import LabelingAgent

from conftest import write_csv

# Four rows answered positive (two of them wrongly), four answered negative (all rightly).
ROWS = [(f"row {n} says positive", "positive" if n < 2 else "negative") for n in range(4)] + [
    (f"row {n} says negative", "negative") for n in range(4, 8)
]


def test_run_auroc_and_ece_match_hand_computed_values(fake_server, api_config, tmp_path):
    api_config["model"]["compute_confidence"] = True
    fake_server.responder = lambda request: "positive" if "says positive" in request["messages"][-1]["content"].rsplit("label:", 1)[-1] else "negative"
    data = write_csv(tmp_path / "rows.csv", ["review", "gold"], ROWS)

    metrics = LabelingAgent(api_config).run(data, progress=False).metrics

    # logprob confidence = the probability the server gave the label's first (only) token.
    positive, negative = math.exp(token_logprob("positive")), math.exp(token_logprob("negative"))
    assert positive != negative
    # 6 right × 2 wrong pairs: the 4 right negatives beat (or lose to) both wrong positives,
    # the 2 right positives tie with them (half a pair each).
    assert metrics["auroc"] == pytest.approx((8 * (negative > positive) + 4 * 0.5) / 12)
    if int(positive * 10) != int(negative * 10):  # 10 equal-width bins
        ece = 4 / 8 * abs(2 / 4 - positive) + 4 / 8 * abs(4 / 4 - negative)
    else:
        ece = abs(6 / 8 - (4 * positive + 4 * negative) / 8)
    assert metrics["ece"] == pytest.approx(ece)
    assert metrics["accuracy"] == pytest.approx(6 / 8)
