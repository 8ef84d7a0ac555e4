"""The Ray engine on a local Ray cluster (2 CPUs): the local engine's output, each row labeled
once and each model call made once, through a driver or an actor killed mid-run.

Model calls are requests counted at the fake server; the runs label through the real
``openai`` client. The killed runs are real ``autolabel-lite`` processes.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from autolabel_lite import LabelingAgent
from autolabel_lite.cli import main
from autolabel_lite.engines.ray_data import ROWS_PER_BATCH_PER_REQUEST

from conftest import read_csv, saved_rows, write_csv
from test_resume import kill_mid_run

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'autolabel-lite[ray]')")

pytestmark = pytest.mark.timeout(300)

ROWS = 64
CONCURRENCY = 2
WORKERS = 2
ROW_TEXT = re.compile(r"Row (\d+):")


def expected_label(index: int) -> str:
    return "positive" if index % 3 else "negative"


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray cluster for the in-process runs of this module, as the issue's CI sizes it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture
def reviews(tmp_path):
    rows = [(f"Row {i}: a {expected_label(i)} review.", expected_label(i)) for i in range(ROWS)]
    return write_csv(tmp_path / "reviews.csv", ["review", "gold"], rows)


@pytest.fixture
def config(api_config) -> dict:
    config = copy.deepcopy(api_config)
    config["model"]["concurrency"] = CONCURRENCY
    return config


def asked_rows(requests) -> list[int]:
    """The row number each chat request asked about."""
    return [
        int(ROW_TEXT.search(request.body["messages"][-1]["content"].rpartition("Now the input to label:")[2]).group(1))
        for request in requests
    ]


def check_every_row_once(output, cache) -> None:
    rows = read_csv(output)
    assert [r["review"] for r in rows] == [f"Row {i}: a {expected_label(i)} review." for i in range(ROWS)]
    assert [r["sentiment_label"] for r in rows] == [expected_label(i) for i in range(ROWS)]
    assert all(r["sentiment_error"] == "" and r["sentiment_accepted"] == "true" for r in rows)
    records = saved_rows(cache)
    assert len({run_key for run_key, _ in records}) == 1
    assert sorted(index for _, index in records) == list(range(ROWS))


def test_ray_writes_the_local_engine_file_with_one_model_per_actor(local_ray, fake_server, config, reviews, tmp_path, any_cache):
    LabelingAgent(config, cache=tmp_path / "local.sqlite").run(reviews, progress=False).to_csv(tmp_path / "local.csv")
    fake_server.reset()

    result = LabelingAgent(config).run(reviews, progress=False, engine="ray", workers=WORKERS)
    result.to_csv(tmp_path / "ray.csv")

    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert sorted(asked_rows(fake_server.requests)) == list(range(ROWS))  # each row asked once
    assert result.stats.model_calls == ROWS and result.stats.labeled == ROWS
    # ROWS / (8 × CONCURRENCY) = 4 batches, but one labeler (one model, one HTTP client) per actor
    # (an actor that starts late may get no batch): the server saw no more connections than the
    # labelers' requests in flight.
    assert ROWS // (ROWS_PER_BATCH_PER_REQUEST * CONCURRENCY) > WORKERS
    assert 1 <= result.stats.labelers <= WORKERS
    assert fake_server.stats.connections <= result.stats.labelers * CONCURRENCY
    check_every_row_once(tmp_path / "ray.csv", any_cache)


def test_a_second_ray_run_makes_no_model_calls(local_ray, fake_server, config, reviews, tmp_path, cache_path):
    LabelingAgent(config).run(reviews, progress=False, engine="ray", workers=WORKERS).to_csv(tmp_path / "first.csv")
    requests = len(fake_server.requests)

    again = LabelingAgent(config).run(reviews, progress=False, engine="ray", workers=WORKERS)
    again.to_csv(tmp_path / "second.csv")

    assert requests == ROWS
    assert len(fake_server.requests) == requests
    assert again.stats.model_calls == 0 and again.stats.resumed == ROWS
    assert read_csv(tmp_path / "second.csv") == read_csv(tmp_path / "first.csv")


def ray_command(config: dict, data, output, tmp_path) -> list[str]:
    config_path = tmp_path / "task.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return [
        sys.executable, "-m", "autolabel_lite.cli", "run", str(config_path), str(data),
        "--output", str(output), "--no-progress", "--engine", "ray", "--workers", str(WORKERS),
    ]  # fmt: skip


def wait_until_no_rows_are_saved(cache, quiet_seconds: float = 3.0, timeout: float = 60.0) -> list[tuple[str, int]]:
    """The saved rows once none has been added for ``quiet_seconds``."""
    deadline = time.monotonic() + timeout
    rows, since = saved_rows(cache), time.monotonic()
    while time.monotonic() - since < quiet_seconds:
        assert time.monotonic() < deadline, "rows were still being saved a minute after the driver was killed"
        time.sleep(0.25)
        now = saved_rows(cache)
        if len(now) != len(rows):
            rows, since = now, time.monotonic()
    return rows


def test_a_ray_run_resumed_after_its_driver_is_killed_labels_every_row_once(
    local_ray, fake_server, config, reviews, tmp_path, any_cache
):
    output = tmp_path / "labeled.csv"
    fake_server.latency = 0.25
    answered = lambda: fake_server.stats.responses[200] >= ROWS // 3 and saved_rows(any_cache)  # noqa: E731
    process = kill_mid_run(ray_command(config, reviews, output, tmp_path), any_cache, signal.SIGKILL, tmp_path / "run.log", ready=answered)
    assert process.returncode == -signal.SIGKILL
    # The driver's local cluster dies with it, but an actor may commit the batch it was on first.
    saved_before = {index for _, index in wait_until_no_rows_are_saved(any_cache)}
    assert 0 < len(saved_before) < ROWS, "the run was not interrupted mid-way"

    fake_server.latency = 0.0
    requests_before = len(fake_server.requests)
    result = LabelingAgent(config).run(reviews, progress=False, engine="ray", workers=WORKERS)
    result.to_csv(output)

    assert result.stats.resumed == len(saved_before)
    asked_again = asked_rows(fake_server.requests[requests_before:])
    assert not set(asked_again) & saved_before  # a saved row never goes to the model again
    # Answered calls were stored as they arrived: only the calls in flight at the kill are asked twice.
    asked_twice = set(asked_rows(fake_server.requests[:requests_before])) & set(asked_again)
    assert len(asked_twice) <= WORKERS * CONCURRENCY
    check_every_row_once(output, any_cache)


# Loaded by every Python process started with this folder on PYTHONPATH, Ray's actors too:
# the first actor to commit a batch dies right after the commit, as a crashed or preempted
# worker would. The marker file makes it once across processes.
EXIT_AFTER_FIRST_COMMIT = """
import os

