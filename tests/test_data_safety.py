"""A user's data is never lost, misplaced or dropped (issue 12): outputs are written whole or
not at all and never over the input, labels join only onto the rows they were made for,
every input column reaches the output, and bad files or cache locations are one line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from autolabel_lite import DataError, LabelingAgent
from autolabel_lite.cli import main

from conftest import REVIEWS, read_csv, write_csv


def run(config: dict, data: Path, tmp_path: Path, *flags: str) -> int:
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return main(["run", str(config_path), str(data), "--no-progress", *flags])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


# -- outputs --------------------------------------------------------------------------------


def test_output_over_the_input_is_refused_before_labeling_and_the_input_is_kept(fake_server, api_config, reviews_csv, tmp_path, capsys):
    before = reviews_csv.read_bytes()

    assert run(api_config, reviews_csv, tmp_path, "--output", str(reviews_csv)) == 2

    assert one_line_error(capsys) == f"error: --output {reviews_csv}: is the input file; write the labels to another file"
    assert reviews_csv.read_bytes() == before
    assert fake_server.stats.requests == 0


def test_rejected_equal_to_output_is_refused_before_labeling(fake_server, api_config, reviews_csv, tmp_path, capsys):
    out = tmp_path / "out.csv"

    assert run(api_config, reviews_csv, tmp_path, "--output", str(out), "--rejected", str(tmp_path / "." / "out.csv")) == 2

    assert one_line_error(capsys).startswith(f"error: --rejected {tmp_path / '.' / 'out.csv'}: is also --output")
    assert not out.exists() and fake_server.stats.requests == 0


def test_an_output_folder_that_does_not_exist_is_reported_before_the_first_model_call(fake_server, api_config, reviews_csv, tmp_path, capsys):
    target = tmp_path / "missing" / "out.csv"

    assert run(api_config, reviews_csv, tmp_path, "--output", str(target)) == 2

    assert one_line_error(capsys) == f"error: {target}: the folder {target.parent} does not exist"
    assert fake_server.stats.requests == 0


def test_a_failed_export_leaves_the_previous_output_whole(fake_server, api_config, reviews_csv, tmp_path, monkeypatch):
    out = tmp_path / "out.csv"
    assert run(api_config, reviews_csv, tmp_path, "--output", str(out)) == 0
    good = out.read_bytes()
    result = LabelingAgent(api_config).run(reviews_csv, progress=False)

    records = type(result).records

    def partial(self, *args):
        for number, record in enumerate(records(self, *args)):
            if number == 2:
                raise OSError(28, "No space left on device")
            yield record

    monkeypatch.setattr(type(result), "records", partial)
    with pytest.raises(OSError):
        result.to_csv(out)

    assert out.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.csv")] == []  # no staging file left behind


def test_the_api_refuses_to_export_over_its_input(fake_server, api_config, reviews_csv):
    result = LabelingAgent(api_config).run(reviews_csv, progress=False)
    with pytest.raises(DataError, match="is the input file"):
        result.to_csv(reviews_csv)


# -- the join -------------------------------------------------------------------------------


def test_a_file_reordered_after_labeling_is_an_error_not_shifted_labels(fake_server, api_config, tmp_path):
    rows = [(f"review {n}: {'positive' if n % 2 else 'negative'} stuff", "x") for n in range(60)]
    data = write_csv(tmp_path / "rows.csv", ["review", "gold"], rows)
    result = LabelingAgent(api_config).run(data, progress=False)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    write_csv(data, ["review", "gold"], shuffled)

    with pytest.raises(DataError, match=r"rows\.csv: row \d+ is not the row that was labeled"):
        result.to_csv(tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_labels_join_onto_their_rows_when_the_file_is_unchanged(fake_server, api_config, reviews_csv, tmp_path):
    result = LabelingAgent(api_config).run(reviews_csv, progress=False)
    assert result.to_csv(tmp_path / "out.csv") == 4
    assert [row["sentiment_label"] for row in read_csv(tmp_path / "out.csv")] == [label for _, label in REVIEWS]


# -- every column ---------------------------------------------------------------------------


def test_jsonl_keys_missing_from_the_first_line_reach_the_output(fake_server, api_config, tmp_path):
    data = tmp_path / "rows.jsonl"
    lines = [{"review": "positive a"}, {"review": "negative b", "note": "x"}, {"review": "positive c", "id": 3}]
    data.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "out.csv"

    assert run(api_config, data, tmp_path, "--output", str(out)) == 0

    written = read_csv(out)
    assert list(written[0])[:3] == ["review", "note", "id"]
    assert [(row["note"], row["id"]) for row in written] == [("", ""), ("x", ""), ("", "3")]


def test_parquet_columns_all_reach_the_output(fake_server, api_config, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"review": ["positive a", "negative b"], "score": [1.5, None], "tags": [["a"], []]}), data)
    out = tmp_path / "out.csv"

    assert run(api_config, data, tmp_path, "--output", str(out)) == 0

    assert [(r["review"], r["score"], r["tags"]) for r in read_csv(out)] == [("positive a", "1.5", '["a"]'), ("negative b", "", "[]")]


# -- one line for each bad file or cache ------------------------------------------------------


BAD_FILES = {
    "corrupt parquet": ("rows.parquet", b"PAR1 this is not parquet", "cannot be read as parquet"),
    "non-UTF-8 JSONL": ("rows.jsonl", b'{"review": "caf\xe9"}\n', "not UTF-8 text"),
    "JSONL line that is not an object": ("rows.jsonl", b'{"review": "a"}\n[1, 2]\n', "line 2 is not a JSON object"),
    "JSONL line that is not JSON": ("rows.jsonl", b'{"review": "a"}\n{"review": \n', "line 2 is not valid JSON"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_data_files_are_one_line(fake_server, api_config, tmp_path, capsys, case):
    name, content, message = BAD_FILES[case]
    data = tmp_path / name
    data.write_bytes(content)

    assert run(api_config, data, tmp_path, "--output", str(tmp_path / "out.csv")) == 2

    error = one_line_error(capsys)
    assert error.startswith(f"error: {data}: ") and message in error, error
    assert fake_server.stats.requests == 0


@pytest.mark.parametrize(
    ("cache", "message"),
    [
        ("{tmp}", "cache: {tmp} is a folder; give a file path"),
        ("nosuchdb://x/y", "cache: unknown database type in 'nosuchdb://x/y'"),
        ("postgresql+nosuchdriver://u@h/db", "cache: unknown database type"),
        ("mysql://u@h/db", "cache: unknown database type in 'mysql://u@h/db'"),
        ("sqlite:///{tmp}/no/such/folder/c.sqlite", "cache: cannot open sqlite:///"),
    ],
)
def test_bad_cache_locations_are_one_line(fake_server, api_config, reviews_csv, tmp_path, capsys, cache, message):
    flags = ["--output", str(tmp_path / "out.csv"), "--cache", cache.format(tmp=tmp_path)]

    assert run(api_config, reviews_csv, tmp_path, *flags) == 2

    assert one_line_error(capsys).startswith("error: " + message.format(tmp=tmp_path))
    assert fake_server.stats.requests == 0


def test_a_postgresql_cache_without_its_driver_names_the_extra(fake_server, api_config, reviews_csv, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_psycopg(name, *args, **kwargs):
        if name.split(".")[0] == "psycopg":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    flags = ["--output", str(tmp_path / "out.csv"), "--cache", "postgresql+psycopg://u@127.0.0.1/db"]

    assert run(api_config, reviews_csv, tmp_path, *flags) == 2

    assert one_line_error(capsys) == "error: cache: postgresql+psycopg needs its database driver: pip install 'autolabel-lite[postgres]'"
