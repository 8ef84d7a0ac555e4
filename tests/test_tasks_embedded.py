"""Each task type end to end with the embedded model (SmolLM2-135M) on two or three rows.

These check pipeline behaviour, never accuracy: the model is tiny.
"""

from __future__ import annotations

import json

import pytest

from autolabel_lite import LabelingAgent
from autolabel_lite.cli import main
from autolabel_lite.tasks.question_answering import UNANSWERABLE

from conftest import REPO, read_csv

pytestmark = pytest.mark.model

# Example data file and the metric a run over it must report.
EXAMPLES = {
    "question_answering": ("questions.csv", "exact_match"),
    "named_entity_recognition": ("sentences.csv", "strict_f1"),
    "multilabel_classification": ("tickets.csv", "micro_f1"),
    "entity_matching": ("products.csv", "accuracy"),
}


@pytest.mark.parametrize("task_type", sorted(EXAMPLES))
def test_example_config_labels_rows_and_scores_them(task_type, tmp_path):
    agent = LabelingAgent(REPO / "task_configs" / f"{task_type}.json")
    file_name, metric = EXAMPLES[task_type]
    data = REPO / "examples" / task_type / file_name

    result = agent.run(data, max_rows=2, progress=False)
    result.to_csv(tmp_path / "out.csv")

    assert result.stats.rows == 2
    task, rows = agent.task, list(result.rows())
    for row, res in rows:
        assert res.label or res.error  # every row is labeled or says why not
        if task_type == "question_answering":
            context = row["passage"]
            assert res.label == UNANSWERABLE or res.label in context  # scored candidates are spans of the context
        elif task_type == "named_entity_recognition":
            assert res.label and list(json.loads(res.label)) == task.types
            for entity in res.details["entities"]:
                assert row["text"][entity["start"] : entity["end"]] == entity["text"]
        elif task_type == "multilabel_classification":
            assert set(filter(None, res.label.split(";"))) <= set(task.labels)
            assert len(res.details["label_probs"]) == len(task.labels)
        else:
            assert res.label in task.candidates(row)
    assert metric in result.metrics  # the metrics' values are checked by hand in tests/test_tasks_*.py
    written = read_csv(tmp_path / "out.csv")
    assert len(written) == 2 and f"{agent.config.task_name}_label" in written[0]


def test_conll2003_config_runs_from_the_cli_as_documented(shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # the documented command uses paths relative to the repository
    output = tmp_path / "out.csv"

    status = main(["run", "task_configs/conll2003.json", "../shared/data/conll2003/seed.csv", "--output", str(output), "--max-rows", "3", "--no-progress"])

    assert status == 0
    summary = capsys.readouterr().err
    assert "rows: 3" in summary and "strict_f1:" in summary and "partial_f1:" in summary
    rows = read_csv(output)
    assert len(rows) == 3
    for row in rows:
        assert row["conll2003_label"] or row["conll2003_error"]
        for entity in json.loads(row["conll2003_entities"] or "[]"):
            assert row["example"][entity["start"] : entity["end"]] == entity["text"]
