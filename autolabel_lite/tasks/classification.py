"""Single-label classification: the label is one of ``prompt.labels``."""

from __future__ import annotations

import difflib
import re
from typing import Any, Iterable, Mapping

import numpy as np

from ..structured import object_schema
from . import TASKS
from .base import Parsed, Task


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


_ANSWER_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:answer|output|label|category|class)\s*(?:is)?\s*[:\-]?\s*", re.I)


# A negation just before a mention, allowing one word between: "not toxic", "isn't a duplicate".
_NEGATION_BEFORE = re.compile(r"(?:\bnot|\bno|\bnever|n't)\s+(?:\w+\s+)?$")


def match_label(text: str, labels: list[str]) -> str | None:
    """Map free model output onto the label set: exact, then case/space-insensitive,
    then a label the output starts with or mentions alone, then a close spelling."""
    raw = text.strip()
    if raw in labels:
        return raw
    cleaned = normalise(_ANSWER_PREFIX.sub("", raw).strip(" \t\n\"'`*.:"))
    by_norm = {normalise(label): label for label in labels}
    if cleaned in by_norm:
        return by_norm[cleaned]
    # Longest first, so "not toxic" wins over "toxic" when the output starts with it.
    for norm in sorted(by_norm, key=len, reverse=True):
        if cleaned.startswith(norm) and (len(cleaned) == len(norm) or not cleaned[len(norm)].isalnum()):
            return by_norm[norm]
    mentioned, negated = [], set()
    for norm in by_norm:
        for match in re.finditer(rf"(?<!\w){re.escape(norm)}(?!\w)", cleaned):
            if _NEGATION_BEFORE.search(cleaned[: match.start()]):
                negated.add(norm)  # "not a duplicate" names a label only to deny it
            else:
                mentioned.append(norm)
    mentioned = list(dict.fromkeys(m for m in mentioned if not any(m != other and m in other for other in mentioned)))
    if len(mentioned) == 1:
        return by_norm[mentioned[0]]
    close = difflib.get_close_matches(cleaned, [norm for norm in by_norm if norm not in negated], n=1, cutoff=0.8)
    return by_norm[close[0]] if close else None


@TASKS.register("classification")
class ClassificationTask(Task):
    template = "classification.jinja"
    default_example_template = "{% for name, value in inputs.items() %}{{ name }}: {{ value }}\n{% endfor %}Output: {{ label }}"

    @classmethod
    def check_config(cls, config) -> None:
        if not config.prompt.labels:
            raise ValueError("prompt.labels: must be a non-empty list of strings")

    answer_key = "label"

    def candidates(self, row: Mapping[str, Any]) -> list[str] | None:
        return self.config.prompt.label_names

    def output_schema(self, labels: list[str] | None = None) -> dict[str, Any] | None:
        return object_schema({"label": {"type": "string", "enum": list(labels or self.config.prompt.label_names)}})

    def parse(self, text: str, row: Mapping[str, Any]) -> Parsed:
        label = match_label(text, self.config.prompt.label_names)
        if label is None:
            return Parsed("", f"output {_short(text)!r} matches no label")
        return Parsed(label)

    def is_correct(self, predicted: str, gold: str) -> bool:
        return normalise(predicted) == normalise(gold)

    def metrics(self, predicted: list[str], gold: list[str]) -> dict[str, float]:
        import warnings

        from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

        by_norm = {normalise(label): label for label in self.config.prompt.label_names}
        # Integer codes, not strings: scikit-learn turns string labels into fixed-width unicode
        # arrays and sorts them, ~200 MB for a million rows; codes cost 8 bytes a row.
        codes: dict[str, int] = {}
        y_true = _encode((by_norm.get(normalise(g), g) for g in gold), len(gold), codes)
        y_pred = _encode(predicted, len(predicted), codes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "y_pred has classes not in y_true": failed rows, counted as wrong
            balanced = float(balanced_accuracy_score(y_true, y_pred))
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            # The mean recall over the true labels: what counts on skewed data (9% toxic comments).
            "balanced_accuracy": balanced,
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }


def _encode(labels: Iterable[str], count: int, codes: dict[str, int]) -> np.ndarray:
    """Each label's code in ``codes``, adding the labels it does not have yet."""
    return np.fromiter((codes.setdefault(label, len(codes)) for label in labels), dtype=np.int64, count=count)


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
