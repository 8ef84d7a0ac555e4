"""The Task interface's shared pieces: locating a span in the text, choosing among scored
candidates, and which parts of a label its confidence is made of."""

from __future__ import annotations

import pytest

from autolabel_lite.config import load_config
from autolabel_lite.config import TaskType
from autolabel_lite.tasks import TASKS, get_task_class
from autolabel_lite.spans import find_occurrences


def test_exactly_the_five_task_types_are_registered():
    """A task module that fails to register must fail here, not make other tests skip."""
    five = ["classification", "entity_matching", "multilabel_classification", "named_entity_recognition", "question_answering"]
    assert TASKS.names() == five
    assert sorted(member.value for member in TaskType) == five  # the config accepts exactly these
    assert {get_task_class(name).__module__ for name in five} == {f"autolabel_lite.tasks.{name}" for name in five}


@pytest.mark.parametrize(
    "text, needle, expected",
    [
        ("Paris and Paris again", "Paris", [(0, 5), (10, 15)]),
        ("The bus took us to the US.", "US", [(23, 25)]),  # never inside "bus", exact case wins over "us"
        ("the new  york office", "New York", [(4, 13)]),  # case and whitespace ignored as a fallback
        ("Kurdistan Workers Party ( PKK )", "( PKK )", [(24, 31)]),
        ("U.S. and U.S. troops", "U.S.", [(0, 4), (9, 13)]),
        ("nothing here", "Berlin", []),
        ("anything", "  ", []),
    ],
)
def test_find_occurrences(text, needle, expected):
    assert find_occurrences(text, needle) == expected


def test_default_choice_is_the_most_probable_candidate_and_the_whole_label_is_one_part():
    config = load_config({"task_name": "t", "prompt": {"labels": ["yes", "no"]}})
    task = get_task_class(config.task_type)(config)

    assert task.choose(["yes", "no"], [0.3, 0.7]) == "no"
    assert task.confidence_parts("no") == ["no"]
    assert task.confidence_parts("") == []


def test_classification_metrics_on_hand_computed_values():
    config = load_config({"task_name": "s", "prompt": {"labels": ["positive", "negative", "neutral"]}})
    task = get_task_class(config.task_type)(config)
    gold = ["Positive", "negative", "negative", " neutral", "positive"]  # gold spelled loosely
    predicted = ["positive", "negative", "positive", "", "positive"]  # "" is a failed row
    # F1 per class present: positive 2/(2+0.5) = 0.8, negative 2/3, neutral 0, "" 0.
    # Recall per true label: positive 2/2, negative 1/2, neutral 0/1.
    expected = {"accuracy": 0.6, "balanced_accuracy": (1 + 0.5 + 0) / 3, "macro_f1": (0.8 + 2 / 3) / 4}
    assert task.metrics(predicted, gold) == pytest.approx(expected)
