"""Few-shot examples: load them from the config (a list, or a CSV path relative to it)
and choose which ones each row's prompt shows."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

from .config import TaskConfig
from .errors import ConfigError


def load_examples(config: TaskConfig, required_columns: list[str]) -> list[dict[str, str]]:
    source = config.prompt.few_shot_examples
    if source is None:
        return []
    if isinstance(source, str):
        path = Path(source)
        path = path if path.is_absolute() else config.base_dir / path
        if not path.is_file():
            raise ConfigError(f"prompt.few_shot_examples: file not found: {path}")
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                examples = [dict(r) for r in csv.DictReader(handle, delimiter=config.dataset.delimiter)]
        except UnicodeDecodeError:
            raise ConfigError(f"prompt.few_shot_examples: {path} is not UTF-8 text") from None
    else:
        examples = [dict(e) for e in source]
    label_column = config.dataset.label_column or "label"
    for number, example in enumerate(examples):
        missing = [c for c in [*required_columns, label_column] if c not in example]
        if missing:
            raise ConfigError(f"prompt.few_shot_examples[{number}]: missing {', '.join(repr(m) for m in missing)}")
    return [{k: "" if v is None else str(v) for k, v in e.items()} for e in examples]


class ExampleSelector:
    """Chooses the few-shot examples for a row. ``fixed``: the first ``few_shot_num``."""

    def __init__(self, config: TaskConfig, examples: list[dict[str, str]]) -> None:
        self.examples = examples
        wanted = config.prompt.few_shot_num
        self.count = len(examples) if wanted is None else min(wanted, len(examples))

    def select(self, row: Mapping[str, Any]) -> list[dict[str, str]]:
        return self.examples[: self.count]
