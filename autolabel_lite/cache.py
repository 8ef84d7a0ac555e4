"""The cache: model calls and per-row results, in SQLite (default) or PostgreSQL.

- ``model_calls``: one entry per model call, keyed by a hash of provider, model,
  parameters, operation and the full prompt. A rerun of the same job makes no calls.
- ``row_results``: each row's outcome for a run, written as rows finish, so an
  interrupted run resumes where it stopped without losing or relabeling a row.
API keys never enter either table: keys are built from ``Provider.identity()``.

Both are written first-wins (insert-or-ignore; a row result only replaces one that is not
final), so a task that runs twice — a retried Ray task, two processes on one job — stores
one answer and gets back that one. SQLite serves one machine; PostgreSQL serves a cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import Boolean, Float, Integer, LargeBinary, String, Text, bindparam, create_engine, event, inspect, select, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.schema import CreateTable
from tenacity import Retrying, retry_if_exception_message, stop_after_delay, wait_random

from .errors import ConfigError

DEFAULT_CACHE = Path(".autolabel_lite") / "cache.sqlite"
_CHUNK = 500  # stay under SQLite's bound-parameter limit in IN (...) queries


def stable_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


class _Base(DeclarativeBase):
    pass


class ModelCall(_Base):
    __tablename__ = "model_calls"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RowResultRecord(_Base):
    __tablename__ = "row_results"
    run_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    row_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(Text, default="")
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[str] = mapped_column(Text, default="{}")
    # False when the row failed for a reason worth retrying (the model call failed): a rerun retries it.
    final: Mapped[bool] = mapped_column(Boolean, default=True)
    # Digest of the row's input values when it was labeled: export checks it, so a label never lands on another row.
    input_digest: Mapped[str] = mapped_column(String(32), default="")


class EmbeddingRecord(_Base):
    """A float32 sentence-embedding vector, keyed by a hash of the embedding model and the text."""

    __tablename__ = "embeddings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


_CALL_BY_KEY = select(ModelCall.value).where(ModelCall.key == bindparam("key"))


@dataclass
class RowResult:
    index: int
    label: str = ""
    confidence: float | None = None
    error: str = ""
    cache_hit: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    final: bool = True
    input_digest: str = ""


DRIVER_EXTRAS = {"psycopg": "postgres", "psycopg2": "postgres"}
SUPPORTED_DIALECTS = ("sqlite", "postgresql")
# A cache holds at most two connections (the lookup connection and one for sessions): hundreds
# of Ray actors, each with its own cache, must stay under PostgreSQL's default 100 connections.
POSTGRES_POOL = {"pool_size": 1, "max_overflow": 1}
# The key of the PostgreSQL advisory lock held while the schema is created: concurrent
# CREATE TABLE IF NOT EXISTS races on PostgreSQL's catalog (duplicate key in pg_type).
SCHEMA_LOCK_KEY = 0x6175746F6C6162  # "autolab"


def _database_url(location: str | os.PathLike | None) -> str:
    location = location or os.environ.get("AUTOLABEL_LITE_CACHE") or DEFAULT_CACHE
    text = str(location)
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if path.is_dir():
        raise ConfigError(f"cache: {path} is a folder; give a file path (e.g. {path / 'cache.sqlite'}) or a database URL")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cache: cannot create the folder for {path}: {exc.strerror}") from None
    return f"sqlite:///{path}"


def _engine(url: str) -> Engine:
    """The engine for ``url``; a malformed URL or a missing driver is one line naming what to do."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise ConfigError(f"cache: {url!r} is not a database URL or file path ({exc})") from None
    if backend not in SUPPORTED_DIALECTS:
        # Insert-or-ignore and upsert are written with their ON CONFLICT clauses.
        raise ConfigError(f"cache: unknown database type in {url!r}; use a file path, sqlite:///… or postgresql+psycopg://…")
    try:
        return create_engine(url, **(POSTGRES_POOL if backend == "postgresql" else {}))
    except NoSuchModuleError:  # before ArgumentError, its base class
        raise ConfigError(f"cache: unknown database type in {url!r}; use a file path, sqlite:///… or postgresql+psycopg://…") from None
    except ArgumentError as exc:
        raise ConfigError(f"cache: {url!r} is not a database URL or file path ({exc})") from None
    except ModuleNotFoundError as exc:
        extra = DRIVER_EXTRAS.get(exc.name or "", None)
        hint = f"pip install 'autolabel-lite[{extra}]'" if extra else f"install the {exc.name} package"
        raise ConfigError(f"cache: {url.split('://')[0]} needs its database driver: {hint}") from None


