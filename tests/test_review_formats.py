"""Review tools, out and back (issue 15): Label Studio tasks with scored predictions and their
labeling config, Argilla 2.x records with scored suggestions, and reviewed exports turned
into seed rows that plan tunes on."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fake_openai_server import INPUT_MARKER, prompt_text

from autolabel_lite import LabelingAgent
from autolabel_lite.cli import main

from conftest import REPO, REVIEWS, read_csv, write_csv

NER_ANSWERS = {
    "Ada Lovelace met Charles Babbage in London .": '{"Person": ["Ada Lovelace", "Charles Babbage"], "Location": ["London"]}',
    "Acme hired Ada from Acme 's rival .": '{"Organization": ["Acme"], "Person": ["Ada"]}',
}


def current_input(request: dict) -> str:
    return prompt_text(request).rpartition(INPUT_MARKER)[2]


def respond(request: dict) -> str:
    """Answers for every task type's example rows, as a model would give them."""
    row = current_input(request)
    for text, answer in NER_ANSWERS.items():
        if text in row:
            return answer
    if "Question: When did the Harlow Bridge open?" in row:
        return '{"answer": "1908"}'
    if "Question: Who paid for the repainting?" in row:
        return '{"answer": "unanswerable"}'
    if "Question:" in row:
        return '{"answer": "In 1999"}'
    if "Message:" in row:
        return "billing; shipping"
    return '{"label": "not duplicate"}' if "K-300" in row else '{"label": "duplicate"}'


def config_for(task_type: str, server, tmp_path: Path, **extra) -> Path:
    config = json.loads((REPO / "task_configs" / f"{task_type}.json").read_text())
    config["model"] = {"provider": "openai", "name": "fake-model", "base_url": server.base_url, "max_retries": 0, "compute_confidence": True}
    config.update(extra)
    path = tmp_path / f"{task_type}_config.json"
    path.write_text(json.dumps(config))
    return path


DATA = {
    "multilabel_classification": (REPO / "examples" / "multilabel_classification" / "tickets.csv", 2),
    "entity_matching": (REPO / "examples" / "entity_matching" / "products.csv", 2),
    "question_answering": (REPO / "examples" / "question_answering" / "questions.csv", 3),
}


def data_for(task_type: str, tmp_path: Path) -> tuple[Path, int]:
    if task_type == "named_entity_recognition":
        return write_csv(tmp_path / "news.csv", ["text", "entities"], [(text, "") for text in NER_ANSWERS]), 2
    return DATA[task_type]


def export(task_type, server, tmp_path, fmt: str, *flags: str) -> tuple[list[dict], list[dict], Path]:
    """Run the task to a .json review file and a CSV of all rows; returns (items, CSV rows, json path)."""
    server.responder = respond
    data, rows = data_for(task_type, tmp_path)
    review, table = tmp_path / f"{task_type}.json", tmp_path / f"{task_type}.csv"
    command = ["run", str(config_for(task_type, server, tmp_path)), str(data), "--max-rows", str(rows), "--no-progress"]
    assert main([*command, "--output", str(review), "--format", fmt, *flags]) == 0
    assert main([*command, "--output", str(table)]) == 0
    return json.loads(review.read_text()), read_csv(table), review


def labeling_config(path: Path) -> ET.Element:
    return ET.fromstring(path.with_suffix(".xml").read_text())


# -- Label Studio ----------------------------------------------------------------------------


def check_task(task: dict, row: dict, input_columns: list[str], label_column: str) -> None:
    """The shape every task has: the inputs and the row id as data, one scored prediction."""
    assert task["data"] == {**{c: row[c] for c in input_columns}, "autolabel_row": task["data"]["autolabel_row"]}
    [prediction] = task["predictions"]
    assert prediction["model_version"] == "openai/fake-model"
    assert prediction["score"] == pytest.approx(float(row[label_column.replace("_label", "_confidence")]))
    ids = [r["id"] for r in prediction["result"]]
    assert len(set(ids)) == len(ids)


