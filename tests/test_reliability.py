"""Reliability: injected faults, repeated kill -9 and resume, two processes sharing one
SQLite cache, and hostile input (template syntax in rows, sandbox escapes, API keys).

Every test talks to the fake OpenAI server on 127.0.0.1 only, with bounded row counts,
retries and timeouts. The plain-path checks (one fault, one interruption) live in
test_openai_provider.py and test_resume.py; these push the same guarantees harder.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_openai_server import FAULT_KINDS, INPUT_MARKER

from autolabel_lite import ConfigError, LabelingAgent
from autolabel_lite.cli import main

from conftest import read_csv, saved_rows, write_csv

ROW_TEXT = "Review {index}: a {label} experience."
# Each outcome a failed row may end with: a one-line reason, never a traceback.
FAILURE_REASONS = (
    "HTTP 429 from the model server",
    "HTTP 500 from the model server",
    "HTTP 503 from the model server",
    "cannot connect to the model server",
    "model server timed out",
    "malformed JSON from the model server",
    "model server returned no choices",
)


def expected_label(index: int) -> str:
    return "negative" if index % 3 == 0 else "positive"


def reviews(path: Path, count: int, start: int = 0) -> Path:
    """``count`` distinct reviews, each naming its label (the fake server answers with it)."""
    rows = [(ROW_TEXT.format(index=i, label=expected_label(i)), expected_label(i)) for i in range(start, start + count)]
    return write_csv(path, ["review", "gold"], rows)


def row_index(request) -> int:
    """Which row a recorded chat request was for, from the row text at the end of its prompt."""
    text = request.body["messages"][-1]["content"].rpartition(INPUT_MARKER)[2]
    return int(text.split("Review ", 1)[1].split(":", 1)[0])


def with_model(config: dict, **model) -> dict:
    changed = copy.deepcopy(config)
    changed["model"].update(model)
    return changed


def write_config(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "autolabel_lite.cli", "run", *args, "--no-progress"]


# -- faults ---------------------------------------------------------------------------------

FAULT_ROWS = 300
FAULT_RATE = 0.3


def test_300_rows_at_30_percent_faults_end_labeled_or_flagged_with_bounded_retries(fake_server, api_config, tmp_path, cache_path):
    fake_server.fault_rate = FAULT_RATE  # drawn from every kind: 429 (Retry-After: 0), 500, 503, drop, timeout, malformed, empty
    fake_server.hang_seconds = 3.0  # a "timeout" fault outlasts the client's timeout
    max_retries = 3
    config = with_model(api_config, max_retries=max_retries, timeout=0.5, concurrency=32)
    data = reviews(tmp_path / "reviews.csv", FAULT_ROWS)
    output = tmp_path / "labeled.csv"

    status = main(["run", str(write_config(tmp_path / "task.json", config)), str(data), "--output", str(output), "--no-progress"])

    assert status == 0
    assert all(fake_server.stats.faults[kind] > 0 for kind in FAULT_KINDS), fake_server.stats.faults
    rows = read_csv(output)
    # Nothing lost, duplicated or reordered: the output is the input, row for row.
    assert [(r["review"], r["gold"]) for r in rows] == [(r["review"], r["gold"]) for r in read_csv(data)]
    flagged = []
    for index, row in enumerate(rows):
        if row["sentiment_error"]:
            assert row["sentiment_label"] == "" and row["sentiment_accepted"] == "false"
            assert row["sentiment_error"].startswith(FAILURE_REASONS), row["sentiment_error"]
            assert "\n" not in row["sentiment_error"]
            flagged.append(index)
        else:
            assert row["sentiment_label"] == expected_label(index)
    assert 0 < len(flagged) < FAULT_ROWS / 4  # some rows run out of retries or hit a permanent fault, most recover
    saved = saved_rows(cache_path)
    assert len(saved) == len(set(saved)) == FAULT_ROWS
    # Retries are bounded by the config: at most max_retries + 1 attempts per row.
    attempts = Counter(row_index(request) for request in fake_server.requests)
    assert set(attempts) == set(range(FAULT_ROWS))
    assert max(attempts.values()) <= max_retries + 1
    assert sum(attempts.values()) == fake_server.stats.by_endpoint["chat"]

    # Once the server recovers, a rerun asks again for the flagged rows only and completes the job.
    fake_server.fault_rate = 0.0
    fake_server.reset()
    status = main(["run", str(tmp_path / "task.json"), str(data), "--output", str(output), "--no-progress"])

    assert status == 0
    assert sorted(row_index(request) for request in fake_server.requests) == flagged
    rows = read_csv(output)
    assert [r["sentiment_label"] for r in rows] == [expected_label(i) for i in range(FAULT_ROWS)]
    assert all(r["sentiment_error"] == "" for r in rows)


# -- crash and resume -------------------------------------------------------------------------

CRASH_ROWS = 1000  # each run is killed within about two flushes (128 rows): enough rows to outlast six
KILLS = 6
# A kill loses at most the rows finished since the last flush (under 64) and the rows in
# flight (4 at concurrency 4); the bound leaves room for a slow flush.
LOST_PER_KILL = 64 + 2 * 16


def test_six_kill_9s_at_random_points_then_resume_give_the_uninterrupted_csv(fake_server, api_config, tmp_path, cache_path):
    config = copy.deepcopy(api_config)
    config["model"].update(concurrency=4)
    config["model"]["compute_confidence"] = True  # the confidence column must survive the kills too
    config_path = write_config(tmp_path / "task.json", config)
    data = reviews(tmp_path / "reviews.csv", CRASH_ROWS)

    # The reference: one uninterrupted run with its own cache.
    reference = tmp_path / "reference.csv"
    assert main(["run", str(config_path), str(data), "--output", str(reference), "--cache", str(tmp_path / "reference.sqlite"), "--no-progress"]) == 0
    fake_server.reset()

    fake_server.latency = 0.04  # ~100 rows/s at concurrency 4: a run lasts long enough to be killed mid-way
    rng = random.Random(6)
    output = tmp_path / "labeled.csv"
    saved_counts = []
    for kill in range(KILLS):
        before = len(saved_rows(cache_path))
        log_path = tmp_path / f"run{kill}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(cli(str(config_path), str(data), "--output", str(output)), stdout=log, stderr=subprocess.STDOUT)
        if kill == 0:
            time.sleep(rng.uniform(0.2, 2.0))  # anywhere from start-up to the first rows
        else:
            deadline = time.monotonic() + 120
            while len(saved_rows(cache_path)) == before:  # this run is labeling: kill it somewhere in the next rows
                assert process.poll() is None, f"the run ended before it was killed:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, "the run saved no rows in time"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.6))
        assert process.poll() is None, f"the run ended before kill {kill}:\n{log_path.read_text()}"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
        saved_counts.append(len(saved_rows(cache_path)))
    assert not output.exists()
    assert saved_counts[-1] < CRASH_ROWS, "every row was saved before the last kill"
    assert saved_counts == sorted(saved_counts)  # a kill never loses saved rows

    fake_server.latency = 0.0
    done = subprocess.run(cli(str(config_path), str(data), "--output", str(output)), capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr
    assert f"resumed: {saved_counts[-1]}" in done.stderr
    assert read_csv(output) == read_csv(reference)
    saved = saved_rows(cache_path)
    assert len({run_key for run_key, _ in saved}) == 1
    assert sorted(index for _, index in saved) == list(range(CRASH_ROWS))
    # Work redone after the kills is bounded: each kill loses at most one flush's worth of rows.
    asked = Counter(row_index(request) for request in fake_server.requests)
    assert set(asked) == set(range(CRASH_ROWS))
    assert sum(asked.values()) - CRASH_ROWS <= KILLS * LOST_PER_KILL


# -- two processes, one cache -----------------------------------------------------------------

SHARED_ROWS = 300


def test_two_processes_label_at_once_with_one_sqlite_cache(fake_server, api_config, tmp_path):
    fake_server.latency = 0.01
    config_path = write_config(tmp_path / "task.json", with_model(api_config, concurrency=8))
    # The files overlap by half, so both processes write the same model-call keys.
    first = reviews(tmp_path / "first.csv", SHARED_ROWS)
    second = reviews(tmp_path / "second.csv", SHARED_ROWS, start=SHARED_ROWS // 2)
    shared_cache = tmp_path / "shared" / "cache.sqlite"  # created by whichever process gets there first

    processes = [
        subprocess.Popen(
            cli(str(config_path), str(data), "--output", str(tmp_path / f"{data.stem}_labeled.csv"), "--cache", str(shared_cache)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for data in (first, second)
    ]
    outcomes = [process.communicate(timeout=300) for process in processes]

    for process, (_, stderr) in zip(processes, outcomes):
        assert process.returncode == 0, stderr
        assert "locked" not in stderr and "Traceback" not in stderr
        assert "errors: 0" in stderr
    for data in (first, second):
        rows = read_csv(tmp_path / f"{data.stem}_labeled.csv")
        assert [r["review"] for r in rows] == [r["review"] for r in read_csv(data)]
        assert [r["sentiment_label"] for r in rows] == [r["gold"] for r in rows]
    saved = Counter(run_key for run_key, _ in saved_rows(shared_cache))
    assert sorted(saved.values()) == [SHARED_ROWS, SHARED_ROWS]
    with sqlite3.connect(shared_cache) as connection:
        (calls,) = connection.execute("SELECT COUNT(*) FROM model_calls").fetchone()
    assert calls == SHARED_ROWS * 3 // 2  # one entry per distinct prompt, whoever wrote it first


OPENERS = 4
ROUNDS = 5
# Each process imports, says it is ready, waits for "go", then opens a new cache per round,
# so the openings of a round fall within a millisecond of each other.
OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from autolabel_lite.cache import Cache
folder, name = Path(sys.argv[1]), sys.argv[2]
for round in range(int(sys.argv[3])):
    (folder / f"ready_{round}_{name}").touch()
    while not (folder / f"go_{round}").exists():
        time.sleep(0.0005)
    Cache(folder / f"cache_{round}.sqlite").close()
"""