class Cache:
    def __init__(self, location: str | os.PathLike | None = None) -> None:
        self.url = _database_url(location)
        self.engine: Engine = _engine(self.url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        # IF NOT EXISTS, not create_all's check-then-create: two processes opening a new
        # cache at once both saw no table, and the second CREATE failed.
        try:
            with self.engine.begin() as connection:
                if self.engine.dialect.name == "postgresql":  # released when the transaction ends
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
                for table in _Base.metadata.sorted_tables:
                    connection.execute(CreateTable(table, if_not_exists=True))
                _add_missing_columns(connection)
        except OperationalError as exc:
            reason = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc).splitlines()[0]
            raise ConfigError(f"cache: cannot open {self.url}: {reason}") from None
        self._reader: Connection | None = None
        dialect = self.engine.dialect
        self._lookup = _Raw(_CALL_BY_KEY, dialect)
        self._call_insert = _Raw(_insert(dialect, ModelCall, update=False).returning(ModelCall.key), dialect)
        self._row_insert = _row_insert(dialect)
        self._row_insert_raw = _Raw(self._row_insert, dialect)

    # -- model calls ---------------------------------------------------------------------

    def get_call(self, key: str) -> Any | None:
        """The cached result of one model call, or None."""
        # Called once per row on the event loop: one autocommit connection (no transaction
        # left open), its DBAPI cursor and the statement compiled once cost ~14 µs a lookup
        # during a run; a Core execute per lookup cost ~50 µs, 8% of rows/s at latency 0.
        row = self._execute(self._lookup, {"key": key}, fetch=True)
        return None if row is None else json.loads(row[0])

    def _execute(self, raw: "_Raw", values: dict[str, Any], fetch: bool = False):
        """One statement on a dedicated autocommit connection: committed when it returns."""
        if self._reader is None:
            self._reader = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        cursor = self._reader.connection.dbapi_connection.cursor()
        try:
            cursor.execute(raw.sql, raw.parameters(values))
            return cursor.fetchone() if fetch else None
        finally:
            cursor.close()

    def put_call(self, key: str, value: Any) -> Any:
        """Store one answered call at once (a killed run never pays for it again) and return
        the stored answer. The first answer stored wins: a call made twice at once (a retried
        task) gets back what was stored first, not a second answer at temperature > 0."""
        if self._execute(self._call_insert, {"key": key, "value": json.dumps(value)}, fetch=True) is not None:
            return value
        return self.get_call(key)


    # -- embeddings ----------------------------------------------------------------------

    def get_embeddings(self, keys: Iterable[str]) -> dict[str, bytes]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, bytes] = {}
        with Session(self.engine) as session:
            for start in range(0, len(keys), _CHUNK):
                query = select(EmbeddingRecord.key, EmbeddingRecord.vector).where(EmbeddingRecord.key.in_(keys[start : start + _CHUNK]))
                found.update((key, vector) for key, vector in session.execute(query))
        return found

    def put_embeddings(self, entries: dict[str, bytes]) -> None:
        if entries:
            self._upsert(EmbeddingRecord, [{"key": k, "vector": v} for k, v in entries.items()])

    # -- row results ---------------------------------------------------------------------

    def done_rows(self, run_key: str) -> set[int]:
        with Session(self.engine) as session:
            query = select(RowResultRecord.row_index).where(RowResultRecord.run_key == run_key, RowResultRecord.final)
            return set(session.scalars(query))

    def save_row(self, run_key: str, result: RowResult) -> None:
        """Store one finished row at once, before the run counts it done (it replaces a stored
        result only when that one is not final)."""
        self._execute(self._row_insert_raw, _row_record(run_key, result))

    def save_rows(self, run_key: str, results: Iterable[RowResult]) -> dict[int, RowResult]:
        """Store a batch of finished rows in one transaction, as ``save_row`` does each, and
        return what is stored for them: a batch that runs twice gets back its first results.
        Keys go in sorted: two writers inserting overlapping batches in different orders deadlock."""
        records = sorted((_row_record(run_key, r) for r in results), key=lambda record: record["row_index"])
        if not records:
            return {}
        indices = [record["row_index"] for record in records]
        stored: dict[int, RowResult] = {}
        with self.engine.begin() as connection:
            connection.execute(self._row_insert, records)
            for start in range(0, len(indices), _CHUNK):
                query = select(RowResultRecord).where(
                    RowResultRecord.run_key == run_key, RowResultRecord.row_index.in_(indices[start : start + _CHUNK])
                )
                stored.update((rec.row_index, _row_result(rec)) for rec in Session(connection).scalars(query))
        return stored

    def load_rows(self, run_key: str, start: int, stop: int) -> dict[int, RowResult]:
        """Results for row indices in [start, stop), for streaming export."""
        query = select(RowResultRecord).where(
            RowResultRecord.run_key == run_key, RowResultRecord.row_index >= start, RowResultRecord.row_index < stop
        )
        with Session(self.engine) as session:
            return {rec.row_index: _row_result(rec) for rec in session.scalars(query)}

    # -- plumbing ------------------------------------------------------------------------

    def _upsert(self, table, records: list[dict[str, Any]]) -> None:
        with self.engine.begin() as connection:
            connection.execute(_insert(self.engine.dialect, table, update=True), records)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self.engine.dispose()


