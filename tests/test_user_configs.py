"""Configs as users write them (issue 11): templates naming the label column, template
errors met mid-run, ``--provider`` overrides, Autolabel's sciq config shape, and a CLI
that starts without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fake_openai_server import INPUT_MARKER, prompt_text

from autolabel_lite import LabelingAgent
from autolabel_lite.cli import main

from conftest import read_csv, run_cli, saved_rows, write_csv

CONTEXT = "The Harlow Bridge opened in 1908 and was owned by the Harlow Bridge Company."
QA_CONFIG = {
    "task_name": "qa",
    "task_type": "question_answering",
    "dataset": {"input_columns": ["context", "question"], "label_column": "answer"},
    "prompt": {
        "example_template": "Context: {{ context }}\nQuestion: {{ question }}\nAnswer: {{ answer }}",
        "few_shot_examples": [{"context": CONTEXT, "question": "Who owned the bridge?", "answer": "the Harlow Bridge Company"}],
        "few_shot_num": 1,
    },
}
NER_CONFIG = {
    "task_name": "ner",
    "task_type": "named_entity_recognition",
    "dataset": {"input_columns": ["example"], "label_column": "CategorizedLabels"},
    "prompt": {
        "labels": ["Location", "Person"],
        "example_template": "Text: {{ example }}\nEntities: {{ CategorizedLabels }}",
        "few_shot_examples": [{"example": "Ada lives in Paris .", "CategorizedLabels": '{"Location": ["Paris"], "Person": ["Ada"]}'}],
        "few_shot_num": 1,
        "max_output_tokens": 32,
    },
}


def with_server(config: dict, server) -> dict:
    return {**config, "model": {"provider": "openai", "name": "fake-model", "base_url": server.base_url, "max_retries": 0}}


def current_input(request: dict) -> str:
    return prompt_text(request).rpartition(INPUT_MARKER)[2]


# -- 1. the label column's name in a template ----------------------------------------------


def test_qa_template_naming_its_label_column_shows_the_example_answer_and_leaves_the_row_blank(fake_server, tmp_path):
    fake_server.responder = lambda request: json.dumps({"answer": "1908"})
    data = write_csv(tmp_path / "q.csv", ["context", "question", "answer"], [(CONTEXT, "When did the bridge open?", "1908")])

    result = LabelingAgent(with_server(QA_CONFIG, fake_server)).run(data, progress=False)

    prompt = prompt_text(fake_server.requests[0].body)
    assert "Question: Who owned the bridge?\nAnswer: the Harlow Bridge Company" in prompt
    assert prompt.endswith("Question: When did the bridge open?\nAnswer:")
    assert [(r.label, r.error) for _, r in result.rows()] == [("1908", "")]


def test_ner_template_naming_its_label_column_through_the_server(fake_server, tmp_path):
    fake_server.responder = lambda request: '{"Location": ["Rome"], "Person": ["Bo"]}'
    data = write_csv(tmp_path / "n.csv", ["example"], [("Bo flew to Rome .",)])

    result = LabelingAgent(with_server(NER_CONFIG, fake_server)).run(data, progress=False)

    prompt = prompt_text(fake_server.requests[0].body)
    assert 'Text: Ada lives in Paris .\nEntities: {"Location": ["Paris"], "Person": ["Ada"]}' in prompt
    assert prompt.endswith("Text: Bo flew to Rome .\nEntities:")
    assert [json.loads(r.label) for _, r in result.rows()] == [{"Location": ["Rome"], "Person": ["Bo"]}]


@pytest.mark.model
@pytest.mark.parametrize("config", [QA_CONFIG, NER_CONFIG], ids=["question_answering", "named_entity_recognition"])
def test_label_column_templates_run_on_the_embedded_model(tmp_path, config):
    if config is QA_CONFIG:
        data = write_csv(tmp_path / "q.csv", ["context", "question"], [(CONTEXT, "When did the bridge open?")])
    else:
        data = write_csv(tmp_path / "n.csv", ["example"], [("Bo flew to Rome .",)])
    out = tmp_path / "out.csv"
    (tmp_path / "task.json").write_text(json.dumps(config), encoding="utf-8")

    assert main(["run", str(tmp_path / "task.json"), str(data), "--output", str(out), "--no-progress"]) == 0

    [row] = read_csv(out)
    assert row[f"{config['task_name']}_label"]


# -- 2. a template error that only some rows meet ------------------------------------------


def test_template_error_mid_run_stops_with_one_line_and_keeps_the_rows_already_labeled(fake_server, api_config, tmp_path, cache_path):
    # Fails only for a review of exactly 5 characters: the load-time check cannot see it.
    api_config["prompt"]["example_template"] = "Review: {{ review }} ({{ 100 // (review | length - 5) }})\nOutput: {{ label }}"
    api_config["model"]["concurrency"] = 1
    data = write_csv(tmp_path / "r.csv", ["review", "gold"], [("a positive one", "positive"), ("fine!", "positive"), ("later", "negative")])
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(api_config), encoding="utf-8")

    done = run_cli("run", str(config_path), str(data), "--output", str(tmp_path / "out.csv"), "--no-progress")

    assert done.returncode == 2
    assert done.stderr == "error: prompt.example_template: template failed: ZeroDivisionError: integer division or modulo by zero\n"
    assert not (tmp_path / "out.csv").exists()
    assert [index for _, index in saved_rows(cache_path)] == [0]  # the row labeled before it is kept


# -- 3. --provider with the config's own provider keeps its model name -------------------------


def test_provider_override_keeps_the_model_name_when_the_provider_is_the_same(fake_server, tmp_path):
    config = {
        "task_name": "s",
        "dataset": {"input_columns": ["review"]},
        "model": {"provider": "openai", "name": "gpt-3.5-turbo"},
        "prompt": {"labels": ["positive", "negative"]},
    }
    (tmp_path / "task.json").write_text(json.dumps(config), encoding="utf-8")
    data = write_csv(tmp_path / "r.csv", ["review"], [("positive!",)])

    status = main(["run", str(tmp_path / "task.json"), str(data), "--provider", "openai", "--base-url", fake_server.base_url, "--no-progress"])

    assert status == 0
    assert {request.body["model"] for request in fake_server.requests} == {"gpt-3.5-turbo"}
    assert LabelingAgent(config, provider="embedded").config.model.name is None  # another provider drops it


# -- 4. Autolabel's sciq shape: an extra input column from the template, few-shot from a CSV --------


SCIQ_SEED = [
    ("What do plants absorb for photosynthesis?", "carbon dioxide", "['oxygen', 'carbon dioxide', 'nitrogen', 'helium']"),
    ("Which organ pumps blood?", "heart", "['lung', 'heart', 'liver', 'kidney']"),
    ("What is frozen water called?", "ice", "['steam', 'ice', 'fog', 'dew']"),
]


def sciq_config(tmp_path: Path) -> Path:
    write_csv(tmp_path / "seed.csv", ["question", "answer", "options"], SCIQ_SEED)
    config = {
        "task_name": "ScienceQuestionAnswering",
        "task_type": "question_answering",
        "dataset": {"label_column": "answer", "delimiter": ","},
        "model": {"provider": "openai", "name": "gpt-3.5-turbo"},
        "prompt": {
            "task_guidelines": "You are an expert at answering science questions. Choose the best answer from the options.",
            "example_template": "Question: {question}\nOptions: {options}\nAnswer: {answer}",
            "few_shot_examples": "seed.csv",
            "few_shot_selection": "semantic_similarity",
            "few_shot_num": 2,
        },
    }
    path = tmp_path / "config_sciq.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


SCIQ_ROWS = [("Which gas do animals exhale?", "carbon dioxide", "['carbon dioxide', 'argon', 'neon', 'xenon']")]


def test_autolabel_sciq_config_runs_unchanged_against_a_compatible_server(fake_server, tmp_path):
    config = sciq_config(tmp_path)
    data = write_csv(tmp_path / "test.csv", ["question", "answer", "options"], SCIQ_ROWS)
    fake_server.responder = lambda request: "carbon dioxide"
    out = tmp_path / "out.csv"

    status = main(["run", str(config), str(data), "--provider", "openai", "--base-url", fake_server.base_url, "--output", str(out), "--no-progress"])

    assert status == 0
    prompt = prompt_text(fake_server.requests[0].body)
    assert "Options: ['oxygen', 'carbon dioxide', 'nitrogen', 'helium']\nAnswer: carbon dioxide" in prompt  # the closest example
    assert prompt.endswith("Question: Which gas do animals exhale?\nOptions: ['carbon dioxide', 'argon', 'neon', 'xenon']\nAnswer:")
    [row] = read_csv(out)
    assert (row["ScienceQuestionAnswering_label"], row["ScienceQuestionAnswering_error"]) == ("carbon dioxide", "")


@pytest.mark.model
def test_autolabel_sciq_config_runs_unchanged_on_the_embedded_model(tmp_path):
    config = sciq_config(tmp_path)
    data = write_csv(tmp_path / "test.csv", ["question", "answer", "options"], SCIQ_ROWS)
    out = tmp_path / "out.csv"

    assert main(["run", str(config), str(data), "--provider", "embedded", "--output", str(out), "--no-progress"]) == 0

    [row] = read_csv(out)
    assert row["ScienceQuestionAnswering_label"]


# -- 6. start-up without torch ---------------------------------------------------------------


def test_importing_the_cli_imports_no_torch_or_transformers():
    probe = "import sys, autolabel_lite.cli; print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr


def test_an_api_run_imports_no_torch_or_transformers(fake_server, api_config, reviews_csv, tmp_path):
    (tmp_path / "task.json").write_text(json.dumps(api_config), encoding="utf-8")
    probe = (
        "import sys\n"
        "from autolabel_lite.cli import main\n"
        f"status = main(['run', {str(tmp_path / 'task.json')!r}, {str(reviews_csv)!r}, '--output', {str(tmp_path / 'o.csv')!r}, '--no-progress'])\n"
        "print(status, sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "0 []", done.stderr
    assert len(read_csv(tmp_path / "o.csv")) == 4