import autolabel_lite.cache as cache

_save_rows = cache.Cache.save_rows


def save_rows_then_exit_once(self, run_key, results):
    stored = _save_rows(self, run_key, results)
    try:
        os.close(os.open(os.environ["AUTOLABEL_TEST_EXIT_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return stored
    os._exit(1)


cache.Cache.save_rows = save_rows_then_exit_once
"""


def test_an_actor_killed_after_a_commit_costs_no_model_call_twice(fake_server, config, reviews, tmp_path, any_cache, monkeypatch):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(EXIT_AFTER_FIRST_COMMIT)
    marker = tmp_path / "actor_exited"
    monkeypatch.setenv("AUTOLABEL_TEST_EXIT_MARKER", str(marker))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")])))
    output = tmp_path / "labeled.csv"

    # Its own process (the hook must not load into this one), with its own local Ray cluster.
    run = subprocess.run(ray_command(config, reviews, output, tmp_path), capture_output=True, text=True, timeout=240)

    assert run.returncode == 0, run.stderr[-3000:]
    assert marker.exists(), "no actor exited: the test did not test a retried batch"
    # The dead actor's batch was retried on a new actor: its calls came from the cache.
    counts = collections.Counter(asked_rows(fake_server.requests))
    assert sorted(counts) == list(range(ROWS)) and set(counts.values()) == {1}
    check_every_row_once(output, any_cache)


# In an actor only (the driver never builds one): what a worker missing a GPU driver or a
# package would raise while it starts.
ACTORS_CANNOT_START = """
import autolabel_lite.engines.ray_data as ray_data


def cannot_start(self, make_labeler, run_key):
    raise RuntimeError("this worker has no CUDA driver")


ray_data.LabelBatches.__init__ = cannot_start
"""


def test_an_actor_that_cannot_start_is_a_one_line_error(fake_server, config, reviews, tmp_path, monkeypatch):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(ACTORS_CANNOT_START)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")])))

    run = subprocess.run(ray_command(config, reviews, tmp_path / "out.csv", tmp_path), capture_output=True, text=True, timeout=240)

    assert run.returncode == 2, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]  # Ray prints the actor's traceback above it
    assert last == "error: ray: a labeling actor could not start: RuntimeError: this worker has no CUDA driver"
    assert not (tmp_path / "out.csv").exists()
    assert not fake_server.requests


def test_a_bad_setting_is_one_line_before_ray_starts(fake_server, config, reviews, tmp_path, capsys):
    config["model"]["compute_confidence"] = True
    config["confidence"] = {"method": "learned"}  # needs the learned labeler, which an API model has not
    command = ray_command(config, reviews, tmp_path / "out.csv", tmp_path)

    assert main(command[3:]) == 2

    assert capsys.readouterr().err.strip() == "error: confidence.method: learned needs the learned labeler (see learning.enabled)"


def test_without_ray_the_engine_is_a_one_line_error(fake_server, config, reviews, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as when the extra is not installed
    command = ray_command(config, reviews, tmp_path / "out.csv", tmp_path)

    assert main(command[3:]) == 2

    err = capsys.readouterr().err.strip()
    assert err == "error: --engine ray needs Ray: pip install 'autolabel-lite[ray]'"
    assert not fake_server.requests
