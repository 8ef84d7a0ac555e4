"""plan(): prompt, token and cost estimates, seed evaluation and the saved threshold that run() applies."""

from __future__ import annotations

import json
import math

import pytest

from autolabel_lite import ConfigError, DataError, LabelingAgent

from conftest import REPO, REVIEWS, read_csv, run_cli, write_csv


def with_threshold(config: dict, **threshold) -> dict:
    return {**config, "model": {**config["model"], "compute_confidence": True}, "threshold": threshold}


def test_plan_without_seed_shows_the_first_prompt_and_prices_heuristic_tokens(fake_server, api_config, reviews_csv):
    config = {**api_config, "model": {**api_config["model"], "pricing": {"input_per_million": 2.0, "output_per_million": 8.0}}}
    agent = LabelingAgent(config)
    plan = agent.plan(reviews_csv)

    assert plan.prompt.system is None
    assert plan.prompt.user == (
        "Classify the sentiment of the review.\n\n"
        "Choose exactly one of these labels:\n- positive\n- negative\n\n"
        "Now the input to label:\nreview: Row one: a positive experience overall.\nOutput:"
    )
    assert plan.rows == len(REVIEWS)
    # The OpenAI provider has no local tokenizer: 4 characters per token, stated as such.
    assert "heuristic of 4 characters per token" in plan.tokens.counted_with
    # The four prompts (with the trailing newline of a plain-text prompt) are 178, 175, 176 and
    # 178 characters long: ceil(n / 4) = 45 + 44 + 44 + 45.
    assert plan.prompt_tokens == 178
    # Generated labels: "positive" and "negative" are 2 heuristic tokens each, plus the end token.
    assert plan.tokens.output_per_row == 3.0
    assert plan.output_tokens == 3 * len(REVIEWS)
    assert plan.cost_usd == pytest.approx((178 * 2.0 + 12 * 8.0) / 1e6)
    assert plan.seed is None and plan.threshold is None
    assert fake_server.stats.by_endpoint["chat"] == 0  # planning without seed rows labels nothing
    text = str(plan)
    assert plan.model_text is None and "the messages as sent (the server applies its chat template)" in text
    assert "rows: 4" in text and "cost: $0.0005" in text


def test_plan_without_pricing_says_the_cost_is_unknown(fake_server, api_config, reviews_csv):
    plan = LabelingAgent(api_config).plan(reviews_csv, max_rows=2)
    assert plan.rows == 2 and plan.cost_usd is None
    assert "cost: unknown (set model.pricing)" in str(plan)


def test_seed_file_without_the_ground_truth_column_fails_before_labeling(fake_server, api_config, reviews_csv, tmp_path):
    seed = write_csv(tmp_path / "seed.csv", ["review"], [(text,) for text, _ in REVIEWS])
    with pytest.raises(DataError, match=r"seed\.csv: missing ground-truth column 'gold'"):
        LabelingAgent(api_config).plan(reviews_csv, seed=seed)
    assert fake_server.stats.by_endpoint["chat"] == 0


def test_run_with_target_accuracy_and_no_tuned_threshold_fails_before_labeling(fake_server, api_config, reviews_csv):
    agent = LabelingAgent(with_threshold(api_config, policy="target_accuracy", target=0.9))
    with pytest.raises(ConfigError, match=r"^threshold: policy 'target_accuracy' needs a threshold tuned on labeled seed rows; run `autolabel-lite plan"):
        agent.run(reviews_csv, progress=False)
    assert fake_server.stats.requests == 0


