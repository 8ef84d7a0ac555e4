"""Export step: a finished run's labels joined back onto the input rows, streamed to a
file (CSV, JSONL, Parquet, or a review tool's JSON: see export.py) or handed over as a
pandas DataFrame or a 🤗 datasets.Dataset."""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

import numpy as np

from .cache import Cache, RowResult
from .config import TaskConfig
from .confidence.base import splits_labels
from .dataset import Dataset, row_digest
from .errors import DataError
from .export import (
    FLAG,
    NUMBER,
    REVIEW_EXPORTS,
    TEXT,
    LabeledRow,
    arrow_schema,
    output_format,
    record_batches,
    write_table,
)
from .files import check_outputs, replaced_when_done
from .metrics import confidence_quality
from .policy import ThresholdDecision, accepted_confidence, accepts

if TYPE_CHECKING:
    from .stage import Stage
    from .tasks import Task


def review_companion(path: str | os.PathLike, fmt: str) -> Path | None:
    """The labeling config written beside a Label Studio export: ``review.json`` → ``review.xml``."""
    return Path(path).with_suffix(".xml") if fmt == "label-studio" else None

EXPORT_CHUNK = 1000
COST_SAMPLE_ROWS = 200  # rows whose prompts are counted to price a stage's rows


@dataclass
class RunStats:
    rows: int = 0
    labeled: int = 0
    errors: int = 0
    cache_hits: int = 0
    resumed: int = 0
    model_calls: int = 0
    seconds: float = 0.0
    # Verbalized confidence answers without a number in [0, 1] (those rows score 0.0).
    unparsed_confidences: int = 0
    # Labelers the run built (each with its own model): one per Ray actor that labeled a batch.
    labelers: int = 1
    # Model calls made by each stage of the cascade, by stage name.
    stage_calls: dict[str, int] = field(default_factory=dict)

    def add(self, result: RowResult) -> None:
        if "confidence_unparsed" in result.details:
            self.unparsed_confidences += 1
        if result.error:
            self.errors += 1
        if result.label:
            self.labeled += 1
        if result.cache_hit:
            self.cache_hits += 1


class StageCount(NamedTuple):
    reached: int
    accepted: int
    correct: int | None  # None without ground truth


