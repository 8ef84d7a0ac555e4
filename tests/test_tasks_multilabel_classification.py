"""Multilabel classification: parsing label lists, choosing labels from scores, and
micro/macro F1 and exact-set accuracy checked against values computed by hand."""

from __future__ import annotations

import pytest

from autolabel_lite.config import load_config
from autolabel_lite.errors import ConfigError
from autolabel_lite.tasks import get_task_class

LABELS = ["billing", "shipping", "technical"]


def make_task(separator: str = ";"):
    config = load_config(
        {
            "task_name": "topics",
            "task_type": "multilabel_classification",
            "dataset": {"input_columns": ["message"], "label_separator": separator},
            "prompt": {"labels": LABELS},
        }
    )
    return get_task_class(config.task_type)(config)


@pytest.fixture
def task():
    return make_task()


@pytest.mark.parametrize(
    "dataset, prompt, message",
    [
        ({}, {}, "prompt.labels: must be a non-empty list of strings"),
        ({"label_separator": " "}, {"labels": LABELS}, "dataset.label_separator: must contain a non-space character"),
        ({"label_separator": "-"}, {"labels": ["log-in", "other"]}, "dataset.label_separator: '-' occurs in label 'log-in'"),
    ],
)
def test_config_errors(dataset, prompt, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        load_config({"task_name": "t", "task_type": "multilabel_classification", "dataset": dataset, "prompt": prompt})


@pytest.mark.parametrize(
    "output, label, error",
    [
        ("billing;shipping", "billing;shipping", None),
        ("Shipping ; BILLING", "billing;shipping", None),  # label-set order, the set's spelling
        ("technical, billing", "billing;technical", None),  # the model ignored the separator
        ("Labels: billing\nshipping", "billing;shipping", None),
        ("billing; billing", "billing", None),
        ("None", "", None),  # no label applies
        ("billing; refunds", "billing", "1 part of the output matches no label: 'refunds'"),
        # Captured from the embedded model (SmolLM2-135M) labeling examples/multilabel_classification with
        # task_configs/multilabel_classification.json in labeling_mode "generate".
        (
            "The topics are:\n- billing;shipping\n- technical;the app crashing\n- billing;the app crashes when I open my invoice",
            "billing;shipping;technical",
            "2 parts of the output match no label: 'the app crashing', 'the app crashes when I open m…'",
        ),
        (
            "The input to the label is:\n\nMessage: I can't log in since the last update.\nTopics:",
            "",
            "1 part of the output matches no label: \"Message: I can't log in since…\"",
        ),
        (
            "The message is:\n\nMessage: Thanks, the package arrived early!\n\nThe input to label:\n\n"
            "Message: Thanks, the package arrived early!\nTopics:",
            "",
            "4 parts of the output match no label: 'Message: Thanks', 'the package arrived early!', 'Message: Thanks', …",
        ),
    ],
)
def test_label_lists_are_parsed(task, output, label, error):
    assert (task.parse(output, {}).label, task.parse(output, {}).error) == (label, error)


def test_configured_separator_is_used_for_output_and_ground_truth():
    task = make_task("|")
    assert task.parse("technical | billing", {}).label == "billing|technical"
    assert task.example_label("shipping|billing") == "billing|shipping"
    assert task.is_correct("billing|shipping", "shipping | billing")


def test_scored_labels_above_uniform_are_kept(task):
    assert task.choose(LABELS, [0.5, 0.4, 0.1]) == "billing;shipping"
    assert task.choose(LABELS, [0.2, 0.7, 0.1]) == "shipping"
    assert task.confidence_parts("billing;shipping") == ["billing", "shipping"]


def test_metrics_match_hand_computed_values(task):
    predicted = ["billing", "technical;billing", "shipping", "", "shipping"]
    gold = ["billing;shipping", "technical", "shipping", "", "refunds"]
    # micro: TP 3 (billing, technical, shipping), FP 2 (billing row 2, shipping row 5), FN 2 (shipping row 1,
    # refunds row 5) → P 3/5, R 3/5, F1 0.6.
    # macro over labels seen: billing P 1/2 R 1 → 2/3; shipping P 1/2 R 1/2 → 1/2; technical 1; refunds 0.
    # exact set: rows 3 and 4 → 2/5.
    expected = {"micro_f1": 0.6, "macro_f1": (2 / 3 + 1 / 2 + 1 + 0) / 4, "exact_set_accuracy": 0.4}
    assert task.metrics(predicted, gold) == pytest.approx(expected)
    assert [task.is_correct(p, g) for p, g in zip(predicted, gold)] == [False, False, True, True, False]
