"""Dataset step: stream rows from CSV, JSONL or Parquet with 🤗 datasets.

Files are streamed, never loaded whole, so a million-row CSV labels in flat memory.
Every value reaches the prompt as text: CSV columns are read as strings (no "13" → 13,
no "NA" → NaN), other formats are converted per value.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

from .errors import DataError

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class Dataset:
    """A tabular file to label, checked up front (exists, readable, has rows and columns)."""

    def __init__(self, path: str | os.PathLike, delimiter: str = ",") -> None:
        self.path = Path(path)
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

    def _read_columns(self) -> list[str]:
        if self.format == "csv":
            try:
                with self.path.open(newline="", encoding="utf-8") as handle:
                    header = next(csv.reader(handle, delimiter=self.delimiter), [])
            except UnicodeDecodeError as exc:
                raise DataError(f"{self.path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8") from None
            if not header or not any(h.strip() for h in header):
                raise DataError(f"{self.path}: no header row")
            return header
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(self.path).names)
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    try:
                        first = json.loads(line)
                    except json.JSONDecodeError:
                        raise DataError(f"{self.path}: first line is not a JSON object") from None
                    if not isinstance(first, dict):
                        raise DataError(f"{self.path}: each line must be a JSON object")
                    return list(first)
        raise DataError(f"{self.path}: file is empty")

    def require_columns(self, columns: list[str], what: str = "configured") -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise DataError(
                f"{self.path}: missing {what} column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(c) for c in missing)} (has: {', '.join(self.columns)})"
            )

    def _stream(self):
        from datasets import Features, Value, load_dataset
        from datasets.utils.logging import disable_progress_bar, set_verbosity

        disable_progress_bar()
        set_verbosity(logging.CRITICAL)  # its read errors reach the user as our one-line DataError
        kwargs: dict[str, Any] = {}
        if self.format == "csv":
            kwargs.update(
                sep=self.delimiter,
                features=Features({c: Value("string") for c in self.columns}),
                keep_default_na=False,
                na_filter=False,
                # A line of spaces (or nothing) is a row with an empty text, flagged, not silently skipped.
                skip_blank_lines=False,
            )
        return load_dataset(self.format, data_files=str(self.path), split="train", streaming=True, **kwargs)

    def rows(self, max_rows: int | None = None) -> Iterator[dict[str, str]]:
        """Rows in file order, every value as text."""
        try:
            for index, row in enumerate(self._stream()):
                if max_rows is not None and index >= max_rows:
                    return
                yield {key: _as_text(value) for key, value in row.items()}
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.path}: not UTF-8 text ({exc.reason}); re-save it as UTF-8") from None
        except (ValueError, OSError) as exc:
            raise DataError(f"{self.path}: cannot be read as {self.format}: {str(exc).splitlines()[0]}") from None
