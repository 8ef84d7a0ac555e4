"""Entity matching: classification of a record pair with its own template and default labels."""

from __future__ import annotations

import pytest

from autolabel_lite.config import load_config
from autolabel_lite.errors import ConfigError
from autolabel_lite.prompt import PromptBuilder
from autolabel_lite.tasks import get_task_class
from autolabel_lite.tasks.entity_matching import DEFAULT_LABELS

PAIR = {"product_a": "Acme K-200 drill, 18V", "product_b": "ACME K200 18 V cordless drill"}


def make_task(**prompt):
    config = load_config(
        {"task_name": "match", "task_type": "entity_matching", "dataset": {"input_columns": list(PAIR)}, "prompt": prompt}
    )
    return get_task_class(config.task_type)(config), config


def test_labels_default_to_duplicate_and_not_duplicate_without_changing_the_callers_config():
    task, config = make_task()
    assert task.candidates(PAIR) == DEFAULT_LABELS == ["duplicate", "not duplicate"]
    assert config.prompt.labels is None
    assert task.parse("Not duplicate.", PAIR).label == "not duplicate"
    assert task.metrics(["duplicate", "not duplicate"], ["duplicate", "duplicate"])["accuracy"] == 0.5


def test_configured_labels_replace_the_defaults():
    task, _ = make_task(labels=["same", "different"])
    assert task.candidates(PAIR) == ["same", "different"]
    assert task.parse("Different", PAIR).label == "different"


def test_exactly_two_labels():
    with pytest.raises(ConfigError, match=r"^prompt.labels: entity_matching needs exactly two labels \(match, no match\)$"):
        make_task(labels=["same", "different", "unsure"])


def test_own_template_shows_both_records_and_the_labels():
    task, _ = make_task()
    prompt = PromptBuilder(task).render(PAIR)
    assert "Decide whether the two records describe the same real-world entity." in prompt.user
    assert "- duplicate\n- not duplicate" in prompt.user
    assert prompt.user.endswith(f"product_a: {PAIR['product_a']}\nproduct_b: {PAIR['product_b']}\nOutput:")
