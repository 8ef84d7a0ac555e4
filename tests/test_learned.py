"""The learned labeler (learned.py) and the ``classifier`` provider: fitted on the config's
labeled examples, out of fold, with all-MiniLM-L6-v2 (installed with the package). No
language model runs here: the classifier provider is the embedding view and the fitted head."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from autolabel_lite import LabelingAgent
from autolabel_lite.errors import ConfigError
from autolabel_lite.cache import Cache
from autolabel_lite.labeler import Labeler
from autolabel_lite.learned import Stacker, softmax
from autolabel_lite.metrics import expected_calibration_error

from conftest import read_csv, run_cli, write_csv

SPORT = [
    "The striker scored twice in the second half of the final.",
    "Our goalkeeper saved a penalty in the last minute of the match.",
    "She won the tennis tournament in straight sets.",
    "The marathon runners crossed the finish line in the rain.",
    "The coach picked a new captain for the football team.",
    "He served three aces in the opening game of the set.",
    "The home team lost the derby after extra time.",
    "The cyclist attacked on the final climb and won the stage.",
    "Fans cheered as the referee blew the final whistle.",
    "The sprinter broke the national record in the 100 metres.",
    "Their defence held firm through ninety minutes of pressure.",
    "The boxer knocked out his rival in the third round.",
]
COOKING = [
    "Knead the dough for ten minutes and let it rise.",
    "Fry the onions in butter until they turn golden.",
    "Bake the cake at 180 degrees for forty minutes.",
    "Season the soup with salt, pepper and fresh thyme.",
    "Whisk the eggs with sugar until the mixture is pale.",
    "Simmer the tomato sauce slowly for an hour.",
    "Chop the garlic finely and add it to the hot pan.",
    "Roast the vegetables with olive oil and rosemary.",
    "Stir the risotto and add the stock one ladle at a time.",
    "Let the bread cool on a rack before slicing it.",
    "Marinate the chicken overnight in yogurt and spices.",
    "Grate the cheese over the pasta just before serving.",
]
EXAMPLES = [{"text": t, "topic": "sport"} for t in SPORT] + [{"text": t, "topic": "cooking"} for t in COOKING]


def topic_config(examples=EXAMPLES, **extra) -> dict:
    return {
        "task_name": "topic",
        "task_type": "classification",
        "dataset": {"input_columns": ["text"], "label_column": "topic"},
        "model": {"provider": "classifier", "compute_confidence": True},
        "prompt": {"labels": ["sport", "cooking"], "few_shot_examples": examples, "few_shot_num": 0},
        **extra,
    }


def label_rows(config: dict, rows: list[dict], tmp_path, name="rows.csv"):
    data = write_csv(tmp_path / name, list(rows[0]), [list(r.values()) for r in rows])
    result = LabelingAgent(config).label(data, progress=False)
    return [outcome for _, outcome in result.rows()]


def test_a_labeled_rows_own_score_comes_from_a_fit_that_never_saw_its_label(tmp_path):
    flipped = [dict(e) for e in EXAMPLES]
    flipped[0]["topic"] = "cooking"  # a sport sentence, labeled wrong on purpose
    outcomes = label_rows(topic_config(flipped), flipped, tmp_path)

    planted = outcomes[0]
    # Its own (wrong) label would win if its fit had seen it; out of fold, the others outvote it.
    assert planted.label == "sport" and planted.details["out_of_fold"] is True
    assert planted.details["label_probs"]["sport"] > 0.5
    # Every other labeled row is scored out of fold too, and is labeled right.
    assert all(o.details["out_of_fold"] for o in outcomes)
    assert [o.label for o in outcomes[1:]] == [e["topic"] for e in EXAMPLES[1:]]


def test_a_new_row_is_scored_by_the_fit_on_all_examples(tmp_path):
    rows = [{"text": "The winger crossed and the striker headed it in."}, {"text": "Melt the chocolate gently over warm water."}]
    outcomes = label_rows(topic_config(), rows, tmp_path)
    assert [o.label for o in outcomes] == ["sport", "cooking"]
    assert all("out_of_fold" not in o.details for o in outcomes)
    assert all(o.confidence > 0.5 for o in outcomes)


def test_rows_predicted_ahead_in_one_batch_get_what_each_row_alone_gets(tmp_path):
    rows = [
        {"text": "The winger crossed and the striker headed it in."},
        {"text": "Melt the chocolate gently over warm water."},
        {"text": "The referee showed a red card to the defender."},
        {"text": SPORT[0]},  # a labeled example: its out-of-fold prediction
    ]
    labeler = LabelingAgent(topic_config()).labeler(Cache(tmp_path / "cache.sqlite"))
    asyncio.run(labeler.prepare())
    alone = [labeler.learned.predict(row, ["sport", "cooking"], None) for row in rows]

    assert list(labeler.ahead(iter(rows))) == rows
    assert len(labeler.learned._ahead) == len(rows)  # the classifier provider predicts each batch ahead
    batched = [labeler.learned.predict(row, ["sport", "cooking"], None) for row in rows]
    assert not labeler.learned._ahead  # each taken once
    for one, many in zip(alone, batched):
        assert many.probs == pytest.approx(one.probs, abs=1e-6)  # float32 features: a batch rounds differently
        assert many.confidence == pytest.approx(one.confidence, abs=1e-6)
        assert many.out_of_fold == one.out_of_fold


def test_the_stacker_learns_a_calibrated_distribution_on_a_synthetic_separable_set():
    # True P(label 1 | x) = sigmoid(3x); the view says sigmoid(x): overconfident at no point, underconfident everywhere.
    rng = np.random.default_rng(7)
    x = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-3 * x))).astype(int)
    view = np.log(softmax(np.column_stack([np.zeros_like(x), x])))
    allowed = np.ones_like(view, dtype=bool)
    train, test = slice(0, 2000), slice(2000, None)

    stacker = Stacker.fit(view[train], None, allowed[train], y[train])

    assert stacker.a == pytest.approx(3.0, rel=0.15)
    before = softmax(view[test])
    after = stacker.proba(view[test], None, allowed[test])
    chosen = after.argmax(axis=1)
    correct = chosen == y[test]
    ece_before = expected_calibration_error(before.max(axis=1).tolist(), (before.argmax(axis=1) == y[test]).tolist())
    ece_after = expected_calibration_error(after.max(axis=1).tolist(), correct.tolist())
    assert ece_after < 0.03 < ece_before


def test_zero_shot_prototypes_choose_the_described_label(tmp_path):
    config = topic_config(examples=None)
    config["prompt"]["labels"] = {"sport": "football, tennis, races, matches and athletes", "cooking": "recipes, kitchens, baking and food"}
    rows = [{"text": "The goalkeeper saved a penalty in the final."}, {"text": "Bake the bread for thirty minutes."}]
    outcomes = label_rows(config, rows, tmp_path)
    assert [o.label for o in outcomes] == ["sport", "cooking"]


def test_the_classifier_provider_labels_from_the_cli_with_confidence(tmp_path):
    config = tmp_path / "topic.json"
    config.write_text(json.dumps(topic_config()))
    rows = [("The referee showed a red card to the defender.", "sport"), ("Add a pinch of salt to the boiling pasta water.", "cooking")] * 3
    data = write_csv(tmp_path / "new.csv", ["text", "topic"], rows)
    completed = run_cli("run", str(config), str(data), "--no-progress", "-o", str(tmp_path / "out.csv"))
    assert completed.returncode == 0, completed.stderr
    out = read_csv(tmp_path / "out.csv")
    assert [r["topic_label"] for r in out] == [gold for _, gold in rows]
    assert all(0.5 < float(r["topic_confidence"]) <= 1 for r in out)
    assert "metrics: accuracy: 1.0000" in completed.stderr and "model calls: 0" in completed.stderr


def test_the_classifier_provider_refuses_a_task_it_cannot_learn(tmp_path):
    config = topic_config()
    config.update(task_type="question_answering", dataset={"input_columns": ["context", "question"], "label_column": "topic"})
    config["prompt"] = {}
    with pytest.raises(ConfigError, match=r"^learning.enabled: it applies to classification, entity_matching and multilabel_classification tasks, not question_answering"):
        LabelingAgent(config).label(write_csv(tmp_path / "q.csv", ["context", "question"], [("a", "b")]), progress=False)


def test_saved_threshold_is_reused_by_run_and_refused_after_the_examples_change(tmp_path):
    seed_rows = [{"text": t, "topic": "sport"} for t in SPORT[:6]] + [{"text": t, "topic": "cooking"} for t in COOKING[:6]]
    seed = write_csv(tmp_path / "seed.csv", ["text", "topic"], [list(r.values()) for r in seed_rows])
    config = topic_config(threshold={"policy": "target_accuracy", "target": 0.7})
    agent = LabelingAgent(config)

    plan = agent.plan(seed, seed=seed, plot=tmp_path / "plan.png", progress=False)
    result = agent.run(seed, progress=False)

    assert result.threshold == plan.threshold and result.stats.model_calls == 0
    planned = plan.seed.decision.point.accepted
    assert sum(1 for _, outcome in result.rows() if outcome.confidence >= plan.threshold) == planned
    assert planned > 0 and np.isfinite(plan.threshold)
    changed = topic_config(EXAMPLES[:-1], threshold={"policy": "target_accuracy", "target": 0.7})
    with pytest.raises(ConfigError, match="plan"):
        LabelingAgent(changed).run(seed, progress=False)


def test_entity_matching_compares_the_two_records_not_one_text_of_both(tmp_path):
    config = {
        "task_name": "match",
        "task_type": "entity_matching",
        "dataset": {"input_columns": ["product_a", "product_b"], "label_column": "match"},
        "model": {"provider": "classifier"},
    }
    agent = LabelingAgent(config)
    labeler = Labeler(agent.task, agent.provider, agent.prompt_builder, agent.selector, Cache(tmp_path / "c.sqlite"))
    features = labeler.learned.features
    assert features.pairs and features.records == (["product_a"], ["product_b"])
    a, b, c = "Acme K-200 drill 18V", "ACME K200 drill 18v", "Acme K-300 drill 18V"
    same, other_model, swapped = features(
        [{"product_a": a, "product_b": b}, {"product_a": a, "product_b": c}, {"product_a": b, "product_b": a}]
    )
    # One row of scalar features per pair: embedding cosine, word Jaccard, word containment,
    # trigram Jaccard, model-number Jaccard, model numbers on one side only.
    assert same.shape == (6,)
    assert same[0] > 0.9 and same[1] == 1.0 and same[4] == 1.0 and same[5] == 0.0
    assert other_model[4] == pytest.approx(1 / 3) and other_model[5] == 1.0
    # The features compare the records: swapping them changes nothing.
    assert swapped == pytest.approx(same, abs=1e-6)
