"""Export step: a finished run's labels joined back onto the input rows, streamed to CSV."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from .cache import Cache, RowResult
from .dataset import Dataset

if TYPE_CHECKING:
    from .agent import LabelingAgent

EXPORT_CHUNK = 1000


@dataclass
class RunStats:
    rows: int = 0
    labeled: int = 0
    errors: int = 0
    cache_hits: int = 0
    resumed: int = 0
    model_calls: int = 0
    seconds: float = 0.0

    def add(self, result: RowResult) -> None:
        if result.error:
            self.errors += 1
        if result.label:
            self.labeled += 1
        if result.cache_hit:
            self.cache_hits += 1


class LabelingResult:
    """Labels for every row of one run. Nothing is held in memory: rows are read back
    from the input file and the cache as they are exported."""

    def __init__(self, agent: "LabelingAgent", data: Dataset, cache: Cache, run_key: str, max_rows: int | None, stats: RunStats):
        self.agent = agent
        self.config = agent.config
        self.task = agent.task
        self.data = data
        self.cache = cache
        self.run_key = run_key
        self.max_rows = max_rows
        self.stats = stats
        self.threshold: float | None = None
        self._metrics: dict[str, float] | None = None

    @property
    def output_columns(self) -> list[str]:
        return [self.config.column(s) for s in ("label", "confidence", "accepted", "error")]

    def is_accepted(self, result: RowResult) -> bool:
        if result.error or not result.label:
            return False
        if self.threshold is None:
            return True
        return result.confidence is not None and result.confidence >= self.threshold

    def rows(self) -> Iterator[tuple[dict[str, str], RowResult]]:
        """(input row, its result) in file order."""
        buffer: list[tuple[int, dict[str, str]]] = []
        for index, row in enumerate(self.data.rows(self.max_rows)):
            buffer.append((index, row))
            if len(buffer) == EXPORT_CHUNK:
                yield from self._join(buffer)
                buffer = []
        yield from self._join(buffer)

    def _join(self, buffer):
        if not buffer:
            return
        results = self.cache.load_rows(self.run_key, buffer[0][0], buffer[-1][0] + 1)
        for index, row in buffer:
            yield row, results.get(index) or RowResult(index, error="not labeled (run interrupted)")

    def records(self) -> Iterator[dict[str, Any]]:
        label, confidence, accepted, error = self.output_columns
        for row, result in self.rows():
            yield {
                **row,
                label: result.label,
                confidence: "" if result.confidence is None else round(result.confidence, 6),
                accepted: "true" if self.is_accepted(result) else "false",
                error: result.error,
            }

    def to_csv(self, path: str | os.PathLike, only_accepted: bool = False) -> int:
        """Write the rows (all, or only accepted ones) with the label columns; returns rows written."""
        return self._write(path, lambda record: not only_accepted or record[self.output_columns[2]] == "true")

    def rejected_to_csv(self, path: str | os.PathLike) -> int:
        """Write the rows that were not accepted, for review."""
        return self._write(path, lambda record: record[self.output_columns[2]] != "true")

    def _write(self, path, keep) -> int:
        written = 0
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=[*self.data.columns, *self.output_columns], extrasaction="ignore")
            writer.writeheader()
            for record in self.records():
                if keep(record):
                    writer.writerow(record)
                    written += 1
        return written

    @property
    def metrics(self) -> dict[str, float]:
        """Quality against the ground-truth column, when the data has one (else empty)."""
        if self._metrics is None:
            self._metrics = {}
            gold_column = self.config.dataset.label_column
            if gold_column and gold_column in self.data.columns:
                predicted, gold = [], []
                for row, result in self.rows():
                    predicted.append(result.label)
                    gold.append(row[gold_column])
                if gold:
                    self._metrics = self.task.metrics(predicted, gold)
        return self._metrics

    def summary(self) -> str:
        s = self.stats
        lines = [
            f"rows: {s.rows}  labeled: {s.labeled}  errors: {s.errors}  cache hits: {s.cache_hits}  "
            f"resumed: {s.resumed}  model calls: {s.model_calls}  time: {s.seconds:.1f}s"
        ]
        if self.metrics:
            lines.append("metrics: " + "  ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in self.metrics.items()))
        return "\n".join(lines)
