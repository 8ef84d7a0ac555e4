"""The ready-made configs in task_configs/ load, fit their data, render a prompt, and
read their ground truth (no model runs here)."""

from __future__ import annotations

import pytest

from autolabel_lite import LabelingAgent

from conftest import REPO, read_csv

CONFIGS = REPO / "task_configs"
EXAMPLES = REPO / "examples"

EXAMPLE_CONFIGS = {
    "question_answering": EXAMPLES / "question_answering" / "questions.csv",
    "named_entity_recognition": EXAMPLES / "named_entity_recognition" / "sentences.csv",
    "multilabel_classification": EXAMPLES / "multilabel_classification" / "tickets.csv",
    "entity_matching": EXAMPLES / "entity_matching" / "products.csv",
}
SEED_SETS = ["banking", "civil_comments", "conll2003", "squad_v2"]


def check_config_fits(config_path, data_path):
    agent = LabelingAgent(config_path)
    data = agent.open_dataset(data_path)  # raises when a configured column is missing
    gold_column = agent.config.dataset.label_column
    assert gold_column in data.columns
    rows = list(data.rows(max_rows=20))
    gold = [row[gold_column] for row in rows]

    assert agent.prompt_builder.render(rows[0]).user.strip()
    # Ground truth read as the task's own labels scores perfectly against itself.
    own_labels = [agent.task.example_label(g) for g in gold]
    assert all(agent.task.is_correct(label, g) for label, g in zip(own_labels, gold))
    return agent, agent.task.metrics(own_labels, gold)


@pytest.mark.parametrize("task_type", sorted(EXAMPLE_CONFIGS))
def test_example_config_per_task_type_fits_its_example_data(task_type):
    agent, metrics = check_config_fits(CONFIGS / f"{task_type}.json", EXAMPLE_CONFIGS[task_type])

    assert agent.config.task_type.value == task_type
    assert metrics and all(value == 1.0 for value in metrics.values())


@pytest.mark.parametrize("name", SEED_SETS)
def test_benchmark_config_fits_its_seed_set(name, shared_data):
    agent, metrics = check_config_fits(CONFIGS / f"{name}.json", shared_data / name / "seed.csv")

    assert agent.config.task_name == name
    assert metrics and all(value == 1.0 for value in metrics.values())
    if agent.config.prompt.labels and agent.config.task_type.value == "classification":
        gold = {row["label"] for row in read_csv(shared_data / name / "seed.csv")}
        assert gold <= set(agent.config.prompt.label_names)