def test_label_studio_classification_like_tasks_predict_choices_with_the_rows_confidence(fake_server, tmp_path):
    for task_type, name, columns, choice in [
        ("multilabel_classification", "ticket_topics", ["message"], "multiple"),
        ("entity_matching", "product_match", ["product_a", "product_b"], "single"),
    ]:
        tasks, rows, review = export(task_type, fake_server, tmp_path, "label-studio")
        assert [t["data"]["autolabel_row"] for t in tasks] == list(range(len(rows)))
        for task, row in zip(tasks, rows):
            check_task(task, row, columns, f"{name}_label")
            [result] = task["predictions"][0]["result"]
            assert {k: result[k] for k in ("from_name", "to_name", "type")} == {"from_name": "label", "to_name": columns[0], "type": "choices"}
            assert result["value"]["choices"] == row[f"{name}_label"].split(";")
        view = labeling_config(review)
        choices = view.find("Choices")
        assert (choices.get("name"), choices.get("toName"), choices.get("choice")) == ("label", columns[0], choice)
        config = json.loads((tmp_path / f"{task_type}_config.json").read_text())
        assert [c.get("value") for c in choices.findall("Choice")] == list(config["prompt"]["labels"])
        assert {t.get("name"): t.get("value") for t in view.findall("Text")} == {c: f"${c}" for c in columns}
    assert tasks[1]["predictions"][0]["result"][0]["value"]["choices"] == ["not duplicate"]


def test_label_studio_ner_has_one_span_per_entity_occurrence_whose_text_is_the_slice_at_its_offsets(fake_server, tmp_path):
    tasks, rows, review = export("named_entity_recognition", fake_server, tmp_path, "label-studio")

    for task, row in zip(tasks, rows):
        check_task(task, row, ["text"], "news_entities_label")
        text = task["data"]["text"]
        results = task["predictions"][0]["result"]
        for result in results:
            value = result["value"]
            assert (result["type"], result["from_name"], result["to_name"]) == ("labels", "label", "text")
            assert value["text"] == text[value["start"] : value["end"]]
            assert 0 <= value["score"] <= 1
        label = json.loads(row["news_entities_label"])
        found = sorted((r["value"]["labels"][0], r["value"]["text"]) for r in results)
        assert sorted({pair for pair in found}) == sorted((kind, e) for kind, entities in label.items() for e in entities)
    acme = [r["value"] for r in tasks[1]["predictions"][0]["result"] if r["value"]["text"] == "Acme"]
    assert [(v["start"], v["end"]) for v in acme] == [(0, 4), (20, 24)]  # both occurrences
    # Per-entity confidences: the row's score is the lowest of them.
    scores = [r["value"]["score"] for r in tasks[0]["predictions"][0]["result"]]
    assert tasks[0]["predictions"][0]["score"] == pytest.approx(min(scores))
    view = labeling_config(review)
    labels = view.find("Labels")
    assert (labels.get("name"), labels.get("toName")) == ("label", "text")
    assert [l.get("value") for l in labels.findall("Label")] == ["Location", "Organization", "Person", "Miscellaneous"]
    assert view.find("Text").attrib == {"name": "text", "value": "$text"}


