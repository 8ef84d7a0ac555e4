"""Bad input, as a user would hand it to ``autolabel-lite run``: each case ends with one
clear line naming the file, column or config key (exit status 2, nothing written, no
model call), or with the row kept and flagged in its ``_error`` column. Never a
traceback, never a row silently dropped.
"""

from __future__ import annotations

import copy
import csv
import json
import socket
import sqlite3
from pathlib import Path

import pytest

from autolabel_lite.cli import main

from conftest import read_csv, write_csv

MEGABYTE = 1_000_000


def run(config: dict | str, data: Path, tmp_path: Path, *flags: str) -> tuple[int, Path]:
    """``autolabel-lite run`` in process; ``config`` is a dict, or raw text for the config file."""
    config_path = tmp_path / "task.json"
    config_path.write_text(config if isinstance(config, str) else json.dumps(config), encoding="utf-8")
    output = tmp_path / "labeled.csv"
    return main(["run", str(config_path), str(data), "--output", str(output), "--no-progress", *flags]), output


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


def changed(config: dict, section: str, **values) -> dict:
    config = copy.deepcopy(config)
    config[section].update(values)
    return config


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_wide_csv(path: Path) -> list[dict[str, str]]:
    """``read_csv`` for cells larger than the csv module's default limit (128 KiB)."""
    previous = csv.field_size_limit(4 * MEGABYTE)
    try:
        return read_csv(path)
    finally:
        csv.field_size_limit(previous)


# -- refused with one line ------------------------------------------------------------------


def write_bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


DATA_ERRORS = {
    "missing input file": (lambda tmp: tmp / "absent.csv", "input file not found: {path}"),
    "missing configured column": (
        lambda tmp: write_csv(tmp / "reviews.csv", ["text", "gold"], [("fine", "positive")]),
        "{path}: missing configured column 'review' (has: text, gold)",
    ),
    "empty file": (lambda tmp: write_bytes(tmp / "reviews.csv", b""), "{path}: file is empty"),
    "header only": (lambda tmp: write_bytes(tmp / "reviews.csv", b"review,gold\n"), "{path}: has a header but no rows"),
    "non-UTF-8 header": (lambda tmp: write_bytes(tmp / "reviews.csv", b"r\xe9view,gold\nfine,positive\n"), "{path}: not UTF-8 text"),
    "non-UTF-8 row": (
        lambda tmp: write_bytes(tmp / "reviews.csv", b"review,gold\nfine,positive\nna\xefve \xff,negative\n"),
        "{path}: not UTF-8 text",
    ),
    "unsupported file type": (lambda tmp: write_bytes(tmp / "reviews.xlsx", b"PK\x03\x04"), "{path}: unsupported file type '.xlsx'"),
}


@pytest.mark.parametrize("case", DATA_ERRORS)
def test_unusable_data_file_is_one_line_naming_the_file(fake_server, api_config, tmp_path, capsys, case):
    make, expected = DATA_ERRORS[case]
    data = make(tmp_path)

    status, output = run(api_config, data, tmp_path)

    assert status == 2
    assert one_line_error(capsys).startswith("error: " + expected.format(path=data))
    assert not output.exists()
    assert fake_server.stats.requests == 0


CONFIG_ERRORS = {
    "not JSON": (lambda config: json.dumps(config)[:-1] + ",}", "{config}: not valid JSON (Expecting property name"),
    "labels collide after normalising": (
        lambda config: changed(config, "prompt", labels=["Positive", "negative", " positive "]),
        "prompt.labels: labels collide after normalising case and whitespace:  positive , Positive",
    ),
    "unknown provider": (
        lambda config: changed(config, "model", provider="opneai"),
        "model.provider: unknown provider 'opneai'; expected one of ",
    ),
    "few-shot CSV not found": (
        lambda config: changed(config, "prompt", few_shot_examples="shots/examples.csv"),
        "prompt.few_shot_examples: file not found: {folder}/shots/examples.csv",
    ),
    # A key the model never sees would still change the cache key: refused, not ignored.
    "model.params a local model does not read": (
        lambda config: changed(config, "model", provider="transformers", name="tiny", params={"top_p": 0.9}),
        "model.params: 'top_p' is not read by provider 'transformers' (it reads prefix_reuse, seed, temperature)",
    ),
    "model.params.max_tokens": (
        lambda config: changed(config, "model", params={"max_tokens": 5}),
        "model.params.max_tokens: the answer length is prompt.max_output_tokens",
    ),
}


