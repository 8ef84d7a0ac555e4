"""Reviews back in: a Label Studio or Argilla export becomes labeled rows in a config's
columns (its input columns and ``label_column``, set from the human answer), ready to be
``plan --seed`` rows or few-shot examples.

- Label Studio: a JSON list of tasks; each task's latest annotation that was not
  cancelled wins (by ``updated_at``, then ``created_at``, then position).
- Argilla 2.x: a JSON list of records (``Record.to_dict`` shape); the question's last
  response that is not discarded or a draft wins.

Rows without such an answer are skipped and counted by reason.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .config import TaskConfig, load_config
from .errors import ConfigError, DataError
from .export import TEXT, output_format, target_column, write_table
from .files import check_outputs, replaced_when_done
from .tasks import get_task_class


@dataclass
class ImportedReviews:
    tool: str
    written: int = 0
    skipped: Counter = field(default_factory=Counter)

    def summary(self, output: str | os.PathLike) -> str:
        line = f"imported {self.written} reviewed rows from a {self.tool} export into {output}"
        if self.skipped:
            reasons = ", ".join(f"{count} {reason}" for reason, count in self.skipped.most_common())
            line += f"; skipped {sum(self.skipped.values())} ({reasons})"
        return line


def import_reviews(
    export: str | os.PathLike,
    config: str | os.PathLike | dict | TaskConfig,
    output: str | os.PathLike,
    *,
    from_name: str | None = None,
) -> ImportedReviews:
    """Write the reviewed rows of ``export`` to ``output`` (.csv, .jsonl or .parquet) in ``config``'s columns."""
    task_config = load_config(config)
    task = get_task_class(task_config.task_type)(task_config)
    label_column = task_config.dataset.label_column
    if not label_column:
        raise ConfigError("dataset.label_column: needed to import reviews (the column the human answers go to)")
    if Path(output).suffix.lower() == ".json":
        raise DataError(f"{output}: reviews are written as rows: name it .csv, .jsonl or .parquet")
    fmt = output_format(output)
    inputs = [export, *([config] if isinstance(config, (str, os.PathLike)) else [])]
    check_outputs(inputs, {"--output": output})
    items = _read_export(Path(export))
    reader = _reader_for(items, Path(export))(task, from_name or "label")
    imported = ImportedReviews(reader.tool)
    columns = [*task.input_columns, label_column]

    def rows() -> Iterator[dict[str, str]]:
        for number, item in enumerate(items, 1):
            inputs = reader.inputs(item, number)
            label, skipped = reader.answer(item, inputs)
            if skipped:
                imported.skipped[skipped] += 1
                continue
            imported.written += 1
            yield {**inputs, label_column: label}

    with replaced_when_done(output) as staging:
        write_table(staging, fmt, dict.fromkeys(columns, TEXT), rows())
    return imported


def _read_export(path: Path) -> list:
    if not path.is_file():
        raise DataError(f"review export not found: {path}")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise DataError(f"{path}: a review export is a JSON list of tasks (Label Studio) or records (Argilla)")
    return items


def _reader_for(items: list[dict], path: Path) -> type["_Reviews"]:
    if not items:
        raise DataError(f"{path}: the export holds no tasks or records")
    first = items[0]
    if "fields" in first:
        return ArgillaReviews
    if "data" in first:
        return LabelStudioReviews
    raise DataError(f"{path}: neither a Label Studio export (tasks with 'data') nor an Argilla export (records with 'fields')")


