"""Shared fixtures: an isolated cache per test, the fake OpenAI server, small datasets."""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

# Before anything imports huggingface_hub: tests never download weights.
os.environ["HF_HUB_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "bench"))

from fake_openai_server import FakeOpenAIServer  # noqa: E402  (lives in bench/, not a package)

LABELS = ["positive", "negative"]
# Each review names its label, so the fake server's default responder answers it deterministically.
REVIEWS = [
    ("Row one: a positive experience overall.", "positive"),
    ("Row two: negative, it broke at once.", "negative"),
    ("Row three: positive, would buy again.", "positive"),
    ("Row four: sadly negative about the fit.", "negative"),
]


def write_csv(path: Path, header: list[str], rows: list[tuple | list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``autolabel-lite`` in its own process, exactly as a user runs it (stderr as the user sees it)."""
    command = [sys.executable, "-m", "autolabel_lite.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


# A PostgreSQL server for the cache tests: .ci/run starts a throwaway one and names it here.
POSTGRES_URL = os.environ.get("AUTOLABEL_TEST_POSTGRES_URL")


def saved_rows(cache: Path | str) -> list[tuple[str, int]]:
    """(run_key, row_index) of every saved row result, read as another process would."""
    if "://" in str(cache):
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import ProgrammingError

        engine = create_engine(str(cache))
        try:
            with engine.connect() as connection:
                return [tuple(r) for r in connection.execute(text("SELECT run_key, row_index FROM row_results"))]
        except ProgrammingError:  # the tables are not created yet
            return []
        finally:
            engine.dispose()
    cache_path = Path(cache)
    if not cache_path.exists():
        return []
    try:
        with sqlite3.connect(cache_path, timeout=30) as connection:
            return connection.execute("SELECT run_key, row_index FROM row_results").fetchall()
    except sqlite3.OperationalError:  # the tables are not created yet
        return []


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(autouse=True)
def cache_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache under tmp_path (never the repo's .autolabel_lite),
    runs from tmp_path, and sees no OpenAI settings from the developer's shell."""
    path = tmp_path / "cache.sqlite"
    monkeypatch.setenv("AUTOLABEL_LITE_CACHE", str(path))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture
def postgres_url() -> str:
    """The URL of a new, empty database on the test PostgreSQL server, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL server: set AUTOLABEL_TEST_POSTGRES_URL (.ci/run starts one)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"autolabel_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_cache(request, cache_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test's cache, once in SQLite (the default) and once in PostgreSQL; the
    AUTOLABEL_LITE_CACHE environment variable names it, for child processes too."""
    if request.param == "sqlite":
        return str(cache_path)
    url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("AUTOLABEL_LITE_CACHE", url)
    return url


@pytest.fixture
def shared_data() -> Path:
    """The benchmark seed sets in ../shared/data (read in place, never copied into the repo)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def fake_server():
    """An OpenAI-compatible server on 127.0.0.1; tests set ``script``, ``latency``, ``responder`` on it."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def reviews_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "reviews.csv", ["review", "gold"], REVIEWS)


@pytest.fixture
def api_config(fake_server) -> dict:
    """A classification config for the ``openai`` provider, pointed at the fake server."""
    return {
        "task_name": "sentiment",
        "task_type": "classification",
        "dataset": {"input_columns": ["review"], "label_column": "gold"},
        "model": {"provider": "openai", "name": "fake-model", "base_url": fake_server.base_url, "max_retries": 2},
        "prompt": {"task_guidelines": "Classify the sentiment of the review.", "labels": list(LABELS)},
    }
