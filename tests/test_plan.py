"""plan(): prompt, token and cost estimates, seed evaluation and the saved threshold that run() applies."""

from __future__ import annotations

import json
import math

import pytest

from autolabel_lite import ConfigError, DataError, LabelingAgent
from autolabel_lite.labeler import Labeler
from autolabel_lite.cache import Cache

from conftest import REVIEWS, run_cli, write_csv


def with_threshold(config: dict, **threshold) -> dict:
    return {**config, "model": {**config["model"], "compute_confidence": True}, "threshold": threshold}


def test_plan_without_seed_shows_the_first_prompt_and_prices_heuristic_tokens(fake_server, api_config, reviews_csv):
    config = {**api_config, "model": {**api_config["model"], "pricing": {"input_per_million": 2.0, "output_per_million": 8.0}}}
    agent = LabelingAgent(config)
    plan = agent.plan(reviews_csv)

    labeler = Labeler(agent.task, agent.provider, agent.prompt_builder, agent.selector, Cache())
    prompts = [labeler.prompt_for({"review": text, "gold": gold}) for text, gold in REVIEWS]
    assert plan.prompt == prompts[0] and REVIEWS[0][0] in plan.prompt.user
    assert plan.rows == len(REVIEWS)
    # The OpenAI provider has no local tokenizer: 4 characters per token, stated as such.
    assert "4 characters per token" in plan.tokens.counted_with
    assert plan.prompt_tokens == sum(math.ceil(len(p.text) / 4) for p in prompts)
    # Generated labels: "positive" and "negative" are 2 heuristic tokens each, plus the end token.
    assert plan.tokens.output_per_row == 3.0
    assert plan.output_tokens == 3 * len(REVIEWS)
    assert plan.cost_usd == pytest.approx((plan.prompt_tokens * 2.0 + plan.output_tokens * 8.0) / 1e6)
    assert plan.seed is None and plan.threshold is None
    assert fake_server.stats.by_endpoint["chat"] == 0  # planning without seed rows labels nothing
    text = str(plan)
    assert "rows: 4" in text and f"cost: ${plan.cost_usd:,.4f}" in text


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
    assert plan["tokens"]["prompt_total"] > 0 and plan["seed"] is None
