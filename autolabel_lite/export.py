"""Writers for a run's labeled rows: tables (CSV, JSONL, Parquet) and review tools'
import files (Label Studio tasks with predictions, Argilla 2.x records with suggestions).

Every writer streams: rows arrive one at a time from the export step, tables are written
row by row (Parquet in row groups of ROW_GROUP_ROWS), and review files as a JSON array
one task or record at a time, so the memory a million-row export needs stays flat.
Which writer a path gets follows its extension; ``.json`` is a review tool's file and
needs the tool named (``--format``).
"""

from __future__ import annotations

import csv
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator
from xml.sax.saxutils import quoteattr

from .errors import DataError
from .spans import find_occurrences

if TYPE_CHECKING:
    from .tasks.base import Task

TABLE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
REVIEW_FORMATS = ("label-studio", "argilla")
ROW_GROUP_ROWS = 10_000
# Kinds of output column: text, a number (None when missing), a flag.
TEXT, NUMBER, FLAG = "text", "number", "flag"
# The data key of a Label Studio task that carries the row's index in the input, through review and back.
ROW_KEY = "autolabel_row"
UNANSWERABLE = "unanswerable"


def output_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The writer for ``path``: ``format`` when given (a review tool's file must be ``.json``),
    else the extension's table format; a ``.json`` path needs a review format named."""
    suffix = Path(path).suffix.lower()
    if format is not None and format not in (*TABLE_FORMATS.values(), *REVIEW_FORMATS):
        raise DataError(f"--format {format}: unknown format; use {' or '.join(REVIEW_FORMATS)} (tables follow the extension)")
    if format in REVIEW_FORMATS and suffix != ".json":
        raise DataError(f"{path}: --format {format} writes a JSON file; name it .json")
    if format is not None:
        return format
    if suffix == ".json":
        raise DataError(f"{path}: a .json output is a review tool's file: add --format label-studio or --format argilla (or name it .jsonl)")
    if suffix in TABLE_FORMATS:
        return TABLE_FORMATS[suffix]
    raise DataError(f"{path}: unknown output type {suffix or '(none)'!r}; use .csv, .jsonl, .parquet, or .json with --format label-studio|argilla")


# -- tables ------------------------------------------------------------------------------


def write_table(path: Path, fmt: str, schema: dict[str, str], records: Iterable[dict[str, Any]]) -> int:
    """Write ``records`` (typed values: text, float or None, bool) to ``path`` in ``fmt``; returns rows written."""
    return _TABLE_WRITERS[fmt](path, schema, records)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value  # a float keeps full precision: the threshold is one of these values


def _write_csv(path: Path, schema: dict[str, str], records: Iterable[dict[str, Any]]) -> int:
    written = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(schema)
        for record in records:
            writer.writerow([_csv_cell(record[column]) for column in schema])
            written += 1
    return written


def _write_jsonl(path: Path, schema: dict[str, str], records: Iterable[dict[str, Any]]) -> int:
    written = 0
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps({column: record[column] for column in schema}, ensure_ascii=False, allow_nan=False) + "\n")
            written += 1
    return written


def _write_parquet(path: Path, schema: dict[str, str], records: Iterable[dict[str, Any]]) -> int:
    import pyarrow.parquet as pq

    typed = arrow_schema(schema)
    written = 0
    with pq.ParquetWriter(path, typed) as writer:
        for batch in record_batches(typed, records):
            writer.write_batch(batch)
            written += batch.num_rows
    return written


def arrow_schema(schema: dict[str, str]) -> Any:
    """The Arrow schema of a table's columns: text as string, numbers as float64, flags as bool."""
    import pyarrow as pa

    types = {TEXT: pa.string(), NUMBER: pa.float64(), FLAG: pa.bool_()}
    return pa.schema([(column, types[kind]) for column, kind in schema.items()])