class LabelingResult:
    """Labels for every row of one run. Nothing is held in memory: rows are read back
    from the input (file or data in memory) and the cache as they are exported."""

    def __init__(
        self,
        config: TaskConfig,
        task: "Task",
        stages: "list[Stage]",
        data: Dataset,
        cache: Cache,
        run_key: str,
        max_rows: int | None,
        stats: RunStats,
        scores_parts: bool = False,
    ):
        """``scores_parts``: some stage's confidence method scores each part of a label (NER's entities)."""
        self.config = config
        self.task = task
        self.stages = stages
        self.data = data
        self.cache = cache
        self.run_key = run_key
        self.max_rows = max_rows
        self.stats = stats
        self.scores_parts = scores_parts
        # How each stage's threshold was chosen (None: the stage keeps every label).
        self.decisions: list[ThresholdDecision | None] = [None] * len(stages)
        self._stage_numbers = {stage.name: number for number, stage in enumerate(stages)}
        self._metrics: dict[str, float] | None = None
        self._acceptance: tuple[int, dict[str, float]] | None = None
        self._stage_counts: list[StageCount] = []

    @property
    def decision(self) -> ThresholdDecision | None:
        """How the (last) stage's threshold was chosen."""
        return self.decisions[-1]

    @property
    def threshold(self) -> float | None:
        return None if self.decision is None else self.decision.threshold

    @property
    def computes_confidence(self) -> bool:
        """Whether labels have a confidence (always inside a cascade)."""
        return any(stage.config.model.compute_confidence for stage in self.stages)

    @property
    def cascade(self) -> bool:
        """Several stages: each row names the stage whose label it carries."""
        return len(self.stages) > 1

    @property
    def output_columns(self) -> list[str]:
        stage = ["stage"] if self.cascade else []
        return [self.config.column(s) for s in ("label", "confidence", "accepted", "error", *stage, *self.detail_keys)]

    @property
    def detail_keys(self) -> list[str]:
        """Keys of the row details exported as JSON columns: the task's, and per-entity
        confidences when confidence is computed for a task that splits its labels (NER)."""
        keys = list(self.task.detail_columns)
        # Per-part confidences only where a stage's method scored them: a multilabel task labeled by
        # the learned labeler has one confidence for the whole label set.
        if self.scores_parts and splits_labels(type(self.task)):
            keys.append("entity_confidences")
        return keys

    def apply_thresholds(self, decisions: list[ThresholdDecision | None]) -> None:
        """Accept each row by its stage's decision (None: every labeled row), calibrating confidence first when it says so."""
        self.decisions = list(decisions)
        self._acceptance = None

    def stage_number(self, result: RowResult) -> int:
        """Which stage labeled the row: the one it names, else the last (a one-stage run names none)."""
        return self._stage_numbers.get(result.details.get("stage"), len(self.stages) - 1)

    def confidence(self, result: RowResult) -> float | None:
        """The row's confidence as its stage's threshold sees it: calibrated when the tuning calibrates."""
        return accepted_confidence(self.decisions[self.stage_number(result)], result)

    def is_accepted(self, result: RowResult) -> bool:
        return accepts(self.decisions[self.stage_number(result)], result)

    def acceptable_confidences(self) -> np.ndarray:
        """Every row's raw confidence, NaN where the row cannot be accepted (error, no label or no confidence)."""
        return np.array(
            [
                math.nan if r.error or not r.label or r.confidence is None else r.confidence
                for _, r in self.rows()
            ],
            dtype=float,
        )

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
        columns = self.task.input_columns
        changed = "the file" if self.data.path is not None else "the data"
        for index, row in buffer:
            result = results.get(index) or RowResult(index, error="not labeled (run interrupted)")
            if result.input_digest and result.input_digest != row_digest(row, columns):
                raise DataError(
                    f"{self.data.name}: row {index + 1} is not the row that was labeled ({changed} changed since the run); "
                    f"run again to label {changed} as it is now"
                )
            yield row, result

    def labeled_rows(self, which: str = "all") -> Iterator[LabeledRow]:
        """Rows with their outcome, in input order: ``all``, or only the ``accepted`` or ``rejected`` ones."""
        if which not in ("all", "accepted", "rejected"):
            raise ValueError(f"which: 'all', 'accepted' or 'rejected', not {which!r}")
        for row, result in self.rows():
            accepted = self.is_accepted(result)
            if which == "all" or accepted == (which == "accepted"):
                yield LabeledRow(result.index, row, result.label, self.confidence(result), accepted, result.error, result.details)

    @property
    def schema(self) -> dict[str, str]:
        """Every column written, input columns first, and its kind (text, number, flag)."""
        label, confidence, accepted, *texts = self.output_columns
        return {**dict.fromkeys(self.data.columns, TEXT), label: TEXT, confidence: NUMBER, accepted: FLAG, **dict.fromkeys(texts, TEXT)}

    def records(self, which: str = "all") -> Iterator[dict[str, Any]]:
        """Each row as written to a table: input columns as text, confidence a float (None
        without one), accepted a bool, row details as JSON text."""
        label, confidence, accepted, error, *detail_columns = self.output_columns
        stage = detail_columns.pop(0) if self.cascade else None
        for item in self.labeled_rows(which):
            yield {
                **item.row,
                label: item.label,
                confidence: item.confidence,
                accepted: item.accepted,
                error: item.error,
                **({stage: item.details.get("stage", "")} if stage else {}),
                **{
                    column: json.dumps(item.details[key], ensure_ascii=False) if key in item.details else ""
                    for column, key in zip(detail_columns, self.detail_keys)
                },
            }

    def write(
        self,
        path: str | os.PathLike,
        which: str = "all",
        *,
        format: str | None = None,
        from_name: str | None = None,
        to_name: str | None = None,
    ) -> int:
        """Write ``which`` rows (``all``, ``accepted``, ``rejected``) to ``path``; returns rows written.

        The extension picks the table format (``.csv``, ``.jsonl``, ``.parquet``) unless
        ``format`` names one; a ``.json`` path is a review tool's import file,
        ``format="label-studio"`` (with the labeling config written beside it as
        ``<path stem>.xml``) or ``format="argilla"``.
        ``from_name``/``to_name`` name the question and the text it is about (default
        ``label`` and the input column the label is about).
        """
        fmt = output_format(path, format)
        companion = review_companion(path, fmt)
        check_outputs(self.data.files, {"output": path, "labeling config": companion})
        if fmt not in REVIEW_EXPORTS:
            with replaced_when_done(path) as staging:
                return write_table(staging, fmt, self.schema, self.records(which))
        review = REVIEW_EXPORTS[fmt](self.task, self.model_version, from_name, to_name)
        if companion is not None:
            with replaced_when_done(companion) as staging:
                staging.write_text(review.labeling_config(), encoding="utf-8")
        with replaced_when_done(path) as staging:
            return review.write(staging, self.labeled_rows(which))

    @property
    def model_version(self) -> str:
        """Who labeled: ``provider/model`` (a cascade's stages joined by ``+``)."""
        return "+".join(stage.model_version for stage in self.stages)

    def to_csv(self, path: str | os.PathLike, only_accepted: bool = False) -> int:
        """Write the rows (all, or only accepted ones) with the label columns as CSV; returns rows written."""
        return self.write(path, "accepted" if only_accepted else "all", format="csv")

    def rejected_to_csv(self, path: str | os.PathLike) -> int:
        """Write the rows that were not accepted, for review, as CSV."""
        return self.write(path, "rejected", format="csv")

    def to_pandas(self):
        """Every input column and the output columns as a pandas DataFrame, in input order:
        inputs and labels as text, confidence float (NaN without one), accepted bool."""
        return self._arrow_table().to_pandas()

    def to_dataset(self):
        """The rows of to_pandas() as a 🤗 datasets.Dataset (confidence float64, accepted bool)."""
        import datasets

        return datasets.Dataset(self._arrow_table())

    def _arrow_table(self):
        import pyarrow as pa

        schema = arrow_schema(self.schema)
        return pa.Table.from_batches(list(record_batches(schema, self.records())), schema=schema)

    def write_report(self, path: str | os.PathLike) -> Path:
        """Write one self-contained HTML page about the run's labels (figures need the ``plot``
        extra); the sections that measure quality need the ground-truth column in the data."""
        from .report import write_run_report

        return write_run_report(self, Path(path))

    @property
    def metrics(self) -> dict[str, float]:
        """Quality against the ground-truth column, when the data has one (else empty)."""
        if self._metrics is None:
            self._metrics = {}
            gold_column = self.config.dataset.label_column
            if gold_column and gold_column in self.data.columns:
                predicted, gold, confidences, correct = [], [], [], []
                for row, result in self.rows():
                    # Interned: a label column repeats a few values, kept once however many rows.
                    predicted.append(sys.intern(result.label))
                    gold.append(sys.intern(row[gold_column]))
                    if result.label and result.confidence is not None:
                        confidences.append(result.confidence)
                        correct.append(self.task.is_correct(result.label, row[gold_column]))
                if gold:
                    self._metrics = self.task.metrics(predicted, gold)
                    if self.computes_confidence:
                        self._metrics.update(confidence_quality(confidences, correct))
        return self._metrics

    def summary(self) -> str:
        s = self.stats
        lines = [
            f"rows: {s.rows}  labeled: {s.labeled}  errors: {s.errors}  cache hits: {s.cache_hits}  "
            f"resumed: {s.resumed}  model calls: {s.model_calls}  time: {s.seconds:.1f}s"
        ]
        if self.metrics:
            lines.append("metrics: " + _format_metrics(self.metrics))
        if s.unparsed_confidences:
            lines.append(f"verbalized confidence: {s.unparsed_confidences} answers held no number in [0, 1] (scored 0.0)")
        if self.decision is not None:
            lines += self._threshold_lines()
        if self.cascade:
            lines += self._stage_lines()
        return "\n".join(lines)

    def acceptance(self) -> tuple[int, dict[str, float]]:
        """(accepted rows, quality of the accepted labels against ground truth — empty without it)."""
        if self._acceptance is None:
            gold_column = self.config.dataset.label_column
            has_gold = bool(gold_column) and gold_column in self.data.columns
            accepted, predicted, gold = 0, [], []
            stages = len(self.stages)
            reached, kept, right = [0] * stages, [0] * stages, [0] * stages
            for row, result in self.rows():
                number = self.stage_number(result)
                for earlier in range(number + 1):
                    reached[earlier] += 1
                if self.is_accepted(result):
                    accepted += 1
                    kept[number] += 1
                    if has_gold:
                        predicted.append(sys.intern(result.label))
                        gold.append(sys.intern(row[gold_column]))
                        right[number] += self.task.is_correct(result.label, row[gold_column])
            self._acceptance = (accepted, self.task.metrics(predicted, gold) if gold else {})
            self._stage_counts = [StageCount(*counts, correct if has_gold else None) for *counts, correct in zip(reached, kept, right)]
        return self._acceptance

    def stage_counts(self) -> "list[StageCount]":
        """Per stage: rows that reached it, rows it accepted and, with ground truth, how many of those are right."""
        self.acceptance()
        return self._stage_counts

    def _stage_lines(self) -> list[str]:
        """Per stage: its threshold, rows it labeled and kept, its model calls and estimated cost."""
        from .plan import cost_per_row

        sample = list(self.data.rows(min(self.max_rows or COST_SAMPLE_ROWS, COST_SAMPLE_ROWS)))
        lines = []
        for stage, decision, (reached, kept, _) in zip(self.stages, self.decisions, self.stage_counts()):
            threshold = "none" if decision is None else "accept nothing" if decision.accepts_nothing else f"{decision.threshold:.4g}"
            per_row = cost_per_row(stage, self.cache, sample)
            cost = "unknown (set model.pricing)" if per_row is None else f"${per_row * reached:,.6f} (estimated from tokens)"
            lines.append(
                f"stage {stage.name}: threshold {threshold}  labeled {reached}  accepted {kept}  "
                f"model calls {self.stats.stage_calls.get(stage.name, 0)}  cost {cost}"
            )
        return lines

    def _threshold_lines(self) -> list[str]:
        decision = self.decision
        accepted, quality = self.acceptance()
        value = "accept nothing" if decision.accepts_nothing else f"{decision.threshold:.4g}"
        calibrated = f", on {decision.calibration.method}-calibrated confidence" if decision.calibration else ""
        lines = [
            f"threshold: {value} ({decision.policy}{calibrated}; {decision.how})",
            f"accepted: {accepted} of {self.stats.rows} rows (completion {accepted / max(self.stats.rows, 1):.1%})",
        ]
        if quality:
            lines.append(f"accepted quality: {_format_metrics(quality)} (on the {accepted} accepted rows)")
        return lines


def _format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items())
