"""The ``autolabel-lite run`` command: flags, outputs, exit status and one-line errors."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from autolabel_lite.cli import main

from conftest import LABELS, REPO, REVIEWS, read_csv, write_csv

SENTIMENT_CONFIG = REPO / "task_configs" / "sentiment.json"
EXAMPLE_DATA = REPO / "examples" / "sentiment" / "reviews.csv"
OUTPUT_COLUMNS = ["sentiment_label", "sentiment_confidence", "sentiment_accepted", "sentiment_error"]


def api_flags(server) -> list[str]:
    return ["--provider", "openai", "--model", "fake-model", "--base-url", server.base_url, "--no-progress"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.removeprefix("error: ").rstrip("\n")


def test_shipped_config_pointed_at_an_openai_compatible_server(fake_server, tmp_path, capsys):
    output = tmp_path / "labeled.csv"

    status = main(["run", str(SENTIMENT_CONFIG), str(EXAMPLE_DATA), "--output", str(output), *api_flags(fake_server)])

    assert status == 0
    inputs = read_csv(EXAMPLE_DATA)
    rows = read_csv(output)
    assert list(rows[0]) == [*inputs[0], *OUTPUT_COLUMNS]
    assert [r["review"] for r in rows] == [r["review"] for r in inputs]
    assert all(r["sentiment_label"] in LABELS and r["sentiment_error"] == "" for r in rows)
    assert {request.body["model"] for request in fake_server.requests} == {"fake-model"}
    err = capsys.readouterr().err
    assert f"rows: {len(inputs)}  labeled: {len(inputs)}  errors: 0" in err
    assert "accuracy:" in err
    assert f"wrote {len(inputs)} rows to {output}" in err


def test_max_rows_and_default_output_path(fake_server, tmp_path):
    data = shutil.copy(EXAMPLE_DATA, tmp_path / "reviews.csv")

    assert main(["run", str(SENTIMENT_CONFIG), str(data), "--max-rows", "5", "--concurrency", "2", *api_flags(fake_server)]) == 0

    rows = read_csv(tmp_path / "reviews_sentiment_labeled.csv")
    assert [r["review"] for r in rows] == [r["review"] for r in read_csv(EXAMPLE_DATA)[:5]]
    assert fake_server.stats.by_endpoint["chat"] == 5


def test_only_accepted_and_rejected_outputs(fake_server, api_config, reviews_csv, tmp_path):
    fake_server.responder = lambda request: "no idea" if "Row two" in request["messages"][-1]["content"] else "positive"
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(api_config), encoding="utf-8")
    accepted, rejected = tmp_path / "accepted.csv", tmp_path / "rejected.csv"

    status = main(["run", str(config_path), str(reviews_csv), "--output", str(accepted), "--only-accepted", "--rejected", str(rejected)])

    assert status == 0
    reviews = [review for review, _ in REVIEWS]
    assert [r["review"] for r in read_csv(accepted)] == [reviews[0], *reviews[2:]]
    assert [r["review"] for r in read_csv(rejected)] == [reviews[1]]
    assert read_csv(rejected)[0]["sentiment_error"] == "output 'no idea' matches no label"


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".tsv"])
def test_other_input_formats(fake_server, api_config, tmp_path, suffix):
    data = tmp_path / f"reviews{suffix}"
    records = [{"review": review, "gold": gold} for review, gold in REVIEWS]
    if suffix == ".jsonl":
        data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), data)
    else:
        with data.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["review", "gold"], delimiter="\t")
            writer.writeheader()
            writer.writerows(records)
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(api_config), encoding="utf-8")

    assert main(["run", str(config_path), str(data), "--output", str(tmp_path / "out.csv"), "--no-progress"]) == 0

    rows = read_csv(tmp_path / "out.csv")
    assert [(r["review"], r["sentiment_label"]) for r in rows] == REVIEWS


def test_shared_civil_comments_rows_survive_the_round_trip(fake_server, shared_data, tmp_path):
    """Quoted multi-line cells and two-word labels ("not toxic") from a real seed set."""
    config = {
        "task_name": "toxicity",
        "dataset": {"input_columns": ["example"], "label_column": "label"},
        "model": {"provider": "openai", "name": "fake-model", "base_url": fake_server.base_url},
        "prompt": {"task_guidelines": "Is the comment toxic?", "labels": ["toxic", "not toxic"]},
    }
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    source = shared_data / "civil_comments" / "seed.csv"

    assert main(["run", str(config_path), str(source), "--output", str(tmp_path / "out.csv"), "--max-rows", "25"]) == 0

    inputs = read_csv(source)[:25]
    rows = read_csv(tmp_path / "out.csv")
    assert any("\n" in r["example"] for r in inputs), "expected multi-line cells in the first rows"
    assert [(r["example"], r["label"]) for r in rows] == [(r["example"], r["label"]) for r in inputs]
    assert all(r["toxicity_label"] in ("toxic", "not toxic") for r in rows)


def test_bad_input_files_are_one_line_errors(tmp_path, api_config, capsys):
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(api_config), encoding="utf-8")
    wrong_columns = write_csv(tmp_path / "texts.csv", ["text"], [("hello",)])
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("review\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    header_only = write_csv(tmp_path / "header_only.csv", ["review"], [])
    cases = [
        (tmp_path / "absent.csv", "input file not found: "),
        (wrong_columns, f"{wrong_columns}: missing configured column 'review' (has: text)"),
        (latin1, f"{latin1}: not UTF-8 text"),
        (header_only, f"{header_only}: has a header but no rows"),
        (shutil.copy(config_path, tmp_path / "data.xlsx"), "unsupported file type '.xlsx'"),
    ]
    for data, expected in cases:
        assert main(["run", str(config_path), str(data), "--no-progress"]) == 2
        assert expected in one_line_error(capsys)


def test_max_rows_must_be_positive(reviews_csv, capsys):
    assert main(["run", str(SENTIMENT_CONFIG), str(reviews_csv), "--max-rows", "0"]) == 2
    assert one_line_error(capsys) == "--max-rows must be at least 1"


def test_openai_without_key_or_server_fails_before_labeling(reviews_csv, tmp_path, capsys):
    output = tmp_path / "out.csv"
    status = main(["run", str(SENTIMENT_CONFIG), str(reviews_csv), "--provider", "openai", "--model", "gpt-4o-mini", "--output", str(output)])
    assert status == 2
    assert one_line_error(capsys).startswith("no OpenAI API key and no base URL")
    assert not output.exists()


def test_openai_without_model_name(fake_server, reviews_csv, capsys):
    assert main(["run", str(SENTIMENT_CONFIG), str(reviews_csv), "--provider", "openai", "--base-url", fake_server.base_url]) == 2
    assert one_line_error(capsys) == "model.name: the openai provider needs a model name"
    assert fake_server.stats.requests == 0