def record_batches(arrow_schema: Any, records: Iterable[dict[str, Any]]) -> Iterator[Any]:
    """Arrow record batches of up to ROW_GROUP_ROWS records each (one Parquet row group apiece)."""
    import pyarrow as pa

    rows = ROW_GROUP_ROWS
    names = arrow_schema.names
    columns: dict[str, list] = {name: [] for name in names}
    count = 0
    for record in records:
        for name in names:
            columns[name].append(record[name])
        count += 1
        if count == rows:
            yield pa.RecordBatch.from_pydict(columns, schema=arrow_schema)
            columns, count = {name: [] for name in names}, 0
    if count:
        yield pa.RecordBatch.from_pydict(columns, schema=arrow_schema)


_TABLE_WRITERS: dict[str, Callable[[Path, dict[str, str], Iterable[dict[str, Any]]], int]] = {
    "csv": _write_csv,
    "jsonl": _write_jsonl,
    "parquet": _write_parquet,
}


# -- review tools ------------------------------------------------------------------------


@dataclass
class LabeledRow:
    """One row as a reviewer sees it: its inputs, the label and how far it is trusted."""

    index: int
    row: dict[str, str]
    label: str
    confidence: float | None
    accepted: bool
    error: str
    details: dict[str, Any] = field(default_factory=dict)


class ReviewExport(ABC):
    """What both review formats need to know: the task's shape, who labeled, and the names of
    the question (``from_name``) and of the text it is asked about (``to_name``)."""

    def __init__(self, task: "Task", model_version: str, from_name: str | None = None, to_name: str | None = None) -> None:
        self.task = task
        self.task_type = task.config.task_type
        self.model_version = model_version
        self.from_name = from_name or "label"
        self.target_column = target_column(task)
        self.to_name = to_name or self.target_column

    def write(self, path: Path, rows: Iterable[LabeledRow]) -> int:
        written = 0
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("[")
            for row in rows:
                handle.write(("\n" if not written else ",\n") + json.dumps(self.item(row), ensure_ascii=False, allow_nan=False))
                written += 1
            handle.write("\n]\n" if written else "]\n")
        return written

    @abstractmethod
    def item(self, row: LabeledRow) -> dict[str, Any]:
        """One row as the tool imports it (a task, a record)."""

    def answer(self, row: LabeledRow) -> Any:
        """The label as the review tool holds it: a label, a list of labels, an answer, or entity spans."""
        if self.task_type == "multilabel_classification":
            separator = self.task.config.dataset.label_separator
            return [part.strip() for part in row.label.split(separator) if part.strip()]
        return row.label

    def entity_spans(self, row: LabeledRow) -> list[tuple[int, int, str, float | None]]:
        """(start, end, type, entity confidence) of every occurrence of every entity of an NER label, in the text."""
        text = row.row[self.target_column]
        by_type = json.loads(row.label) if row.label else {}
        scores = iter(entry.get("confidence") for entry in row.details.get("entity_confidences", []))
        spans = []
        for kind in self.task.config.prompt.label_names:  # the order confidence_parts scores them in
            for entity in by_type.get(kind, []):
                score = next(scores, None)
                spans += [(start, end, kind, score) for start, end in find_occurrences(text, entity)]
        return sorted(spans)

    def answer_span(self, row: LabeledRow) -> tuple[int, int] | None:
        """Where a question-answering label occurs in the target (first context) column, if it does."""
        if not row.label or row.label == UNANSWERABLE:
            return None
        spans = find_occurrences(row.row[self.target_column], row.label)
        return spans[0] if spans else None


def target_column(task: "Task") -> str:
    """The input column a label is about: the text for NER, the (first) context for QA, else the first input."""
    if task.config.task_type == "question_answering":
        return task.context_columns[0]
    return task.input_columns[0]


