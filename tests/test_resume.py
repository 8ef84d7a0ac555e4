"""A run killed mid-way resumes and ends with every row labeled exactly once.

The run is a real ``autolabel-lite`` process labeling through the fake server with some
latency, so it is mid-run when the test kills it (SIGKILL, or SIGINT as Ctrl-C sends).
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from autolabel_lite import LabelingAgent

from conftest import read_csv, saved_rows, write_csv

ROWS = 40
LATENCY_SECONDS = 0.25  # per request; with two in flight the whole run takes ~5 s
START_TIMEOUT_SECONDS = 120
ROW_TEXT = re.compile(r"Row (\d+):")


def expected_label(index: int) -> str:
    return "positive" if index % 3 else "negative"


def kill_mid_run(command: list[str], cache_path, how: signal.Signals, log_path, ready=None) -> subprocess.Popen:
    """Start ``command`` and send ``how`` once ``ready()`` (default: it has saved some rows)."""
    ready = ready or (lambda: saved_rows(cache_path))
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the run ended (status {process.returncode}) before it could be interrupted:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the run saved no rows in time")
        time.sleep(0.02)
    os.kill(process.pid, how)
    process.wait(timeout=60)
    return process


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["kill -9", "ctrl-c"])
def test_interrupted_run_resumes_with_every_row_labeled_once(fake_server, api_config, tmp_path, any_cache, how):
    data = write_csv(
        tmp_path / "reviews.csv",
        ["review", "gold"],
        [(f"Row {i}: a {expected_label(i)} review.", expected_label(i)) for i in range(ROWS)],
    )
    config = copy.deepcopy(api_config)
    config["model"]["concurrency"] = 2
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    output = tmp_path / "labeled.csv"
    fake_server.latency = LATENCY_SECONDS

    command = [sys.executable, "-m", "autolabel_lite.cli", "run", str(config_path), str(data), "--output", str(output), "--no-progress"]
    # Killed well into the run, between any two writes a batching cache would make.
    answered = lambda: fake_server.stats.responses[200] >= ROWS // 3  # noqa: E731
    process = kill_mid_run(command, any_cache, how, tmp_path / "run.log", ready=answered)

    log = (tmp_path / "run.log").read_text()
    if how == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 130, log
        assert "interrupted: finished rows are saved" in log
    assert not output.exists()
    saved_before = {index for _, index in saved_rows(any_cache)}
    assert 0 < len(saved_before) < ROWS, "the run was not interrupted mid-way"

    fake_server.latency = 0.0
    requests_before = len(fake_server.requests)
    result = LabelingAgent(config_path).run(data, progress=False)
    result.to_csv(output)

    assert result.stats.rows == ROWS
    assert result.stats.resumed == len(saved_before)
    assert result.stats.labeled == ROWS - len(saved_before)
    # No row saved before the interruption went to the model again.
    asked_again = {
        int(ROW_TEXT.search(request.body["messages"][-1]["content"].rpartition("Now the input to label:")[2]).group(1))
        for request in fake_server.requests[requests_before:]
    }
    assert not asked_again & saved_before
    # Every answered call and finished row was committed before it counted: the only rows asked
    # twice are those whose call was in flight at the kill (at most the concurrency).
    asked_first = {
        int(ROW_TEXT.search(request.body["messages"][-1]["content"].rpartition("Now the input to label:")[2]).group(1))
        for request in fake_server.requests[:requests_before]
    }
    assert len(asked_first & asked_again) <= config["model"]["concurrency"]
    assert len(fake_server.requests) <= ROWS + config["model"]["concurrency"]

    rows = read_csv(output)
    assert [r["review"] for r in rows] == [f"Row {i}: a {expected_label(i)} review." for i in range(ROWS)]
    assert [r["sentiment_label"] for r in rows] == [expected_label(i) for i in range(ROWS)]
    assert all(r["sentiment_error"] == "" and r["sentiment_accepted"] == "true" for r in rows)

    records = saved_rows(any_cache)
    assert len({run_key for run_key, _ in records}) == 1
    assert sorted(index for _, index in records) == list(range(ROWS))