class _Reviews(ABC):
    tool: str
    inputs_key: str

    def __init__(self, task, from_name: str) -> None:
        self.task = task
        self.task_type = task.config.task_type
        self.from_name = from_name
        self.target = target_column(task)

    def inputs(self, item: dict, number: int) -> dict[str, str]:
        values = item.get(self.inputs_key)
        if not isinstance(values, dict):
            raise DataError(f"{self.tool} export: item {number} has no {self.inputs_key!r} object")
        missing = [c for c in self.task.input_columns if c not in values]
        if missing:
            raise DataError(
                f"{self.tool} export: item {number} has no {missing[0]!r} in its {self.inputs_key} "
                f"(has: {', '.join(values)}); is this the config the rows were labeled with?"
            )
        return {c: "" if values[c] is None else str(values[c]) for c in self.task.input_columns}

    @abstractmethod
    def answer(self, item: dict, inputs: dict[str, str]) -> tuple[str, str | None]:
        """(the human label in the label column's format, None) or ("", why the item is skipped)."""

    def joined(self, labels: list[str]) -> str:
        """A multilabel answer in label-set order, as the label column holds it."""
        order = {label: n for n, label in enumerate(self.task.config.prompt.label_names)}
        chosen = sorted(dict.fromkeys(labels), key=lambda label: order.get(label, len(order)))
        return self.task.config.dataset.label_separator.join(chosen)

    def entities(self, spans: list[tuple[str, str]]) -> str:
        """An NER answer from (type, text) pairs, in the task's JSON shape."""
        by_type: dict[str, list[str]] = {}
        for kind, text in spans:
            if text not in by_type.setdefault(kind, []):
                by_type[kind].append(text)
        return self.task.render_label(by_type)


class LabelStudioReviews(_Reviews):
    tool = "Label Studio"
    inputs_key = "data"

    def answer(self, item: dict, inputs: dict[str, str]) -> tuple[str, str | None]:
        annotations = [a for a in item.get("annotations") or [] if isinstance(a, dict)]
        kept = [(n, a) for n, a in enumerate(annotations) if not a.get("was_cancelled")]
        if not kept:
            return "", "cancelled" if annotations else "without an annotation"
        _, latest = max(kept, key=lambda pair: (str(pair[1].get("updated_at") or pair[1].get("created_at") or ""), pair[0]))
        results = [r for r in latest.get("result") or [] if isinstance(r, dict)]
        mine = [r for r in results if r.get("from_name") == self.from_name]
        if self.task_type == "named_entity_recognition":
            if results and not mine:
                return "", f"without a {self.from_name!r} answer"
            text = inputs[self.target]
            pairs = []
            for r in mine:
                v = _value(r)
                span = v.get("text") or (text[v["start"] : v["end"]] if isinstance(v.get("start"), int) and isinstance(v.get("end"), int) else "")
                pairs += [(kind, span) for kind in v.get("labels") or [] if span]
            return self.entities(pairs), None
        if self.task_type == "question_answering":
            typed = [t for r in mine for t in _value(r).get("text") or []]
            spans = [_value(r).get("text") for r in results if r.get("from_name") == f"{self.from_name}_span"]
            answer = next((a for a in [*typed, *spans] if isinstance(a, str) and a.strip()), "")
            return (answer.strip(), None) if answer.strip() else ("", "with an empty answer")
        choices = [c for r in mine for c in _value(r).get("choices") or []]
        if not choices:
            return "", f"without a {self.from_name!r} answer"
        return (self.joined(choices) if self.task_type == "multilabel_classification" else choices[0]), None


def _value(result: dict) -> dict:
    value = result.get("value")
    return value if isinstance(value, dict) else {}


class ArgillaReviews(_Reviews):
    tool = "Argilla"
    inputs_key = "fields"

    def answer(self, item: dict, inputs: dict[str, str]) -> tuple[str, str | None]:
        responses = (item.get("responses") or {}).get(self.from_name) or []
        kept = [r for r in responses if isinstance(r, dict) and r.get("status", "submitted") == "submitted"]
        if not kept:
            return "", "discarded or draft" if responses else "without a response"
        value = kept[-1].get("value")
        if self.task_type == "named_entity_recognition":
            text = inputs[self.target]
            spans = [s for s in value or [] if isinstance(s, dict) and isinstance(s.get("start"), int) and isinstance(s.get("end"), int)]
            return self.entities([(str(s.get("label")), text[s["start"] : s["end"]]) for s in spans]), None
        if self.task_type == "multilabel_classification":
            return self.joined([str(v) for v in value or []]), None
        if value is None or not str(value).strip():
            return "", "with an empty answer"
        return str(value).strip(), None

