"""The model-call cache: what its keys depend on, reruns that make no calls, and no secrets on disk.

Runs go through the real ``openai`` client against the fake server, so "a model call"
is a request the server actually received.
"""

from __future__ import annotations

import copy
import json
import shutil
import sqlite3
import subprocess
import sys

import pytest

from autolabel_lite import LabelingAgent
from autolabel_lite.cache import stable_hash
from autolabel_lite.cli import main

from conftest import REVIEWS, read_csv, saved_rows

PLANTED_CONFIG_KEY = "sk-test-PLANTEDinCONFIG-7f3a9c"
PLANTED_ENV_KEY = "sk-test-PLANTEDinENV-51d2e8"


def chat_requests(server) -> int:
    return server.stats.by_endpoint["chat"]


def run(config: dict, data, **kwargs):
    return LabelingAgent(config, **kwargs).run(data, progress=False)


def test_stable_hash_ignores_dict_order_but_not_values():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1, "b": [1, 2]}) != stable_hash({"a": 1, "b": [2, 1]})


@pytest.mark.usefixtures("any_cache")
def test_rerun_of_the_same_job_makes_no_model_calls(fake_server, api_config, reviews_csv, tmp_path):
    first = run(api_config, reviews_csv)
    first.to_csv(tmp_path / "first.csv")
    requests_after_first = chat_requests(fake_server)
    assert first.stats.model_calls == len(REVIEWS) == requests_after_first

    second = run(api_config, reviews_csv)
    second.to_csv(tmp_path / "second.csv")

    assert second.stats.model_calls == 0
    assert second.stats.resumed == len(REVIEWS)
    assert chat_requests(fake_server) == requests_after_first
    assert read_csv(tmp_path / "second.csv") == read_csv(tmp_path / "first.csv")


@pytest.mark.usefixtures("any_cache")
def test_same_prompts_in_another_job_are_answered_from_the_cache(fake_server, api_config, reviews_csv, tmp_path):
    run(api_config, reviews_csv).to_csv(tmp_path / "first.csv")
    requests_after_first = chat_requests(fake_server)
    copy_of_data = shutil.copy(reviews_csv, tmp_path / "same_rows.csv")  # another file: a new job

    again = run(api_config, copy_of_data)
    again.to_csv(tmp_path / "again.csv")

    assert again.stats.resumed == 0
    assert again.stats.model_calls == 0
    assert again.stats.cache_hits == len(REVIEWS)
    assert chat_requests(fake_server) == requests_after_first
    assert [r["sentiment_label"] for r in read_csv(tmp_path / "again.csv")] == [label for _, label in REVIEWS]


@pytest.mark.usefixtures("any_cache")
def test_a_run_resumes_under_other_speed_settings(fake_server, api_config, reviews_csv):
    run(api_config, reviews_csv, concurrency=1)
    requests_after_first = chat_requests(fake_server)
    faster = variant(variant(api_config, "model", "max_retries", 1), "model", "timeout", 5.0)

    again = run(faster, reviews_csv, concurrency=16)

    assert again.stats.resumed == len(REVIEWS)
    assert chat_requests(fake_server) == requests_after_first


def variant(config: dict, section: str, key: str, value) -> dict:
    changed = copy.deepcopy(config)
    changed[section][key] = value
    return changed


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("prompt", "task_guidelines", "Classify the review's sentiment, carefully."),
        ("prompt", "max_output_tokens", 8),
        ("model", "params", {"temperature": 0.5}),
        ("model", "params", {"top_p": 0.9}),
        ("model", "name", "another-model"),
    ],
    ids=["prompt text", "max tokens", "temperature", "other param", "model"],
)
@pytest.mark.usefixtures("any_cache")
def test_what_the_model_sees_is_part_of_the_key(fake_server, api_config, reviews_csv, section, key, value):
    run(api_config, reviews_csv)
    before = chat_requests(fake_server)

    changed = run(variant(api_config, section, key, value), reviews_csv)

    assert changed.stats.model_calls == len(REVIEWS)
    assert changed.stats.cache_hits == 0
    assert chat_requests(fake_server) == before + len(REVIEWS)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("model", "concurrency", 1),
        ("model", "max_retries", 0),
        ("model", "timeout", 5.0),
        ("model", "api_key", "sk-test-another-key"),
    ],
)
@pytest.mark.usefixtures("any_cache")
def test_settings_the_model_never_sees_are_not_part_of_the_key(fake_server, api_config, reviews_csv, section, key, value):
    run(api_config, reviews_csv)
    before = chat_requests(fake_server)

    changed = run(variant(api_config, section, key, value), reviews_csv)

    assert changed.stats.model_calls == 0
    assert chat_requests(fake_server) == before


def test_config_params_reach_the_server(fake_server, api_config, reviews_csv):
    run(variant(api_config, "model", "params", {"temperature": 0.5, "top_p": 0.9}), reviews_csv)
    bodies = [request.body for request in fake_server.requests]
    assert bodies and all(body["temperature"] == 0.5 and body["top_p"] == 0.9 for body in bodies)


