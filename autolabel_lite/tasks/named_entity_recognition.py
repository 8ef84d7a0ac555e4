"""Named-entity recognition: the label is a JSON object mapping each entity type of
``prompt.labels`` to the entity strings of that type, e.g.
``{"Person": ["Ada Lovelace"], "Location": []}``.

Every entity must occur in the text (the single input column); the row's details keep
where: ``entities`` lists each entity's type, text, first occurrence and all occurrences,
and is exported as the ``<task_name>_entities`` column.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Callable, Mapping

from ..errors import DataError
from ..structured import object_schema
from . import TASKS
from ..spans import find_occurrences
from .base import Parsed, Task
from .classification import _short, match_label, normalise

# Dropped entities named in a row's _error (all are counted).
MAX_REPORTED = 5

_FENCE = re.compile(r"```[\w-]*\s*(.*?)(?:```|$)", re.S)
# `entity%type`, the format Refuel Autolabel asks for; also `type: entity` per line.
_PERCENT_LINE = re.compile(r"^\s*[-*]?\s*(.+?)\s*%\s*(.+?)\s*$")
_COLON_LINE = re.compile(r"^\s*[-*]?\s*([^:{}\[\]]+?)\s*:\s*(.+?)\s*$")


def _load_object(text: str) -> Any:
    """The first JSON (or Python-literal, for single quotes) object or list in the text, or None."""
    decoder = json.JSONDecoder()
    for opening in re.finditer(r"[{\[]", text):
        start, closing = opening.start(), "}" if opening.group() == "{" else "]"
        try:
            return decoder.raw_decode(text, start)[0]
        except json.JSONDecodeError:
            pass
        end = text.rfind(closing)
        while end > start:  # a Python literal ends at one of the closing brackets, text may follow
            try:
                return ast.literal_eval(text[start : end + 1])
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                end = text.rfind(closing, start, end)
    return None


def _pairs_from_object(value: Any) -> list[tuple[str, str]] | None:
    """(type, entity) pairs from {"Type": [...]} or a list of {"Description"/"type", "Text"/"entity"};
    None for anything else."""
    if isinstance(value, dict):
        pairs = []
        for kind, entities in value.items():
            entities = [entities] if isinstance(entities, str) else entities
            if isinstance(entities, (list, tuple)):
                pairs.extend((str(kind), e) for e in entities if isinstance(e, str))
        return pairs
    if isinstance(value, list):
        pairs = []
        for item in value:
            lowered = {str(k).lower(): v for k, v in item.items()} if isinstance(item, dict) else {}
            kind = lowered.get("description", lowered.get("type"))
            entity = lowered.get("text", lowered.get("entity"))
            if isinstance(kind, str) and isinstance(entity, str):
                pairs.append((kind, entity))
        return pairs if pairs or not value else None
    return None


def extract_pairs(text: str, is_type: Callable[[str], bool]) -> list[tuple[str, str]] | None:
    """(type, entity) pairs from a model's answer, or None when it has no recognisable shape.

    Tolerates code fences, text around the JSON, single quotes, and line formats
    (``entity%type``, or ``Type: a, b`` where ``is_type(Type)``: any "key: value" line
    is too common in chatter, such as the lines of a broken JSON object, to be an entity).
    """
    fenced = _FENCE.findall(text)
    body = fenced[0] if fenced else text
    for candidate in (body, text):
        found = _load_object(candidate)
        if found is not None:
            pairs = _pairs_from_object(found)
            if pairs is not None:
                return pairs
    pairs = []
    for line in body.splitlines():
        percent = _PERCENT_LINE.match(line)
        if percent:
            pairs.append((percent.group(2), percent.group(1)))
            continue
        colon = _COLON_LINE.match(line)
        if colon and is_type(colon.group(1)):
            pairs.extend((colon.group(1), e.strip(" \"'")) for e in colon.group(2).split(","))
    return pairs or None


@TASKS.register("named_entity_recognition")
class NamedEntityRecognitionTask(Task):
    template = "named_entity_recognition.jinja"
    default_example_template = "{% for name, value in inputs.items() %}{{ name }}: {{ value }}\n{% endfor %}Output: {{ label }}"
    detail_columns = ("entities",)

    @classmethod
    def check_config(cls, config) -> None:
        if not config.prompt.labels:
            raise ValueError("prompt.labels: must list the entity types")
        if len(config.dataset.input_columns) != 1:
            raise ValueError("dataset.input_columns: named_entity_recognition needs exactly one text column")

    @property
    def types(self) -> list[str]:
        return self.config.prompt.label_names

    def prompt_variables(self) -> dict[str, Any]:
        return {**super().prompt_variables(), "empty_answer": self.render_label({})}

    def output_schema(self, labels: list[str] | None = None) -> dict[str, Any] | None:
        return object_schema({kind: {"type": "array", "items": {"type": "string"}} for kind in self.types})

    def copy_source(self, row: Mapping[str, Any]) -> str | None:
        return self.render_inputs(row)[self.input_columns[0]]

    def _type_of(self, name: str) -> str | None:
        """A configured type for a model's type name: as match_label, or an abbreviation (PER, LOC, ORG, MISC)."""
        found = match_label(name, self.types)
        if found is None and len(name.strip()) >= 3:
            prefixed = [t for t in self.types if normalise(t).startswith(normalise(name))]
            found = prefixed[0] if len(prefixed) == 1 else None
        return found

    def render_label(self, by_type: Mapping[str, list[str]]) -> str:
        """The output column's JSON: every configured type, in config order."""
        return json.dumps({t: list(by_type.get(t, [])) for t in self.types}, ensure_ascii=False)

    def parse(self, text: str, row: Mapping[str, Any]) -> Parsed:
        pairs = extract_pairs(text, lambda name: self._type_of(name) is not None)
        if pairs is None:
            return Parsed("", f"output {_short(text)!r} is not a JSON object of entity lists")
        source = self.render_inputs(row)[self.input_columns[0]]
        by_type: dict[str, list[str]] = {t: [] for t in self.types}
        entities, problems = [], []
        for name, entity in pairs:
            entity = entity.strip()
            if not entity:
                continue
            kind = self._type_of(name)
            if kind is None:
                problems.append(f"{entity!r} has unknown type {name!r}")
                continue
            spans = find_occurrences(source, entity)
            if not spans:
                problems.append(f"{entity!r} not in the text")
                continue
            surface = source[spans[0][0] : spans[0][1]]  # the text's own spelling
            if surface in by_type[kind]:
                continue
            by_type[kind].append(surface)
            entities.append(
                {"type": kind, "text": surface, "start": spans[0][0], "end": spans[0][1], "occurrences": [list(s) for s in spans]}
            )
        error = None
        if problems:
            shown = "; ".join(problems[:MAX_REPORTED]) + ("; …" if len(problems) > MAX_REPORTED else "")
            error = f"{len(problems)} entit{'y' if len(problems) == 1 else 'ies'} dropped: {shown}"
        return Parsed(self.render_label(by_type), error, details={"entities": entities})

    def example_label(self, value: Any) -> str:
        return self.render_label(self._entities(value, gold=True))

    def confidence_parts(self, label: str) -> list[str]:
        """Each entity, as its JSON string body appears in the label."""
        by_type = self._entities(label)
        return [json.dumps(entity, ensure_ascii=False)[1:-1] for t in self.types for entity in by_type.get(t, [])]

    # -- evaluation ----------------------------------------------------------------------

    def _entities(self, value: Any, gold: bool = False) -> dict[str, list[str]]:
        """Entities by type from a label or a ground-truth value (same JSON shape as the
        label, or conll2003's list of {"Description", "Text"}). A blank value has none; a
        ground truth of another shape is a DataError."""
        text = "" if value is None else str(value)
        if not text.strip():
            return {}
        try:
            pairs = _pairs_from_object(json.loads(text))
        except json.JSONDecodeError:
            pairs = None
        if pairs is None:
            if gold:
                raise DataError(
                    f"{self.config.dataset.label_column or 'label'}: ground truth {text[:60]!r} is not a JSON object of "
                    'entity lists ({"Type": ["entity", ...]}) nor a list of {"Description": TYPE, "Text": SPAN}'
                )
            return {}
        by_type: dict[str, list[str]] = {}
        for name, entity in pairs:
            by_type.setdefault(self._type_of(name) or name, []).append(entity)
        return by_type

    def _mentions(self, value: str, gold: bool) -> set[str]:
        """A row's entities as "type<TAB>normalised text" strings (set semantics: a string
        listed twice under one type is one entity)."""
        by_type = self._entities(value, gold)
        return {f"{kind}\t{normalise(entity)}" for kind, entities in by_type.items() for entity in entities}

    def is_correct(self, predicted: str, gold: str) -> bool:
        return bool(predicted) and self._mentions(predicted, False) == self._mentions(gold, True)

    def metrics(self, predicted: list[str], gold: list[str]) -> dict[str, float]:
        """Entity-level precision, recall and F1, micro-averaged over rows (counts of distinct
        entities per row, not token tags, so no sklearn): strict needs type and text to
        match, partial only the text. Per type (strict) only for types that occur in the
        ground truth or the predictions."""
        pred_sets = [self._mentions(p, False) for p in predicted]
        gold_sets = [self._mentions(g, True) for g in gold]
        results: dict[str, float] = {}

        def score(prefix: str, pred_rows: list[set[str]], gold_rows: list[set[str]]) -> None:
            both = sum(len(p & g) for p, g in zip(pred_rows, gold_rows))
            n_pred, n_gold = sum(map(len, pred_rows)), sum(map(len, gold_rows))
            if not n_pred and not n_gold:  # no entity expected and none predicted: nothing was got wrong
                precision = recall = 1.0
            else:
                precision, recall = both / n_pred if n_pred else 0.0, both / n_gold if n_gold else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            results.update({f"{prefix}precision": precision, f"{prefix}recall": recall, f"{prefix}f1": f1})

        def text_only(rows: list[set[str]]) -> list[set[str]]:
            return [{mention.split("\t", 1)[1] for mention in row} for row in rows]

        def of_type(rows: list[set[str]], kind: str) -> list[set[str]]:
            return [{mention for mention in row if mention.startswith(kind + "\t")} for row in rows]

        score("strict_", pred_sets, gold_sets)
        score("partial_", text_only(pred_sets), text_only(gold_sets))
        kinds = dict.fromkeys([*self.types, *(m.split("\t", 1)[0] for row in [*pred_sets, *gold_sets] for m in row)])
        for kind in kinds:
            pred_rows, gold_rows = of_type(pred_sets, kind), of_type(gold_sets, kind)
            if any(pred_rows) or any(gold_rows):
                score(f"{kind}.", pred_rows, gold_rows)
        return results
