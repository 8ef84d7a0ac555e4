"""Task configuration: pydantic models for the JSON config files in task_configs/.

Keys follow Refuel Autolabel's config so its users feel at home. Every validation
failure becomes a one-line ``ConfigError`` that starts with the key path, e.g.
``prompt.labels: must be a non-empty list of strings``.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from .errors import ConfigError


class TaskType(str, Enum):
    classification = "classification"
    question_answering = "question_answering"
    named_entity_recognition = "named_entity_recognition"
    multilabel_classification = "multilabel_classification"
    entity_matching = "entity_matching"


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetConfig(_Strict):
    input_columns: list[str] = Field(default_factory=lambda: ["text"])
    label_column: str | None = None
    delimiter: str = ","
    label_separator: str = ";"
    # Longer input values are trimmed (and the row flagged) so one huge cell cannot stall a run.
    max_input_chars: int = Field(20000, ge=1)

    @field_validator("input_columns")
    @classmethod
    def _non_empty_columns(cls, value: list[str]) -> list[str]:
        if not value or not all(isinstance(c, str) and c for c in value):
            raise ValueError("must be a non-empty list of column names")
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError("must be a single character")
        return value


class Pricing(_Strict):
    """USD per one million tokens."""

    input_per_million: float = Field(0.0, ge=0)
    output_per_million: float = Field(0.0, ge=0)


class ModelConfig(_Strict):
    provider: str = "embedded"
    name: str | None = None
    base_url: str | None = None
    # Never written to the cache, the CSV or logs; SecretStr also hides it from repr().
    api_key: SecretStr | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    compute_confidence: bool = False
    batch_size: int = Field(8, ge=1)
    concurrency: int = Field(8, ge=1)
    max_retries: int = Field(4, ge=0)
    timeout: float = Field(60.0, gt=0)
    pricing: Pricing | None = None

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        from .providers import provider_names

        if value not in provider_names():
            raise ValueError(f"unknown provider {value!r}; expected one of {', '.join(provider_names())}")
        return value


class FewShotExample(BaseModel):
    model_config = ConfigDict(extra="allow")


class PromptConfig(_Strict):
    task_guidelines: str = ""
    output_guidelines: str = ""
    labels: list[str] | dict[str, str] | None = None
    few_shot_examples: list[dict[str, Any]] | str | None = None
    few_shot_num: int | None = Field(None, ge=0)
    example_template: str | None = None
    template: str | None = None
    labeling_mode: Literal["auto", "score", "generate"] = "auto"
    label_scoring: Literal["sum", "mean", "calibrated"] = "calibrated"
    max_output_tokens: int = Field(64, ge=1)

    @field_validator("labels")
    @classmethod
    def _labels_non_empty(cls, value: list[str] | dict[str, str] | None):
        if value is None:
            return value
        names = list(value)
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValueError("must be a non-empty list of strings")
        folded = [" ".join(n.split()).casefold() for n in names]
        if len(set(folded)) != len(folded):
            dupes = sorted({n for n in names if folded.count(" ".join(n.split()).casefold()) > 1})
            raise ValueError(f"labels collide after normalising case and whitespace: {', '.join(dupes)}")
        return value

    @property
    def label_names(self) -> list[str]:
        return list(self.labels or [])

    @property
    def label_descriptions(self) -> dict[str, str]:
        return dict(self.labels) if isinstance(self.labels, dict) else {}


class TaskConfig(_Strict):
    task_name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    task_type: TaskType = TaskType.classification
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    # Directory the config was loaded from: relative paths (few-shot CSVs, templates) resolve here.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @model_validator(mode="after")
    def _task_specific(self) -> "TaskConfig":
        from .tasks import get_task_class

        get_task_class(self.task_type).check_config(self)
        return self

    def column(self, suffix: str) -> str:
        return f"{self.task_name}_{suffix}"


def _format_error(error: ValidationError) -> str:
    first = error.errors()[0]
    path = ".".join(str(part) for part in first["loc"] if not str(part).startswith("function-"))
    message = first["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "is required"
    return f"{path}: {message}" if path else message


def load_config(source: Union[str, Path, dict, TaskConfig], **overrides: Any) -> TaskConfig:
    """Build a TaskConfig from a JSON file path, a dict or an existing TaskConfig.

    ``overrides`` are dotted key paths (``model.provider="openai"``) applied before
    validation, so CLI flags are checked exactly like the file.
    """
    if isinstance(source, TaskConfig):
        data, base_dir = source.model_dump(mode="python", exclude_none=False), source.base_dir
        if source.model.api_key is not None:
            data["model"]["api_key"] = source.model.api_key.get_secret_value()
    elif isinstance(source, dict):
        data, base_dir = json.loads(json.dumps(source)), Path.cwd()
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        base_dir = path.resolve().parent
    if not isinstance(data, dict):
        raise ConfigError("config must be a JSON object")
    from .compat import translate_autolabel_config

    data = translate_autolabel_config(data)
    for dotted, value in overrides.items():
        if value is None:
            continue
        target = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = value
    data["base_dir"] = base_dir
    try:
        return TaskConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None