class LabelStudioExport(ReviewExport):
    """Label Studio import JSON: one task per row with the model's label as a prediction, scored."""

    def item(self, row: LabeledRow) -> dict[str, Any]:
        data = {column: row.row[column] for column in self.task.input_columns}
        prediction: dict[str, Any] = {"model_version": self.model_version}
        if row.confidence is not None:
            prediction["score"] = row.confidence
        prediction["result"] = self.results(row) if row.label else []
        return {"data": {**data, ROW_KEY: row.index}, "predictions": [prediction]}

    def results(self, row: LabeledRow) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []

        def result(kind: str, value: dict[str, Any], from_name: str | None = None) -> dict[str, Any]:
            # Label Studio wants every result of a task to have its own id.
            return {"id": f"{row.index}-{len(items)}", "from_name": from_name or self.from_name, "to_name": self.to_name, "type": kind, "value": value}

        if self.task_type == "named_entity_recognition":
            text = row.row[self.target_column]
            for start, end, kind, score in self.entity_spans(row):
                value = {"start": start, "end": end, "text": text[start:end], "labels": [kind]}
                entity_score = score if score is not None else row.confidence
                if entity_score is not None:
                    value["score"] = entity_score
                items.append(result("labels", value))
        elif self.task_type == "question_answering":
            items.append(result("textarea", {"text": [row.label]}))
            span = self.answer_span(row)
            if span is not None:
                start, end = span
                value = {"start": start, "end": end, "text": row.row[self.target_column][start:end], "labels": ["answer"]}
                items.append(result("labels", value, f"{self.from_name}_span"))
        else:
            choices = self.answer(row)
            items.append(result("choices", {"choices": choices if isinstance(choices, list) else [choices]}))
        return items

    def labeling_config(self) -> str:
        """The labeling config XML of a project these tasks import into."""
        texts = []
        for column in self.task.input_columns:
            name = self.to_name if column == self.target_column else column
            texts.append(f'  <Header value={quoteattr(column)}/>\n  <Text name={quoteattr(name)} value={quoteattr("$" + column)}/>')
        names = f"name={quoteattr(self.from_name)} toName={quoteattr(self.to_name)}"
        labels = self.task.config.prompt.label_names
        if self.task_type == "named_entity_recognition":
            control = f"  <Labels {names}>\n" + "".join(f"    <Label value={quoteattr(t)}/>\n" for t in labels) + "  </Labels>"
            texts.insert(0, control)  # Label Studio shows span labels above the text they mark
        elif self.task_type == "question_answering":
            span = f"name={quoteattr(self.from_name + '_span')} toName={quoteattr(self.to_name)}"
            texts.append(f'  <Labels {span}>\n    <Label value="answer"/>\n  </Labels>')
            texts.append(f"  <TextArea {names} maxSubmissions=\"1\" editable=\"true\"/>")
        else:
            choice = "multiple" if self.task_type == "multilabel_classification" else "single"
            options = "".join(f"    <Choice value={quoteattr(label)}/>\n" for label in labels)
            texts.append(f'  <Choices {names} choice="{choice}" showInLine="true">\n{options}  </Choices>')
        return "<View>\n" + "\n".join(texts) + "\n</View>\n"


class ArgillaExport(ReviewExport):
    """Argilla 2.x records (``Record.to_dict`` shape): the inputs as fields, the label as a
    suggestion with its score and agent, and the row's stage and error as metadata."""

    def item(self, row: LabeledRow) -> dict[str, Any]:
        suggestions = {}
        if row.label:
            suggestions[self.from_name] = {"value": self.value(row), "score": row.confidence, "agent": self.model_version}
        metadata = {"stage": row.details.get("stage", self.model_version), "error": row.error}
        fields = {column: row.row[column] for column in self.task.input_columns}
        return {"id": str(row.index), "fields": fields, "metadata": metadata, "suggestions": suggestions, "responses": {}, "vectors": {}}

    def value(self, row: LabeledRow) -> Any:
        if self.task_type == "named_entity_recognition":
            return [{"start": start, "end": end, "label": kind} for start, end, kind, _ in self.entity_spans(row)]
        return self.answer(row)


REVIEW_EXPORTS: dict[str, type[ReviewExport]] = {"label-studio": LabelStudioExport, "argilla": ArgillaExport}