def test_label_studio_qa_has_the_answer_as_text_and_its_span_in_the_context(fake_server, tmp_path):
    tasks, rows, review = export("question_answering", fake_server, tmp_path, "label-studio")

    for task, row in zip(tasks, rows):
        check_task(task, row, ["passage", "question"], "town_facts_label")
    answered, not_found, unanswerable = (t["predictions"][0]["result"] for t in tasks)
    assert [r["type"] for r in answered] == ["textarea", "labels"]
    assert answered[0]["value"] == {"text": ["1908"]} and answered[0]["to_name"] == "passage"
    span = answered[1]["value"]
    assert answered[1]["from_name"] == "label_span" and span["labels"] == ["answer"]
    assert tasks[0]["data"]["passage"][span["start"] : span["end"]] == span["text"] == "1908"
    assert [r["type"] for r in not_found] == ["textarea"]  # "In 1999" is not in the passage: no span
    assert unanswerable == [{"id": "2-0", "from_name": "label", "to_name": "passage", "type": "textarea", "value": {"text": ["unanswerable"]}}]
    view = labeling_config(review)
    assert {(c.tag, c.get("name"), c.get("toName")) for c in view if c.get("toName")} == {
        ("TextArea", "label", "passage"),
        ("Labels", "label_span", "passage"),
    }


def test_from_name_and_to_name_can_be_set_and_the_config_matches(fake_server, tmp_path):
    tasks, _, review = export("named_entity_recognition", fake_server, tmp_path, "label-studio", "--from-name", "ner", "--to-name", "sentence")

    results = [r for t in tasks for r in t["predictions"][0]["result"]]
    assert {(r["from_name"], r["to_name"]) for r in results} == {("ner", "sentence")}
    assert "text" in tasks[0]["data"]  # the data keeps the column's name; the Text tag maps it
    view = labeling_config(review)
    assert (view.find("Labels").get("name"), view.find("Labels").get("toName")) == ("ner", "sentence")
    assert view.find("Text").attrib == {"name": "sentence", "value": "$text"}


def test_rejected_rows_alone_go_to_the_review_file(fake_server, api_config, tmp_path, capsys):
    config = {**api_config, "model": {**api_config["model"], "compute_confidence": True}, "threshold": {"policy": "fixed", "value": 0.5}}
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(config))
    data = write_csv(tmp_path / "reviews.csv", ["review", "gold"], [*REVIEWS[:2], ("", "positive"), *REVIEWS[2:]])
    out, review = tmp_path / "all.csv", tmp_path / "review.json"

    assert main(["run", str(config_path), str(data), "--output", str(out), "--rejected", str(review), "--format", "label-studio", "--no-progress"]) == 0

    rows = read_csv(out)
    rejected = [n for n, row in enumerate(rows) if row["sentiment_accepted"] == "false"]
    assert rejected == [2]  # the empty review; the others clear 0.5
    assert [t["data"]["autolabel_row"] for t in json.loads(review.read_text())] == rejected
    assert review.with_suffix(".xml").is_file()
    assert "wrote 1 rejected rows to" in capsys.readouterr().err


def test_a_labeling_config_over_the_input_is_refused_before_labeling(fake_server, api_config, tmp_path, capsys):
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(api_config))
    data = write_csv(tmp_path / "review.csv", ["review", "gold"], REVIEWS)
    (tmp_path / "review.xml").symlink_to(data)  # the labeling config's name is the input under another name

    assert main(["run", str(config_path), str(data), "--output", str(tmp_path / "review.json"), "--format", "label-studio", "--no-progress"]) == 2

    assert capsys.readouterr().err.startswith(f"error: --output labeling config {tmp_path / 'review.xml'}: is the input file")
    assert fake_server.stats.requests == 0


# -- Argilla ---------------------------------------------------------------------------------


