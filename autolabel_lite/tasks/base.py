"""The interface every task type implements.

A task knows the shape of its label: which row values the prompt shows, which
candidate labels can be scored, how to turn model text into a label, how to check that
label against the row, and how to score a column of labels against ground truth.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from ..structured import answer_value

if TYPE_CHECKING:
    from ..config import TaskConfig


@dataclass(frozen=True)
class Parsed:
    """A label as written to the output column, why it is suspect (if it is), and
    anything the task derived while checking it (kept in the row's details)."""

    label: str
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    #: Template file in prompts/ used when the config names none.
    template: ClassVar[str]
    #: Jinja source that renders one example (few-shot or the row being labeled).
    default_example_template: ClassVar[str]
    #: Keys of a row's details exported as JSON columns named ``<task_name>_<key>``.
    detail_columns: ClassVar[tuple[str, ...]] = ()
    #: True when candidates() depends on the row (question answering's spans).
    candidates_vary_by_row: ClassVar[bool] = False
    #: ``prompt.label_scoring`` when the config sets none.
    default_label_scoring: ClassVar[str] = "calibrated"
    #: The key holding the answer in a structured output (``{"label": ...}``); None when the
    #: structured output is the label itself (NER's object of entity lists).
    answer_key: ClassVar[str | None] = None

    def __init__(self, config: "TaskConfig") -> None:
        self.config = config
        if "label_scoring" not in config.prompt.model_fields_set:
            config.prompt.label_scoring = self.default_label_scoring

    @classmethod
    def check_config(cls, config: "TaskConfig") -> None:
        """Raise ValueError("key.path: what is expected") for configs this task cannot run."""

    @property
    def input_columns(self) -> list[str]:
        return list(self.config.dataset.input_columns)

    def required_columns(self) -> list[str]:
        return self.input_columns

    def render_inputs(self, row: Mapping[str, Any]) -> dict[str, str]:
        """The row's input columns as text, by column name (values are data, never template source)."""
        return {column: _as_text(row.get(column)) for column in self.input_columns}

    def template_aliases(self, inputs: Mapping[str, str]) -> dict[str, str]:
        """Extra template variables for a row's inputs, by the roles the task gives them."""
        return {}

    def prompt_variables(self) -> dict[str, Any]:
        """Variables shared by every row's prompt (label lists, entity types)."""
        return {
            "labels": self.config.prompt.label_names,
            "label_descriptions": self.config.prompt.label_descriptions,
            "list_labels": self.config.prompt.list_labels,
        }

    def candidates(self, row: Mapping[str, Any]) -> list[str] | None:
        """Labels to score by log-likelihood for this row, or None when the label must be generated."""
        return None

    def choose(self, candidates: list[str], probs: list[float], independent: bool = False) -> str:
        """The model output a scored row stands for (parsed like generated text): the most probable
        candidate. ``independent``: ``probs`` are each label's own P(applies), not one distribution."""
        return candidates[max(range(len(candidates)), key=probs.__getitem__)]

    def output_schema(self, labels: list[str] | None = None) -> dict[str, Any] | None:
        """The JSON schema a generated answer must follow (see structured.py), or None to
        leave the model's text free; ``labels`` narrows a label list for this row."""
        return None

    def copy_source(self, row: Mapping[str, Any]) -> str | None:
        """The text a local model's structured answer strings must be copied from, if any."""
        return None

    def answer_text(self, output: str) -> str:
        """The answer inside a structured output, else the output as written (a server that ignored the schema)."""
        value = answer_value(output, self.answer_key) if self.answer_key else None
        return output if value is None else value

    @abstractmethod
    def parse(self, text: str, row: Mapping[str, Any]) -> Parsed:
        """Turn the model's raw output into a label, flagging what does not fit the row."""

    def example_label(self, value: Any) -> str:
        """How a ground-truth label is written in a few-shot example (the answer the model should give)."""
        return _as_text(value)

    @abstractmethod
    def metrics(self, predicted: list[str], gold: list[str]) -> dict[str, float]:
        """Quality of predicted labels against ground truth, as plain numbers."""

    def is_correct(self, predicted: str, gold: str) -> bool:
        """Per-row correctness, used for confidence AUROC and threshold tuning."""
        return predicted == gold

    def confidence_parts(self, label: str) -> list[str]:
        """Substrings of the label, as written to the output column, whose tokens are scored
        separately for confidence (the row's confidence combines them). Default: the whole label."""
        return [label] if label else []


def _as_text(value: Any) -> str:
    return "" if value is None else str(value)