def _insert(dialect, table, update: bool, where=None):
    """INSERT of one record that ignores (``update=False``) or replaces an existing key
    (only where ``where`` holds for the stored record, when given)."""
    module = __import__(f"sqlalchemy.dialects.{dialect.name}", fromlist=["insert"])
    statement = module.insert(table)
    keys = [c.name for c in table.__table__.primary_key.columns]
    if not update:
        return statement.on_conflict_do_nothing(index_elements=keys)
    others = {c.name: statement.excluded[c.name] for c in table.__table__.columns if c.name not in keys}
    return statement.on_conflict_do_update(index_elements=keys, set_=others, where=where)


def _row_insert(dialect):
    """A row result goes in unless a final one is stored: a failed row is retried by a rerun,
    a finished one is never replaced by a second labeling of it."""
    return _insert(dialect, RowResultRecord, update=True, where=RowResultRecord.__table__.c.final.is_(False))


def _row_record(run_key: str, result: RowResult) -> dict[str, Any]:
    return {
        "run_key": run_key,
        "row_index": result.index,
        "label": result.label,
        "confidence": result.confidence,
        "error": result.error,
        "details": json.dumps(result.details),
        "final": result.final,
        "input_digest": result.input_digest,
    }


def _row_result(record: RowResultRecord) -> RowResult:
    return RowResult(
        record.row_index,
        record.label,
        record.confidence,
        record.error,
        details=json.loads(record.details),
        final=record.final,
        input_digest=record.input_digest or "",
    )


class _Raw:
    """A statement compiled once for the DBAPI cursor: per-row SQLAlchemy execution cost
    ~50 µs a call, a tenth of the pipeline's budget per row at latency 0."""

    def __init__(self, statement, dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._order = list(compiled.positiontup) if compiled.positional else None
        self._names = {name: bind.key for name, bind in compiled.binds.items()}

    def parameters(self, values: dict[str, Any]):
        if self._order is None:
            return {name: values[key] for name, key in self._names.items()}
        return tuple(values[self._names[name]] for name in self._order)


def _add_missing_columns(connection: Connection) -> None:
    """Columns added since a cache was created (its rows keep working; new ones fill them)."""
    for table in _Base.metadata.sorted_tables:
        present = {column["name"] for column in inspect(connection).get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=connection.dialect)
                connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=60000")  # a second process waits instead of failing
    # Readers never block the writer. Switching a new database to WAL fails at once, without
    # the busy wait, while another process opening it holds the lock: retry that one.
    for attempt in Retrying(
        stop=stop_after_delay(60), wait=wait_random(0.005, 0.05), retry=retry_if_exception_message(match=".*locked"), reraise=True
    ):
        with attempt:
            cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