def test_argilla_records_carry_fields_scored_suggestions_and_metadata(fake_server, tmp_path):
    records, rows, _ = export("entity_matching", fake_server, tmp_path, "argilla")

    for record, row, n in zip(records, rows, range(len(rows))):
        assert set(record) == {"id", "fields", "metadata", "suggestions", "responses", "vectors"}
        assert record["id"] == str(n)
        assert record["fields"] == {"product_a": row["product_a"], "product_b": row["product_b"]}
        assert record["suggestions"] == {
            "label": {"value": row["product_match_label"], "score": pytest.approx(float(row["product_match_confidence"])), "agent": "openai/fake-model"}
        }
        assert record["metadata"] == {"stage": "openai/fake-model", "error": ""}

    ner, ner_rows, _ = export("named_entity_recognition", fake_server, tmp_path, "argilla")
    spans = ner[1]["suggestions"]["label"]["value"]
    assert spans == [{"start": 0, "end": 4, "label": "Organization"}, {"start": 11, "end": 14, "label": "Person"}, {"start": 20, "end": 24, "label": "Organization"}]
    assert ner[1]["suggestions"]["label"]["score"] == pytest.approx(float(ner_rows[1]["news_entities_confidence"]))
    topics, _, _ = export("multilabel_classification", fake_server, tmp_path, "argilla")
    assert topics[0]["suggestions"]["label"]["value"] == ["billing", "shipping"]


# -- reviews back in -------------------------------------------------------------------------


def annotation(choice: str, *, at: str, cancelled: bool = False) -> dict:
    result = [{"id": "x", "from_name": "label", "to_name": "review", "type": "choices", "value": {"choices": [choice]}}]
    return {"id": at, "result": result, "was_cancelled": cancelled, "created_at": at, "updated_at": at}


def test_a_label_studio_export_with_edited_annotations_becomes_the_seed_rows_plan_tunes_on(fake_server, api_config, tmp_path, capsys):
    config = {**api_config, "model": {**api_config["model"], "compute_confidence": True}}
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(config))
    data = write_csv(tmp_path / "reviews.csv", ["review", "gold"], [(r, "") for r, _ in REVIEWS] * 2)  # no ground truth yet
    review = tmp_path / "review.json"
    assert main(["run", str(config_path), str(data), "--output", str(review), "--format", "label-studio", "--no-progress"]) == 0
    tasks = json.loads(review.read_text())
    # What the reviewers did: row 0 corrected, row 1 corrected then corrected back (the latest wins),
    # row 2 agreed, row 3 skipped (cancelled), rows 4-7 not reached.
    tasks[0]["annotations"] = [annotation("negative", at="2026-12-01T10:00:00Z")]
    tasks[1]["annotations"] = [annotation("negative", at="2026-12-01T11:00:00Z"), annotation("positive", at="2026-12-01T10:30:00Z")]
    tasks[2]["annotations"] = [annotation("positive", at="2026-12-01T10:00:00Z"), annotation("negative", at="2026-12-01T12:00:00Z", cancelled=True)]
    tasks[3]["annotations"] = [annotation("positive", at="2026-12-01T10:00:00Z", cancelled=True)]
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps(tasks))
    seed = tmp_path / "seed.csv"
    capsys.readouterr()

    assert main(["import-reviews", str(exported), "--config", str(config_path), "--output", str(seed)]) == 0

    assert capsys.readouterr().err == f"imported 3 reviewed rows from a Label Studio export into {seed}; skipped 5 (4 without an annotation, 1 cancelled)\n"
    assert read_csv(seed) == [
        {"review": REVIEWS[0][0], "gold": "negative"},
        {"review": REVIEWS[1][0], "gold": "negative"},
        {"review": REVIEWS[2][0], "gold": "positive"},
    ]
    assert main(["plan", str(config_path), str(data), "--seed", str(seed), "--json", "--no-progress"]) == 0
    plan = json.loads(capsys.readouterr().out)
    # The model says positive, negative, positive: the human labels make row 0 wrong.
    assert plan["seed"]["rows"] == 3 and plan["seed"]["accuracy"] == pytest.approx(2 / 3)