def test_cli_plan_json_is_strict_json(fake_server, api_config, reviews_csv, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(api_config))
    completed = run_cli("plan", str(config), str(reviews_csv), "--json")
    assert completed.returncode == 0, completed.stderr
    plan = json.loads(completed.stdout, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert plan["rows"] == len(REVIEWS) and REVIEWS[0][0] in plan["prompt"]["user"]
    assert plan["tokens"]["prompt_total"] == 178 and plan["seed"] is None  # as in the test above


# -- seed rows, the saved threshold and run() ------------------------------------------

TOPICS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett", "kilo", "lima"]


def topics_config(base_url: str, **threshold) -> dict:
    config = {
        "task_name": "topics",
        "dataset": {"input_columns": ["text"], "label_column": "gold"},
        "model": {"provider": "openai", "name": "fake-model", "base_url": base_url, "compute_confidence": True},
        "prompt": {"labels": TOPICS},
    }
    return {**config, "threshold": threshold} if threshold else config


@pytest.fixture
def topics(fake_server, tmp_path):
    """60 rows the fake server labels with the topic each names, and each row's confidence.

    The fake server's confidence depends on the label's tokens only: one confidence per topic.
    """
    texts = [f"Message {i} is about {TOPICS[i % len(TOPICS)]}." for i in range(60)]
    data = write_csv(tmp_path / "topics.csv", ["text"], [(t,) for t in texts])
    result = LabelingAgent(topics_config(fake_server.base_url)).label(data, progress=False)
    confidence = [r.confidence for _, r in result.rows()]
    assert all(c is not None for c in confidence) and len(set(confidence)) >= 8
    return texts, confidence


def seed_where_right(tmp_path, texts, confidence, cutoff: float):
    """A seed file whose gold labels agree with the model exactly on rows with confidence >= cutoff."""
    rows = []
    for i, (text, value) in enumerate(zip(texts, confidence)):
        said = TOPICS[i % len(TOPICS)]
        rows.append((text, said if value >= cutoff else TOPICS[(i + 1) % len(TOPICS)]))
    return write_csv(tmp_path / "seed.csv", ["text", "gold"], rows)


def test_plan_tunes_target_accuracy_and_run_rejects_exactly_the_rows_below_it(fake_server, topics, tmp_path):
    texts, confidence = topics
    levels = sorted(set(confidence), reverse=True)
    # Right above the cutoff (>= 29 rows, enough to prove 90% at 95%), wrong below it.
    cutoff = next(level for level in levels if sum(c >= level for c in confidence) >= 35)
    kept = sum(c >= cutoff for c in confidence)
    seed = seed_where_right(tmp_path, texts, confidence, cutoff)
    agent = LabelingAgent(topics_config(fake_server.base_url, policy="target_accuracy", target=0.9, confidence_level=0.95))

    plan = agent.plan(seed, seed=seed, plot=tmp_path / "plan.png", progress=False)

    report = plan.seed
    assert plan.threshold == cutoff
    assert (report.decision.point.accepted, report.decision.point.correct) == (kept, kept)
    assert report.decision.lower_bound == pytest.approx(0.05 ** (1 / kept))
    assert report.accuracy == pytest.approx(kept / len(texts))
    assert report.auroc == 1.0  # every right label is more confident than every wrong one
    assert report.saved.is_file() and report.plot == (tmp_path / "plan.png").resolve() and report.plot.stat().st_size > 0
    chosen_rows = [p for p in report.table if p.threshold == cutoff]
    assert len(chosen_rows) == 1 and f"{cutoff:.4g}  " in str(plan) and "<- chosen" in str(plan)
    assert fake_server.stats.by_endpoint["chat"] == len(texts)  # the fixture's calls only: plan reused them from the cache

    result = agent.run(seed, progress=False)
    result.to_csv(tmp_path / "out.csv")
    out = read_csv(tmp_path / "out.csv")
    assert result.threshold == cutoff
    assert [row["topics_accepted"] == "true" for row in out] == [float(row["topics_confidence"]) >= cutoff for row in out]
    assert sum(row["topics_accepted"] == "true" for row in out) == kept
    summary = result.summary()
    assert f"threshold: {cutoff:.4g} (target_accuracy; tuned by plan on {len(texts)} seed rows" in summary
    assert f"accepted: {kept} of {len(texts)} rows" in summary
    assert "accepted quality: accuracy: 1.0000" in summary


def test_a_changed_policy_needs_a_new_plan(fake_server, topics, tmp_path):
    texts, confidence = topics
    seed = seed_where_right(tmp_path, texts, confidence, sorted(confidence)[len(confidence) // 2])
    LabelingAgent(topics_config(fake_server.base_url, policy="target_accuracy", target=0.9)).plan(seed, seed=seed, progress=False)
    stricter = LabelingAgent(topics_config(fake_server.base_url, policy="target_accuracy", target=0.95))
    with pytest.raises(ConfigError, match="none is saved for this config and model"):
        stricter.run(seed, progress=False)
    # Speed settings do not invalidate a tuning.
    faster = LabelingAgent(topics_config(fake_server.base_url, policy="target_accuracy", target=0.9), concurrency=2)
    assert faster.run(seed, progress=False).decision.how.startswith("tuned by plan")


def test_target_completion_without_a_plan_uses_the_runs_own_rows(fake_server, topics, tmp_path):
    texts, confidence = topics
    data = tmp_path / "topics.csv"
    result = LabelingAgent(topics_config(fake_server.base_url, policy="target_completion", target=0.5)).run(data, progress=False)
    ranked = sorted(confidence, reverse=True)
    # The strictest threshold that keeps half the rows: ties may keep a few more.
    expected = next(level for level in sorted(set(confidence), reverse=True) if sum(c >= level for c in confidence) >= 30)
    assert result.threshold == expected and expected == ranked[29]
    accepted, _ = result.acceptance()
    assert accepted == sum(c >= expected for c in confidence) >= 30
    assert "on this run's rows (no threshold tuned by plan)" in result.summary()


def test_calibrated_threshold_applies_to_calibrated_confidence_in_run_and_csv(fake_server, topics, tmp_path):
    texts, confidence = topics
    seed = seed_where_right(tmp_path, texts, confidence, sorted(confidence)[len(confidence) // 2])
    agent = LabelingAgent(topics_config(fake_server.base_url, policy="fixed", value=0.5, calibrate="isotonic"))
    plan = agent.plan(seed, seed=seed, progress=False)
    calibration = plan.seed.decision.calibration
    assert calibration.method == "isotonic" and plan.seed.ece_calibrated is not None
    assert "ECE after isotonic calibration" in str(plan)

    result = agent.run(seed, progress=False)
    result.to_csv(tmp_path / "out.csv")
    for row, raw in zip(read_csv(tmp_path / "out.csv"), confidence):
        calibrated = float(calibration.apply(raw))
        assert float(row["topics_confidence"]) == pytest.approx(calibrated, abs=1e-6)
        assert (row["topics_accepted"] == "true") == (calibrated >= 0.5)


def test_cli_run_splits_accepted_and_rejected_rows(fake_server, topics, tmp_path):
    texts, confidence = topics
    value = sorted(confidence)[len(confidence) // 2]
    config = tmp_path / "config.json"
    config.write_text(json.dumps(topics_config(fake_server.base_url, policy="fixed", value=value)))
    data = tmp_path / "topics.csv"
    completed = run_cli(
        "run", str(config), str(data), "--no-progress", "--only-accepted", "-o", str(tmp_path / "accepted.csv"), "--rejected", str(tmp_path / "rejected.csv")
    )
    assert completed.returncode == 0, completed.stderr
    accepted, rejected = read_csv(tmp_path / "accepted.csv"), read_csv(tmp_path / "rejected.csv")
    assert len(accepted) == sum(c >= value for c in confidence) and len(rejected) == len(texts) - len(accepted)
    assert all(row["topics_accepted"] == "true" and float(row["topics_confidence"]) >= value for row in accepted)
    assert all(row["topics_accepted"] == "false" and float(row["topics_confidence"]) < value for row in rejected)
    assert sorted(row["text"] for row in accepted + rejected) == sorted(texts)
    assert f"threshold: {value:.4g} (fixed; fixed at {value:g} by the config)" in completed.stderr
    assert f"wrote {len(accepted)} rows to" in completed.stderr and f"wrote {len(rejected)} rejected rows to" in completed.stderr


def test_cli_plan_prints_table_recommendation_and_plot(fake_server, topics, tmp_path):
    texts, confidence = topics
    seed = seed_where_right(tmp_path, texts, confidence, sorted(confidence)[len(confidence) // 2])
    config = tmp_path / "config.json"
    config.write_text(json.dumps(topics_config(fake_server.base_url, policy="target_completion", target=0.8)))
    completed = run_cli("plan", str(config), str(seed), "--seed", "40", "--no-progress")  # the first 40 rows of DATA
    assert completed.returncode == 0, completed.stderr
    assert f"seed: 40 labeled rows from the first 40 rows of {seed}" in completed.stdout
    assert "threshold  completion  accepted  accuracy" in completed.stdout
    assert "recommended threshold: " in completed.stdout and "saved for run: " in completed.stdout
    plot = tmp_path / "seed_topics_plan.png"
    assert f"plot: {plot}" in completed.stdout and plot.is_file()


@pytest.mark.model
def test_embedded_model_plan_on_seed_rows_then_run_applies_the_saved_threshold(tmp_path):
    config = json.loads((REPO / "task_configs" / "sentiment.json").read_text())
    config["model"]["compute_confidence"] = True
    config["threshold"] = {"policy": "target_completion", "target": 0.5}
    data = REPO / "examples" / "sentiment" / "reviews.csv"
    agent = LabelingAgent(config)

    plan = agent.plan(data, seed=6, plot=tmp_path / "plan.png", progress=False)

    assert plan.tokens.counted_with == "SmolLM2-135M-Instruct tokenizer" and plan.cost_usd == 0.0
    # What the model reads: SmolLM2's chat template, which adds its own system line when the config has none.
    assert plan.prompt.system is None
    assert plan.model_text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        f"<|im_start|>user\n{plan.prompt.user}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert "as the model reads it" in str(plan) and "<|im_start|>assistant" in str(plan)
    assert plan.rows == len(read_csv(data)) and plan.prompt_tokens > plan.rows * 20
    report = plan.seed
    assert (report.rows, report.errors, report.with_confidence) == (6, 0, 6)
    assert report.ece is not None and report.table and report.plot.is_file() and report.saved.is_file()
    assert report.decision.point.accepted >= 3 and math.isfinite(plan.threshold)

    result = agent.run(data, max_rows=6, progress=False)
    result.to_csv(tmp_path / "out.csv")
    rows = read_csv(tmp_path / "out.csv")
    assert result.stats.model_calls == 0  # plan labeled these very rows
    assert result.threshold == plan.threshold
    assert [r["sentiment_accepted"] == "true" for r in rows] == [float(r["sentiment_confidence"]) >= plan.threshold for r in rows]
    assert sum(r["sentiment_accepted"] == "true" for r in rows) == report.decision.point.accepted
