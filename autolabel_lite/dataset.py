"""Dataset step: stream rows from CSV, JSONL or Parquet, or from data the caller holds
(a pandas DataFrame, a 🤗 datasets.Dataset, a list of dicts).

Files are streamed, never loaded whole, so a million-row file labels in flat memory:
CSV with the standard csv module, JSONL line by line, Parquet by record batch with
pyarrow (no 🤗 datasets on this path: importing it costs seconds of start-up).
Every value reaches the prompt as text: CSV columns are read as strings (no "13" → 13,
no "NA" → NaN), other formats are converted per value.

The file is checked whole when it is opened (one streaming pass, before any model
call): it decodes as UTF-8, every JSONL line is an object, and the columns are known —
for JSONL, every key of every line in order of first appearance, so a key missing from
the first line is not dropped. Data in memory gets the same checks in one pass over its
rows, which also digests them: a run on it is identified by its content, not a file's
path and modification time.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from .errors import DataError

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
SCAN_CHUNK = 1 << 20
PARQUET_BATCH_ROWS = 1024

# A labeling input may hold whole documents in one cell: the csv module's 128 KiB default is too small.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def row_digest(row: dict[str, str], columns: list[str]) -> str:
    """A short digest of a row's values in ``columns``: labels are joined back only onto the rows they were made for."""
    payload = json.dumps([row.get(column, "") for column in columns], ensure_ascii=False)
    return hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):  # numpy scalars and arrays (pandas and datasets cells) as Python values
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):  # pandas' missing value
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class Dataset:
    """Rows to label, checked up front (readable, has rows and columns): a file (CSV, JSONL,
    Parquet) or data in memory (a pandas DataFrame, a datasets.Dataset, a list of dicts)."""

    def __init__(self, source: Any, delimiter: str = ",") -> None:
        self.memory: InMemoryRows | None = None
        self.path: Path | None = None
        if not isinstance(source, (str, os.PathLike)):
            self.memory = InMemoryRows(source)
            self.name, self.format, self.columns = self.memory.name, "memory", self.memory.columns
            self.content_digest = self.memory.check()
            return
        self.path = Path(source)
        self.name = str(self.path)
        if not self.path.is_file():
            raise DataError(f"input file not found: {self.path}")
        self.format = FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise DataError(f"{self.path}: unsupported file type {self.path.suffix!r}; use .csv, .jsonl or .parquet")
        if self.path.stat().st_size == 0:
            raise DataError(f"{self.path}: file is empty")
        self.delimiter = "\t" if self.path.suffix.lower() == ".tsv" else delimiter
        self.columns = self._read_columns()
        if not any(True for _ in self.rows(max_rows=1)):
            raise DataError(f"{self.path}: has a header but no rows")

    @property
    def files(self) -> list[Path]:
        """The input files (none for data in memory): outputs must not overwrite them."""
        return [] if self.path is None else [self.path]

    def identity(self) -> list:
        """What a run on these rows is keyed by: a file's path, size and modification time, or the rows' digest."""
        if self.path is None:
            return ["memory", self.content_digest]
        stat = self.path.stat()
        return [str(self.path.resolve()), stat.st_size, stat.st_mtime_ns]

    def _not_utf8(self, exc: UnicodeDecodeError, offset: int | None = None) -> DataError:
        where = f" at byte {offset + exc.start}" if offset is not None else ""
        return DataError(f"{self.path}: not UTF-8 text ({exc.reason}{where}); re-save it as UTF-8")

    def _check_utf8(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        with self.path.open("rb") as handle:
            while chunk := handle.read(SCAN_CHUNK):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise self._not_utf8(exc, offset) from None
                offset += len(chunk)
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                raise self._not_utf8(exc, offset) from None

    def _read_columns(self) -> list[str]:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            try:
                return list(pq.read_schema(self.path).names)
            except Exception as exc:  # pyarrow's ArrowInvalid and OSError for a corrupt or foreign file
                raise DataError(f"{self.path}: cannot be read as parquet: {str(exc).splitlines()[0]}") from None
        self._check_utf8()
        if self.format == "csv":
            with self.path.open(newline="", encoding="utf-8") as handle:
                header = next(csv.reader(handle, delimiter=self.delimiter), [])
            if not header or not any(h.strip() for h in header):
                raise DataError(f"{self.path}: no header row")
            return header
        columns: dict[str, None] = {}
        for _ in self._json_objects(columns):
            pass
        return list(columns)

    def _json_objects(self, columns: dict[str, None] | None = None) -> Iterator[dict[str, Any]]:
        """The file's JSON objects, one per non-blank line; ``columns`` collects their keys."""
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{self.path}: line {number} is not valid JSON ({exc.msg})") from None
                if not isinstance(value, dict):
                    raise DataError(f"{self.path}: line {number} is not a JSON object (each line must be one)")
                if columns is not None:
                    columns.update(dict.fromkeys(value))
                yield value

    def require_columns(self, columns: list[str], what: str = "configured") -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise DataError(
                f"{self.name}: missing {what} column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(c) for c in missing)} (has: {', '.join(self.columns)})"
            )

    def _records(self) -> Iterator[dict[str, Any]]:
        if self.memory is not None:
            yield from self.memory.records()
        elif self.format == "csv":
            with self.path.open(newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle, delimiter=self.delimiter)
                next(reader, None)
                width = len(self.columns)
                for cells in reader:
                    # Short rows (a blank line too) get empty cells: a row with an empty text is flagged, not skipped.
                    yield dict(zip(self.columns, cells + [""] * (width - len(cells))))
        elif self.format == "json":
            yield from self._json_objects()
        else:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
                yield from batch.to_pylist()

    def rows(self, max_rows: int | None = None) -> Iterator[dict[str, str]]:
        """Rows in file order, every value as text and every column present."""
        try:
            for index, record in enumerate(self._records()):
                if max_rows is not None and index >= max_rows:
                    return
                yield {column: _as_text(record.get(column)) for column in self.columns}
        except UnicodeDecodeError as exc:  # the file changed since it was checked
            raise self._not_utf8(exc) from None
        except csv.Error as exc:
            raise DataError(f"{self.name}: cannot be read as CSV: {exc}") from None
        except DataError:
            raise
        except (ValueError, OSError) as exc:
            raise DataError(f"{self.name}: cannot be read as {self.format}: {str(exc).splitlines()[0]}") from None


class InMemoryRows:
    """Rows the caller holds: a pandas DataFrame, a 🤗 datasets.Dataset or a list of dicts.

    Neither library is imported here: a caller holding one of their objects has imported it.
    """

    def __init__(self, data: Any) -> None:
        self.data = data
        pandas, datasets = sys.modules.get("pandas"), sys.modules.get("datasets")
        if pandas is not None and isinstance(data, pandas.DataFrame):
            self.kind, self.name = "pandas", "the DataFrame"
            columns = list(data.columns)
            if not all(isinstance(c, str) for c in columns):
                raise DataError(f"the DataFrame: column names must be text (got {next(c for c in columns if not isinstance(c, str))!r})")
        elif datasets is not None and isinstance(data, datasets.Dataset):
            self.kind, self.name = "datasets", "the datasets.Dataset"
            columns = list(data.column_names)
        elif isinstance(data, (list, tuple)):
            self.kind, self.name = "dicts", "the list of rows"
            columns = self._dict_columns()
        else:
            if datasets is not None and isinstance(data, datasets.DatasetDict):
                raise DataError(f"cannot label a DatasetDict: pick a split, e.g. data[{next(iter(data), 'train')!r}]")
            raise DataError(
                f"cannot label a {type(data).__module__}.{type(data).__qualname__}: "
                "give a file path, a pandas DataFrame, a datasets.Dataset or a list of dicts"
            )
        if len(set(columns)) != len(columns):
            raise DataError(f"{self.name}: column {next(c for c in columns if columns.count(c) > 1)!r} appears twice")
        if not columns:
            raise DataError(f"{self.name}: has no columns")
        self.columns: list[str] = columns

    def _dict_columns(self) -> list[str]:
        columns: dict[str, None] = {}
        for number, row in enumerate(self.data, 1):
            if not isinstance(row, dict):
                raise DataError(f"the list of rows: row {number} is not a dict (it is {type(row).__name__})")
            wrong = next((key for key in row if not isinstance(key, str)), None)
            if wrong is not None:
                raise DataError(f"the list of rows: row {number} has a key that is not text: {wrong!r}")
            columns.update(dict.fromkeys(row))
        return list(columns)

    def records(self) -> Iterator[dict[str, Any]]:
        if self.kind == "dicts":
            yield from self.data
        elif self.kind == "pandas":
            from pandas import isna
            from pandas.api.types import is_scalar

            for values in self.data.itertuples(index=False, name=None):
                # pandas marks a missing cell NaN, NA or NaT: an empty value, as a blank CSV cell is.
                yield {c: None if is_scalar(v) and isna(v) else v for c, v in zip(self.columns, values)}
        else:
            for batch in self.data.iter(batch_size=PARQUET_BATCH_ROWS):
                yield from (dict(zip(self.columns, values)) for values in zip(*(batch[c] for c in self.columns)))

    def check(self) -> str:
        """One pass over the rows: each is labelable text, and together they have this digest."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(json.dumps(self.columns).encode())
        rows = 0
        for rows, record in enumerate(self.records(), 1):
            values = []
            for column in self.columns:
                value = record.get(column)
                if isinstance(value, (bytes, bytearray)):
                    raise DataError(f"{self.name}: row {rows}, column {column!r} holds bytes, not text; decode it first")
                values.append(_as_text(value))
            try:
                digest.update(json.dumps(values, ensure_ascii=False).encode() + b"\n")
            except UnicodeEncodeError:
                raise DataError(f"{self.name}: row {rows} is not valid Unicode text (a lone surrogate); clean it first") from None
        if not rows:
            raise DataError(f"{self.name}: has no rows")
        return digest.hexdigest()
