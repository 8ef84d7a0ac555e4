"""Every task type through the ``openai`` provider, against the local fake server (no
model runs here): the server answers like a model would, messy formats included."""

from __future__ import annotations

import json

from fake_openai_server import INPUT_MARKER, prompt_text

from autolabel_lite import LabelingAgent
from autolabel_lite.cli import main

from conftest import REPO, read_csv, write_csv

NER_CONFIG = REPO / "task_configs" / "named_entity_recognition.json"


def current_input(request: dict) -> str:
    """The row being labeled, as the prompt shows it (after the last input marker)."""
    return prompt_text(request).rpartition(INPUT_MARKER)[2]


def api_config(path, server) -> dict:
    config = json.loads(path.read_text())
    config["model"] = {"provider": "openai", "name": "fake-model", "base_url": server.base_url, "max_retries": 0}
    return config


def test_ner_json_answers_become_entities_with_offsets_and_metrics(fake_server, tmp_path, capsys):
    answers = {
        "Ada Lovelace met Charles Babbage in London .": '```json\n{"Person": ["Ada Lovelace", "Charles Babbage"], "Location": ["London"]}\n```',
        "Acme hired Ada from Acme 's rival .": "{'Organization': ['Acme'], 'Person': ['Ada', 'Grace Hopper']} I hope this helps.",
    }
    fake_server.responder = lambda request: next(a for text, a in answers.items() if text in current_input(request))
    gold = [
        '{"Location": ["London"], "Organization": [], "Person": ["Ada Lovelace", "Charles Babbage"], "Miscellaneous": []}',
        '{"Location": [], "Organization": ["Acme"], "Person": [], "Miscellaneous": []}',
    ]
    data = write_csv(tmp_path / "news.csv", ["text", "entities"], list(zip(answers, gold)))
    config_path = tmp_path / "ner.json"
    config_path.write_text(json.dumps(api_config(NER_CONFIG, fake_server)))
    output = tmp_path / "out.csv"

    assert main(["run", str(config_path), str(data), "--output", str(output), "--no-progress"]) == 0

    summary = capsys.readouterr().err
    # strict: predicted 5 (Ada Lovelace, Charles Babbage, London, Acme, Ada), all 4 gold found → P 4/5, R 1.
    assert "strict_precision: 0.8000  strict_recall: 1.0000" in summary
    first, second = read_csv(output)
    assert json.loads(first["news_entities_label"]) == json.loads(gold[0])
    assert first["news_entities_error"] == ""
    assert json.loads(second["news_entities_label"]) == {"Location": [], "Organization": ["Acme"], "Person": ["Ada"], "Miscellaneous": []}
    assert second["news_entities_error"] == "1 entity dropped: 'Grace Hopper' not in the text"
    acme = next(e for e in json.loads(second["news_entities_entities"]) if e["text"] == "Acme")
    assert acme == {"type": "Organization", "text": "Acme", "start": 0, "end": 4, "occurrences": [[0, 4], [20, 24]]}
    # The server was asked for JSON in the shape the label column uses.
    assert '{"Location": [], "Organization": [], "Person": [], "Miscellaneous": []}' in prompt_text(fake_server.requests[0].body)


def test_question_answering_multilabel_and_entity_matching_through_the_api(fake_server, tmp_path):
    def respond(request: dict) -> str:
        row = current_input(request)
        if "Question: When did the Harlow Bridge open?" in row:
            return 'Answer: "1908".'
        if "Question: Who paid for the repainting?" in row:
            return "Unanswerable"
        if "Question:" in row:
            return "In 1999"  # not in the context: kept and flagged
        if "Message:" in row:
            return "Billing, shipping"
        return "Not duplicate" if "K-300" in row else "duplicate"

    fake_server.responder = respond
    runs = {
        "question_answering": ("questions.csv", 3, ["1908", "In 1999", "unanswerable"]),
        "multilabel_classification": ("tickets.csv", 2, ["billing;shipping", "billing;shipping"]),
        "entity_matching": ("products.csv", 2, ["duplicate", "not duplicate"]),
    }
    results = {}
    for task_type, (file_name, rows, expected) in runs.items():
        agent = LabelingAgent(api_config(REPO / "task_configs" / f"{task_type}.json", fake_server))
        results[task_type] = agent.run(REPO / "examples" / task_type / file_name, max_rows=rows, progress=False)
        assert [res.label for _, res in results[task_type].rows()] == expected, task_type

    qa = results["question_answering"]
    assert [res.error for _, res in qa.rows()] == ["", "answer not found in passage", ""]
    assert qa.metrics == {"exact_match": 2 / 3, "f1": 2 / 3, "answerable_accuracy": 1.0}
    assert results["multilabel_classification"].metrics["exact_set_accuracy"] == 0.5
    assert results["entity_matching"].metrics["accuracy"] == 1.0