def test_processes_creating_one_new_cache_at_the_same_moment_all_succeed(tmp_path):
    processes = [
        subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, str(tmp_path), str(n), str(ROUNDS)], stderr=subprocess.PIPE, text=True)
        for n in range(OPENERS)
    ]
    for round in range(ROUNDS):
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob(f"ready_{round}_*"))) < OPENERS and all(p.poll() is None for p in processes):
            assert time.monotonic() < deadline, "the processes did not get ready in time"
            time.sleep(0.005)
        (tmp_path / f"go_{round}").touch()
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * OPENERS, "\n".join(errors)
    for round in range(ROUNDS):
        with sqlite3.connect(tmp_path / f"cache_{round}.sqlite") as connection:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert {"model_calls", "row_results"} <= tables


# -- hostile input ------------------------------------------------------------------------------

TEMPLATE_SYNTAX = [
    "{{ 7*7 }}",
    "{% for x in range(3) %}loop{% endfor %}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ config }}{{ self }}",
    "{% raw %}{{ 7*7 }}{% endraw %}",
]


def test_template_syntax_in_rows_reaches_the_model_as_plain_text(fake_server, api_config, tmp_path):
    data = write_csv(tmp_path / "reviews.csv", ["review", "gold"], [(f"positive {text} end", "positive") for text in TEMPLATE_SYNTAX])
    output = tmp_path / "labeled.csv"

    status = main(["run", str(write_config(tmp_path / "task.json", api_config)), str(data), "--output", str(output), "--no-progress"])

    assert status == 0
    sent = [request.body["messages"][-1]["content"].rpartition(INPUT_MARKER)[2] for request in fake_server.requests]
    assert len(sent) == len(TEMPLATE_SYNTAX)
    for text in TEMPLATE_SYNTAX:
        assert sum(f"review: positive {text} end\n" in prompt for prompt in sent) == 1
    assert not any("49" in prompt or "looploop" in prompt for prompt in sent)
    rows = read_csv(output)
    assert [r["review"] for r in rows] == [f"positive {text} end" for text in TEMPLATE_SYNTAX]
    assert all(r["sentiment_label"] == "positive" and r["sentiment_error"] == "" for r in rows)


