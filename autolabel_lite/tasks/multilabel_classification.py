"""Multilabel classification: zero or more labels of ``prompt.labels``, joined by
``dataset.label_separator`` (default ``;``) in label-set order.

Local models score every label once after the prompt (the same packed pass as
classification) and keep each label whose probability is above uniform (1/K): one pass
per row instead of one yes/no question per label. The learned labeler gives each label its
own P(applies) instead; those labels are kept above 0.5.
"""

from __future__ import annotations

import re
from typing import Any, Mapping


from . import TASKS
from .base import Parsed, Task
from .classification import ClassificationTask, _short, match_label, normalise

# Answers meaning "no label applies".
_NONE = {"none", "no labels", "no label", "n/a", "nothing", "[]"}
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


@TASKS.register("multilabel_classification")
class MultilabelClassificationTask(Task):
    template = "multilabel_classification.jinja"
    default_example_template = ClassificationTask.default_example_template

    @classmethod
    def check_config(cls, config) -> None:
        ClassificationTask.check_config(config)
        separator = config.dataset.label_separator
        if not separator.strip():
            raise ValueError("dataset.label_separator: must contain a non-space character")
        clashing = [label for label in config.prompt.label_names if separator in label]
        if clashing:
            raise ValueError(f"dataset.label_separator: {separator!r} occurs in label {clashing[0]!r}")

    @property
    def labels(self) -> list[str]:
        return self.config.prompt.label_names

    @property
    def separator(self) -> str:
        return self.config.dataset.label_separator

    def prompt_variables(self) -> dict[str, Any]:
        return {**super().prompt_variables(), "separator": self.separator}

    def candidates(self, row: Mapping[str, Any]) -> list[str] | None:
        return self.labels

    def choose(self, candidates: list[str], probs: list[float], independent: bool = False) -> str:
        cut = 0.5 if independent else 1.0 / len(candidates)
        return self.join([label for label, p in zip(candidates, probs) if p > cut])

    def join(self, labels: list[str]) -> str:
        chosen = set(labels)
        return self.separator.join(label for label in self.labels if label in chosen)

    def split(self, text: str) -> list[str]:
        """Pieces of a label list: one per line and per separator, or per comma when the
        model used commas instead (unless the whole line is one label). Lead-ins ending
        in a colon ("The topics are:") and list bullets are dropped."""
        pieces = []
        for line in text.splitlines():
            parts = line.split(self.separator)
            if len(parts) == 1 and normalise(line) not in map(normalise, self.labels):
                parts = line.split(",")
            pieces.extend(_BULLET.sub("", part).strip() for part in parts)
        return [p for p in pieces if p.strip(" \t\"'`*.") and not p.endswith(":")]

    def parse(self, text: str, row: Mapping[str, Any]) -> Parsed:
        if normalise(text).strip(" .\"'`") in _NONE:
            return Parsed("")
        chosen, unknown = [], []
        for piece in self.split(text):
            label = match_label(piece, self.labels)
            (chosen if label else unknown).append(label or piece)
        error = None
        if unknown:
            shown = ", ".join(repr(_short(u, 30)) for u in unknown[:3]) + (", …" if len(unknown) > 3 else "")
            error = f"{len(unknown)} part{'s' if len(unknown) > 1 else ''} of the output match{'es' if len(unknown) == 1 else ''} no label: {shown}"
        return Parsed(self.join(chosen), error)

    def label_set(self, value: Any) -> set[str]:
        """A label list (predicted or ground truth) as label names; names outside the label
        set are kept, so they count as errors."""
        by_norm = {normalise(label): label for label in self.labels}
        text = "" if value is None else str(value)
        return {by_norm.get(normalise(piece), piece.strip()) for piece in text.split(self.separator) if piece.strip()}

    def example_label(self, value: Any) -> str:
        gold = self.label_set(value)
        return self.separator.join([label for label in self.labels if label in gold] + sorted(gold - set(self.labels)))

    def confidence_parts(self, label: str) -> list[str]:
        """Each chosen label."""
        return [piece for piece in label.split(self.separator) if piece]

    def is_correct(self, predicted: str, gold: str) -> bool:
        return self.label_set(predicted) == self.label_set(gold)

    def metrics(self, predicted: list[str], gold: list[str]) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.preprocessing import MultiLabelBinarizer

        pred_sets = [self.label_set(p) for p in predicted]
        gold_sets = [self.label_set(g) for g in gold]
        extra = sorted(set().union(*gold_sets, *pred_sets) - set(self.labels))
        binarizer = MultiLabelBinarizer(classes=[*self.labels, *extra]).fit(gold_sets)
        y_true, y_pred = binarizer.transform(gold_sets), binarizer.transform(pred_sets)
        # Like classification's macro F1: averaged over the labels that occur in the gold or predicted labels.
        seen = (y_true.sum(axis=0) + y_pred.sum(axis=0)) > 0
        if not seen.any():  # no label expected and none predicted: nothing was got wrong
            return {"micro_f1": 1.0, "macro_f1": 1.0, "exact_set_accuracy": 1.0}
        return {
            "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y_true[:, seen], y_pred[:, seen], average="macro", zero_division=0)),
            "exact_set_accuracy": float(accuracy_score(y_true, y_pred)),
        }