@pytest.mark.parametrize("case", CONFIG_ERRORS)
def test_bad_config_is_one_line_naming_the_key_or_file(fake_server, api_config, reviews_csv, tmp_path, capsys, case):
    make, expected = CONFIG_ERRORS[case]

    status, output = run(make(api_config), reviews_csv, tmp_path)

    assert status == 2
    assert one_line_error(capsys).startswith("error: " + expected.format(config=tmp_path / "task.json", folder=tmp_path))
    assert not output.exists()
    assert fake_server.stats.requests == 0


def test_non_utf8_bytes_deep_in_a_large_file_are_refused_before_any_row_is_labeled(
    fake_server, api_config, tmp_path, cache_path, capsys
):
    # Far past the first rows: the whole file is checked when it is opened, not when the run reaches them.
    lines = [b"review,gold\n", *[b"fine,positive\n"] * 25_000]
    bad_at = sum(map(len, lines)) + len(b"bad ")
    data = write_bytes(tmp_path / "reviews.csv", b"".join([*lines, b"bad \xff byte,negative\n"]))

    status, output = run(api_config, data, tmp_path)

    assert status == 2
    assert one_line_error(capsys) == f"error: {data}: not UTF-8 text (invalid start byte at byte {bad_at}); re-save it as UTF-8"
    assert not output.exists()
    assert fake_server.stats.requests == 0


# -- kept and flagged -----------------------------------------------------------------------


def test_rows_with_empty_text_are_flagged_without_a_model_call(fake_server, api_config, tmp_path):
    # Quoted empty, spaces only, and a blank line in a one-column file: three rows with no text.
    data = write_bytes(tmp_path / "reviews.csv", b'review\nfirst positive\n""\n   \n\nlast negative\n')
    config = copy.deepcopy(api_config)
    config["dataset"]["label_column"] = None

    status, output = run(config, data, tmp_path)

    assert status == 0
    rows = read_csv(output)
    assert [r["review"] for r in rows] == ["first positive", "", "   ", "", "last negative"]
    assert [r["sentiment_error"] for r in rows] == ["", "empty input", "empty input", "empty input", ""]
    assert [r["sentiment_label"] for r in rows] == ["positive", "", "", "", "negative"]
    assert fake_server.stats.by_endpoint["chat"] == 2


def test_a_1_mb_text_cell_is_trimmed_with_a_note_and_kept_whole_in_the_output(fake_server, api_config, tmp_path):
    huge = "positive " + "x" * (MEGABYTE - 9)
    data = write_csv(tmp_path / "reviews.csv", ["review", "gold"], [("short and negative", "negative"), (huge, "positive")])
    limit = 20_000

    status, output = run(changed(api_config, "dataset", max_input_chars=limit), data, tmp_path)

    assert status == 0
    short, trimmed = read_wide_csv(output)
    assert (short["sentiment_label"], short["sentiment_error"]) == ("negative", "")
    assert trimmed["review"] == huge  # the input is exported unchanged
    assert trimmed["sentiment_label"] == "positive"
    assert trimmed["sentiment_error"] == f"review: input trimmed from {MEGABYTE} to {limit} characters"
    assert trimmed["sentiment_accepted"] == "false"  # a label on part of the text waits for review
    sent = max(len(request.body["messages"][-1]["content"]) for request in fake_server.requests)
    assert limit < sent < limit + 2_000


def test_unreachable_base_url_flags_every_row_after_bounded_retries(fake_server, api_config, reviews_csv, tmp_path):
    config = changed(api_config, "model", base_url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=1)

    status, output = run(config, reviews_csv, tmp_path)

    assert status == 0
    rows = read_csv(output)
    assert [r["review"] for r in rows] == [r["review"] for r in read_csv(reviews_csv)]
    assert {(r["sentiment_label"], r["sentiment_error"], r["sentiment_accepted"]) for r in rows} == {
        ("", "cannot connect to the model server", "false")
    }

    # Pointed at a live server, the same job retries exactly the flagged rows.
    status, output = run(changed(api_config, "model", max_retries=1), reviews_csv, tmp_path)
    assert status == 0
    assert [r["sentiment_label"] for r in read_csv(output)] == [r["gold"] for r in read_csv(reviews_csv)]
    assert fake_server.stats.by_endpoint["chat"] == len(rows)