SANDBOX_ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__.os.system('id') }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ self._TemplateReference__context }}",
    "{{ current.__class__.__base__.__subclasses__() }}",
]


@pytest.mark.parametrize("escape", SANDBOX_ESCAPES)
def test_template_file_reaching_for_python_internals_is_refused_before_any_model_call(
    fake_server, api_config, reviews_csv, tmp_path, cache_path, capsys, escape
):
    (tmp_path / "evil.jinja").write_text(f"{escape}\n{{{{ current }}}}", encoding="utf-8")
    config = copy.deepcopy(api_config)
    config["prompt"]["template"] = "evil.jinja"

    status = main(["run", str(write_config(tmp_path / "task.json", config)), str(reviews_csv), "--no-progress"])

    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: prompt.template (evil.jinja): template refused by the sandbox: ") and err.count("\n") == 1, err
    assert fake_server.stats.requests == 0
    assert not cache_path.exists()


PLANTED_CONFIG_KEY = "sk-planted-config-7f3a9c1e5b"
PLANTED_ENV_KEY = "sk-planted-env-2d8e4b6f0a"


def test_planted_api_keys_stay_out_of_files_logs_and_errors_under_faults(
    fake_server, api_config, tmp_path, cache_path, monkeypatch, capsys, caplog
):
    caplog.set_level(logging.DEBUG)  # the SDK and HTTP client log every request and retry at debug level
    fake_server.script = ["429", "500", "drop", "timeout", "malformed", "empty_choices"] + ["500"] * 3
    fake_server.hang_seconds = 2.0
    data = reviews(tmp_path / "reviews.csv", 12)
    config_path = write_config(tmp_path / "task.json", with_model(api_config, api_key=PLANTED_CONFIG_KEY, timeout=0.5, max_retries=2, concurrency=1))
    written = [tmp_path / "labeled.csv", tmp_path / "rejected.csv"]
    assert main(["run", str(config_path), str(data), "--output", str(written[0]), "--rejected", str(written[1]), "--no-progress"]) == 0
    assert any(row["sentiment_error"] for row in read_csv(written[0]))  # the error paths really ran

    # The key from the environment, against a server that is not there: every row fails to connect.
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_ENV_KEY)
    unreachable = with_model(api_config, base_url="http://127.0.0.1:9/v1", max_retries=1)
    unreachable["prompt"]["task_guidelines"] = "Another job."
    written.append(tmp_path / "unreachable.csv")
    assert main(["run", str(write_config(tmp_path / "unreachable.json", unreachable)), str(data), "--output", str(written[2]), "--no-progress"]) == 0
    assert {row["sentiment_error"] for row in read_csv(written[2])} == {"cannot connect to the model server"}

    # A config error next to a key does not echo it.
    broken = with_model(api_config, api_key=PLANTED_CONFIG_KEY, timeout="soon")
    with pytest.raises(ConfigError) as caught:
        LabelingAgent(broken)
    messages = [str(caught.value), repr(caught.value), repr(LabelingAgent(with_model(api_config, api_key=PLANTED_CONFIG_KEY)).config)]

    # The keys were really sent.
    assert f"Bearer {PLANTED_CONFIG_KEY}" in {request.headers.get("authorization") for request in fake_server.requests}
    stored = sorted(tmp_path.glob(cache_path.name + "*"))  # the database and its -wal/-shm files
    assert cache_path in stored
    shown = capsys.readouterr()
    logs = "\n".join(f"{record.getMessage()} {record.args!r} {record.exc_text or ''}" for record in caplog.records)
    texts = [shown.out, shown.err, logs, *messages]
    for key in (PLANTED_CONFIG_KEY, PLANTED_ENV_KEY):
        for path in [*stored, *written]:
            assert key.encode() not in path.read_bytes(), f"API key found in {path.name}"
        assert not any(key in text for text in texts)