def test_reviewed_ner_spans_come_back_in_the_tasks_json_shape(fake_server, tmp_path, capsys):
    tasks, _, _ = export("named_entity_recognition", fake_server, tmp_path, "label-studio")
    spans = tasks[0]["predictions"][0]["result"]
    text = tasks[0]["data"]["text"]
    # The reviewer drops "London" and marks "Babbage" alone as a Person; offsets only, no text.
    edited = [r for r in spans if r["value"]["text"] == "Ada Lovelace"]
    start = text.index("Babbage")
    edited.append({"from_name": "label", "to_name": "text", "type": "labels", "value": {"start": start, "end": start + 7, "labels": ["Person"]}})
    tasks[0]["annotations"] = [{"result": edited, "was_cancelled": False}]
    tasks[1]["annotations"] = [{"result": [], "was_cancelled": False}]  # reviewed: no entities
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps(tasks))
    config = config_for("named_entity_recognition", fake_server, tmp_path)

    assert main(["import-reviews", str(exported), "--config", str(config), "--output", str(tmp_path / "seed.jsonl")]) == 0

    rows = [json.loads(line) for line in (tmp_path / "seed.jsonl").read_text().splitlines()]
    assert [json.loads(r["entities"]) for r in rows] == [
        {"Location": [], "Organization": [], "Person": ["Ada Lovelace", "Babbage"], "Miscellaneous": []},
        {"Location": [], "Organization": [], "Person": [], "Miscellaneous": []},
    ]


def test_an_argilla_export_with_responses_becomes_labeled_rows(fake_server, tmp_path, capsys):
    records, _, _ = export("multilabel_classification", fake_server, tmp_path, "argilla")
    records[0]["responses"] = {"label": [{"value": ["shipping"], "user_id": "u1", "status": "discarded"}, {"value": ["technical", "billing"], "user_id": "u2"}]}
    records[1]["responses"] = {"label": [{"value": ["billing"], "user_id": "u1", "status": "draft"}]}
    exported = tmp_path / "argilla.json"
    exported.write_text(json.dumps(records))
    config = config_for("multilabel_classification", fake_server, tmp_path)
    capsys.readouterr()

    assert main(["import-reviews", str(exported), "--config", str(config), "--output", str(tmp_path / "seed.parquet")]) == 0

    import pandas as pd

    seed = pd.read_parquet(tmp_path / "seed.parquet")
    assert seed.to_dict("records") == [{"message": records[0]["fields"]["message"], "topics": "billing;technical"}]
    assert "skipped 1 (1 discarded or draft)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON (Expecting value at line 1)"),
        ('{"tasks": []}', "a review export is a JSON list of tasks (Label Studio) or records (Argilla)"),
        ("[]", "the export holds no tasks or records"),
        ('[{"something": 1}]', "neither a Label Studio export (tasks with 'data') nor an Argilla export (records with 'fields')"),
        ('[{"data": {"text": "x"}}]', "Label Studio export: item 1 has no 'review' in its data (has: text); is this the config the rows were labeled with?"),
    ],
)
def test_an_export_that_cannot_be_read_is_one_line(api_config, tmp_path, capsys, content, message):
    config = tmp_path / "task.json"
    config.write_text(json.dumps(api_config))
    exported = tmp_path / "export.json"
    exported.write_text(content)

    assert main(["import-reviews", str(exported), "--config", str(config), "--output", str(tmp_path / "seed.csv")]) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "seed.csv").exists()


def test_a_json_output_naming_the_task_config_is_refused_before_labeling(fake_server, api_config, reviews_csv, tmp_path, capsys):
    config = tmp_path / "task.json"
    config.write_text(json.dumps(api_config))
    before = config.read_bytes()

    assert main(["run", str(config), str(reviews_csv), "--output", str(config), "--format", "argilla", "--no-progress"]) == 2

    assert capsys.readouterr().err == f"error: --output {config}: is the task config; write the labels to another file\n"
    assert config.read_bytes() == before and fake_server.stats.requests == 0
    assert main(["import-reviews", str(tmp_path / "export.json"), "--config", str(config), "--output", str(config)]) == 2
    assert capsys.readouterr().err == f"error: {config}: reviews are written as rows: name it .csv, .jsonl or .parquet\n"
    assert config.read_bytes() == before
