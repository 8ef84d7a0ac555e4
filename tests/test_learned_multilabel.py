"""The learned labeler on multilabel classification: per label, does it apply? Fitted out of fold
on the config's labeled examples with all-MiniLM-L6-v2 and the classifier provider (no language
model runs here)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from autolabel_lite import LabelingAgent
from autolabel_lite.cache import Cache
from autolabel_lite.learned import LabelwiseStacker, sigmoid

from test_learned import COOKING, SPORT, label_rows

TRAVEL = [
    "We took the night train from Vienna to Venice.",
    "Our flight was delayed, so we missed the connection in Frankfurt.",
    "The hotel had a view of the harbour and the old town.",
    "Pack light: the hostel lockers are small.",
    "We rented a car to drive along the coast for a week.",
    "The ferry to the islands leaves every morning at nine.",
    "Remember to check the visa rules before you book the trip.",
    "We spent three days hiking and sleeping in mountain huts abroad.",
]
SPORT_AND_TRAVEL = [
    "The team flew to Tokyo for the away match and stayed in a hotel near the stadium.",
    "Thousands of fans travelled by train to watch the final in Madrid.",
    "We booked a trip to Wimbledon to watch the tennis and see London.",
    "The cyclists crossed the Alps by bus before the next stage of the race abroad.",
]
COOKING_AND_TRAVEL = [
    "On our holiday in Naples we learned to bake pizza in a wood oven.",
    "The street food tour in Bangkok taught us to cook green curry.",
    "During the trip to Lyon we took a cooking class and made a soufflé.",
    "We flew to Oaxaca and spent the week learning to grind mole and roast chillies.",
]
SPORT_AND_COOKING = [
    "The football team's chef cooks pasta for the players before every match.",
    "After the marathon the runners baked banana bread for recovery.",
    "The boxer grills chicken and boils rice to stay at fighting weight.",
    "The tennis star shared her recipe for a protein smoothie she drinks after training.",
]
EXAMPLES = (
    [{"text": t, "topics": "sport"} for t in SPORT[:8]]
    + [{"text": t, "topics": "cooking"} for t in COOKING[:8]]
    + [{"text": t, "topics": "travel"} for t in TRAVEL]
    + [{"text": t, "topics": "sport;travel"} for t in SPORT_AND_TRAVEL]
    + [{"text": t, "topics": "cooking;travel"} for t in COOKING_AND_TRAVEL]
    + [{"text": t, "topics": "sport;cooking"} for t in SPORT_AND_COOKING]
)
LABELS = {
    "sport": "football, tennis, races, matches and athletes",
    "cooking": "recipes, kitchens, baking and food",
    "travel": "trips, flights, hotels and holidays abroad",
}


def topics_config(examples=EXAMPLES) -> dict:
    return {
        "task_name": "topics",
        "task_type": "multilabel_classification",
        "dataset": {"input_columns": ["text"], "label_column": "topics", "label_separator": ";"},
        "model": {"provider": "classifier", "compute_confidence": True},
        "prompt": {"labels": LABELS, "few_shot_examples": examples, "few_shot_num": 0},
    }


def test_labeled_rows_get_their_label_sets_out_of_fold_with_confidence(tmp_path):
    outcomes = label_rows(topics_config(), EXAMPLES, tmp_path)

    assert all(o.details["out_of_fold"] for o in outcomes)
    predicted, gold = [o.label for o in outcomes], [e["topics"] for e in EXAMPLES]
    right = [p == g for p, g in zip(predicted, gold)]
    # Measured: 28/36 sets exactly right, micro F1 0.91; the misses are two-topic rows missing one
    # topic ("the cyclists crossed the Alps by bus": sport only) and a delayed flight called sport too.
    metrics = LabelingAgent(topics_config()).task.metrics(predicted, gold)
    assert metrics["exact_set_accuracy"] >= 0.75 and metrics["micro_f1"] >= 0.85, list(zip(predicted, gold))
    assert sum(right[:24]) >= 22  # the one-topic rows
    for outcome in outcomes:
        probs = outcome.details["label_probs"]
        assert set(probs) == set(LABELS)
        # Each label's own P(applies), not one distribution: the label set is those above 0.5.
        assert outcome.label == ";".join(label for label in LABELS if probs[label] > 0.5)
        assert 0 <= outcome.confidence <= 1 and outcome.confidence == outcome.details["learned_confidence"]
    # The correctness model ranks: right label sets are more confident on the whole than wrong ones.
    confidences, right = np.array([o.confidence for o in outcomes]), np.array(right)
    assert confidences[right].mean() > confidences[~right].mean()


def test_new_rows_get_the_right_label_sets(tmp_path):
    rows = [
        {"text": "The striker headed the ball into the net in the last minute."},
        {"text": "Simmer the lentils with cumin and garlic for twenty minutes."},
        {"text": "We booked a cheap flight and a hotel by the beach in Portugal."},
        {"text": "The national team flew to Brazil and played the qualifier in Rio."},
        {"text": "On holiday in Sicily we learned to cook fresh pasta with a local chef."},
    ]
    outcomes = label_rows(topics_config(), rows, tmp_path)
    assert [o.label for o in outcomes] == ["sport", "cooking", "travel", "sport;travel", "cooking;travel"]
    assert all("out_of_fold" not in o.details and o.confidence is not None for o in outcomes)


def test_the_export_has_one_confidence_per_label_set_and_no_per_part_column(tmp_path):
    # The learned confidence scores the whole set; the per-part column belongs to methods that score parts.
    rows = [{"text": "Bake the bread and let it cool."}, {"text": "The team won the final."}]
    result = LabelingAgent(topics_config(), cache=tmp_path / "cache.sqlite").run(rows, progress=False)
    result.to_csv(tmp_path / "out.csv")
    header = (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "text,topics_label,topics_confidence,topics_accepted,topics_error"


def test_a_planted_flip_does_not_shape_its_own_label_set(tmp_path):
    flipped = [dict(e) for e in EXAMPLES]
    flipped[0]["topics"] = "cooking;travel"  # a sport sentence, labeled wrong on purpose
    outcomes = label_rows(topics_config(flipped), flipped, tmp_path)

    planted = outcomes[0]
    assert planted.details["out_of_fold"] is True
    assert planted.label == "sport"
    probs = planted.details["label_probs"]
    assert probs["sport"] > 0.5 > max(probs["cooking"], probs["travel"])


def test_rows_predicted_ahead_in_one_batch_get_what_each_row_alone_gets(tmp_path):
    rows = [{"text": "The goalkeeper flew home after the tournament in Qatar."}, {"text": EXAMPLES[20]["text"]}]
    labeler = LabelingAgent(topics_config()).labeler(Cache(tmp_path / "cache.sqlite"))
    asyncio.run(labeler.prepare())
    candidates = list(LABELS)
    alone = [labeler.learned.predict(row, candidates, None) for row in rows]

    assert list(labeler.ahead(iter(rows))) == rows
    batched = [labeler.learned.predict(row, candidates, None) for row in rows]
    for one, many in zip(alone, batched):
        assert many.independent and one.independent
        assert many.probs == pytest.approx(one.probs, abs=1e-6)
        assert many.confidence == pytest.approx(one.confidence, abs=1e-6)


def test_zero_shot_keeps_labels_above_uniform_of_the_prototype_distribution(tmp_path):
    # Too few examples to fit: the row's similarity to each label's text, softmaxed, above 1/K.
    rows = [{"text": "The goalkeeper saved a penalty in the final."}, {"text": "Bake the bread for thirty minutes."}]
    outcomes = label_rows(topics_config(examples=None), rows, tmp_path)
    assert [o.label for o in outcomes] == ["sport", "cooking"]
    assert all(sum(o.details["label_probs"].values()) == pytest.approx(1) for o in outcomes)
    assert all("learned_confidence" not in o.details and 0 < o.confidence <= 1 for o in outcomes)


def test_the_labelwise_stacker_recovers_each_views_weight_and_balances_each_labels_cut():
    # Three labels applying to ~36% of rows: true P(applies) = sigmoid(2·view_k + llm_k − 1).
    rng = np.random.default_rng(3)
    view, llm = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3))
    y = (rng.random((4000, 3)) < sigmoid(2 * view + llm - 1)).astype(int)
    allowed = np.ones_like(view, dtype=bool)
    train, test = slice(0, 2000), slice(2000, None)

    stacker = LabelwiseStacker.fit(view[train], llm[train], allowed[train], y[train])

    assert (stacker.a, stacker.b) == pytest.approx((2.0, 1.0), rel=0.1)
    # Class-balanced: each label's offset moves from −1 towards the rarer outcome (measured −0.35…−0.37).
    assert np.all((-1 < stacker.offsets) & (stacker.offsets < 0))
    probs = stacker.proba(view[test], llm[test], allowed[test])
    assert not np.allclose(probs.sum(axis=1), 1)  # each label on its own, not one distribution
    balanced = [balanced_accuracy_score(y[test][:, k], probs[:, k] > 0.5) for k in range(3)]
    likelihood_cut = [balanced_accuracy_score(y[test][:, k], (2 * view + llm - 1)[test][:, k] > 0) for k in range(3)]
    assert np.mean(balanced) >= np.mean(likelihood_cut)


def test_the_tasks_choice_keeps_independent_probabilities_above_one_half():
    task = LabelingAgent(topics_config()).task
    labels = list(LABELS)
    assert task.choose(labels, [0.9, 0.6, 0.2], independent=True) == "sport;cooking"
    assert task.choose(labels, [0.4, 0.3, 0.1], independent=True) == ""  # no label applies
    # One distribution (the language model's scores, or the prototypes): above uniform, as before.
    assert task.choose(labels, [0.4, 0.3, 0.3]) == "sport"