def test_api_key_never_reaches_the_cache_csv_or_output(
    fake_server, api_config, reviews_csv, cache_path, tmp_path, monkeypatch, capsys, caplog
):
    # One run with the key in the config, one (another job, from the CLI) with the key in the environment.
    with_config_key = variant(api_config, "model", "api_key", PLANTED_CONFIG_KEY)
    run(with_config_key, reviews_csv).to_csv(tmp_path / "config_key.csv")

    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_ENV_KEY)
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(variant(api_config, "prompt", "task_guidelines", "Env key run.")))
    status = main(["run", str(config_path), str(reviews_csv), "--output", str(tmp_path / "env_key.csv"), "--no-progress"])
    assert status == 0

    # The keys were really used: the server received both.
    authorizations = {request.headers.get("authorization") for request in fake_server.requests}
    assert {f"Bearer {PLANTED_CONFIG_KEY}", f"Bearer {PLANTED_ENV_KEY}"} <= authorizations

    stored = sorted(tmp_path.glob(cache_path.name + "*"))  # the database and its -wal/-shm files
    assert cache_path in stored
    written = [*stored, tmp_path / "config_key.csv", tmp_path / "env_key.csv"]
    for path in written:
        content = path.read_bytes()
        for key in (PLANTED_CONFIG_KEY, PLANTED_ENV_KEY):
            assert key.encode() not in content, f"API key found in {path.name}"
            assert key.encode("utf-16-le") not in content
    shown = capsys.readouterr()
    for key in (PLANTED_CONFIG_KEY, PLANTED_ENV_KEY):
        assert key not in shown.out + shown.err + caplog.text


def test_cache_is_sqlite_in_wal_mode(fake_server, api_config, reviews_csv, cache_path):
    run(api_config, reviews_csv)
    with sqlite3.connect(cache_path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"model_calls", "row_results"} <= tables


def test_cache_accepts_a_database_url(fake_server, api_config, reviews_csv, tmp_path, cache_path):
    url_path = tmp_path / "elsewhere" / "by_url.sqlite"
    url_path.parent.mkdir()
    result = run(api_config, reviews_csv, cache=f"sqlite:///{url_path}")
    result.to_csv(tmp_path / "out.csv")
    assert [r["sentiment_label"] for r in read_csv(tmp_path / "out.csv")] == [label for _, label in REVIEWS]
    assert url_path.is_file()
    assert not cache_path.exists()


def test_a_lookup_sees_calls_another_writer_saved_after_it_started(any_cache):
    # The lookup connection stays open for the run: it must not hold a stale snapshot
    # (another process labeling with the same cache saves calls meanwhile).
    from autolabel_lite.cache import Cache

    reader, writer = Cache(any_cache), Cache(any_cache)
    writer.put_call("first", {"text": "positive"})
    assert reader.get_call("first") == {"text": "positive"}
    assert reader.get_call("second") is None
    writer.put_call("second", {"text": "negative", "tokens": ["neg", "ative"]})
    assert reader.get_call("second") == {"text": "negative", "tokens": ["neg", "ative"]}
    reader.close()
    writer.close()


def test_a_batch_saved_twice_gets_back_its_first_results(any_cache):
    # A retried Ray task saves its batch again: finished rows keep their first result,
    # a row that failed retryably (final=False) takes the new one.
    from autolabel_lite.cache import Cache, RowResult

    cache = Cache(any_cache)
    first = cache.save_rows("run", [RowResult(2, label="b"), RowResult(0, label="a"), RowResult(1, error="timeout", final=False)])
    assert {i: (r.label, r.final) for i, r in first.items()} == {0: ("a", True), 1: ("", False), 2: ("b", True)}

    again = cache.save_rows("run", [RowResult(0, label="other"), RowResult(1, label="c"), RowResult(2, label="other")])

    assert {i: (r.label, r.error, r.final) for i, r in again.items()} == {0: ("a", "", True), 1: ("c", "", True), 2: ("b", "", True)}
    assert {i: r.label for i, r in cache.load_rows("run", 0, 3).items()} == {0: "a", 1: "c", 2: "b"}
    cache.close()


TWO_WRITERS = """
import json, sys, time
from pathlib import Path
from autolabel_lite.cache import Cache, RowResult

url, writer, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
while not go.exists():
    time.sleep(0.005)
cache = Cache(url)  # both create the schema of a new database at once
keys = range(200) if writer == "a" else reversed(range(200))
calls = {k: cache.put_call(f"call-{k}", {"writer": writer}) for k in keys}
rows = {}
for start in range(0, 200, 20):  # overlapping batches, each in its own order
    batch = [RowResult(i, label=writer) for i in range(start, start + 40) if i < 200]
    if writer == "b":
        batch.reverse()
    rows.update((i, r.label) for i, r in cache.save_rows("run", batch).items())
print(json.dumps({"calls": calls, "rows": rows}))
"""


def test_two_writers_on_the_same_keys_store_and_get_back_one_answer_each(any_cache, tmp_path):
    go = tmp_path / "go"
    writers = [
        subprocess.Popen([sys.executable, "-c", TWO_WRITERS, any_cache, name, str(go)], stdout=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    go.touch()
    outputs = [json.loads(process.communicate(timeout=120)[0]) for process in writers]
    assert [process.returncode for process in writers] == [0, 0]

    from autolabel_lite.cache import Cache

    cache = Cache(any_cache)
    stored_calls = {str(k): cache.get_call(f"call-{k}") for k in range(200)}
    stored_rows = {str(i): r.label for i, r in cache.load_rows("run", 0, 200).items()}
    cache.close()
    assert set(stored_rows) == {str(i) for i in range(200)}
    for output in outputs:  # each writer got back what is stored, whoever stored it first
        assert output["calls"] == stored_calls
        assert output["rows"] == stored_rows
    assert {value["writer"] for value in stored_calls.values()} <= {"a", "b"}
    assert len(saved_rows(any_cache)) == 200
