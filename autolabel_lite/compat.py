"""Read Refuel Autolabel configs: translate their keys into ours at load time.

There is one code path: an Autolabel config becomes an ordinary config here, before
validation. It is recognised by its ``prompt.example_template``, which Autolabel
requires and writes as a Python format string (``"Input: {example}\\nOutput: {label}"``)
where ours are Jinja (``{{ example }}``). For such a config:

- ``example_template`` becomes Jinja; its fields other than the label (and explanation)
  column become ``dataset.input_columns``;
- ``task_guidelines`` is formatted the way Autolabel formats it: ``{labels}`` is the
  label list one per line, ``{num_labels}`` its length, any other field (``{seed_examples}``
  included) is blank. The examples go in their own section after the output
  guidelines, where Autolabel's few-shot prompt puts them;
- ``output_guidelines`` is plain text (Autolabel does not format it);
- without ``few_shot_selection`` or ``few_shot_num`` Autolabel labels zero-shot, so
  the examples are shown to no row (label selection still learns from them);
- Autolabel-only keys are mapped (``text_column``, ``label_diversity_similarity``,
  ``huggingface_pipeline``, the ``embedding`` block), keys without an effect here are
  dropped with one warning, and keys we cannot honour are one-line errors.
"""

from __future__ import annotations

import re
import string
import warnings
from typing import Any

from .errors import ConfigError

FEW_SHOT_METHODS = {"label_diversity_similarity": "label_diversity"}
MODEL_PROVIDERS = {"huggingface_pipeline": "transformers"}
EMBEDDING_PROVIDERS = {"huggingface_pipeline": "sentence_transformers", "openai": "openai"}
OUR_EMBEDDING_PROVIDERS = {"auto", "sentence_transformers", "tfidf"}

# Keys that change nothing about the labels here.
IGNORED = {
    "model": {"logit_bias": "label scoring needs no logit bias"},
    "dataset": {
        "disable_quoting": "CSV quoting follows the file",
        "explanation_column": "seed explanations are not shown (chain_of_thought asks the model for its own)",
    },
    "prompt": {
        "vector_store_params": "examples are compared in memory",
        "label_selection_threshold": "label_selection_count decides",
        "json_mode": "structured output is prompt.structured_output (on by default)",
        "output_format": "structured output is prompt.structured_output (on by default)",
    },
}
# Keys we cannot honour: the reason is the error.
UNSUPPORTED = {
    "transforms": "Autolabel transforms (web pages, PDFs, OCR) are not supported: prepare the text before labeling",
    "prompt.attributes": "attribute extraction is not supported",
    "dataset.image_url_column": "image inputs are not supported",
}

# Jinja syntax that never appears in a Python format string's fields.
_JINJA = re.compile(r"\{\{\s*[A-Za-z_]|\{%|\{#")


def _fields(template: str, where: str) -> list[tuple[str, str | None]]:
    """(literal text, field name or None) pieces of a Python format string."""
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{where}: not a valid format string ({exc})") from None
    out = []
    for literal, field, spec, conversion in pieces:
        if field is not None and (spec or conversion or not field or not re.fullmatch(r"[^.\[\]]+", field)):
            raise ConfigError(f"{where}: field {{{field}}} needs a plain column name (no format spec, index or attribute)")
        out.append((literal, field))
    return out


def is_format_string(template: str) -> bool:
    if _JINJA.search(template):
        return False
    try:
        return any(field is not None for _, field, _, _ in string.Formatter().parse(template))
    except ValueError:
        return False


def _literal(text: str) -> str:
    """Plain text as Jinja source: every ``{`` is emitted by an expression, so nothing in it is markup."""
    return text.replace("{", "{{ '{' }}")


def _variable(name: str) -> str:
    return f"{{{{ {name} }}}}" if name.isidentifier() else f"{{{{ inputs[{name!r}] }}}}"


def _example_template(template: str, label_column: str, explanation_column: str | None) -> tuple[str, list[str]]:
    """(Jinja source, input columns in order of appearance)."""
    parts, columns = [], []
    for literal, field in _fields(template, "prompt.example_template"):
        parts.append(_literal(literal))
        if field is None or field == explanation_column:
            continue  # explanations exist only for seed rows, and are not shown here
        if field == label_column:
            parts.append("{{ label }}")
        else:
            parts.append(_variable(field))
            columns.append(field)
    return "".join(parts), list(dict.fromkeys(columns))


def _task_guidelines(text: str) -> str:
    """Autolabel formats its guidelines with ``labels`` and ``num_labels`` and blanks any other field."""
    substitutes = {"labels": '{{ labels | join("\\n") }}', "num_labels": "{{ labels | length }}"}
    return "".join(_literal(literal) + substitutes.get(field, "") for literal, field in _fields(text, "prompt.task_guidelines"))


def _section(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    """A copy of ``data[key]`` when it is an object (anything else is left for validation to report)."""
    value = data.get(key)
    if isinstance(value, dict):
        data[key] = dict(value)
        return data[key]
    return None


def translate_autolabel_config(data: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` with Autolabel-only keys mapped onto this project's keys."""
    data = dict(data)
    dataset = _section(data, "dataset")
    prompt = _section(data, "prompt")
    model = _section(data, "model")
    template = prompt.get("example_template") if prompt is not None else None
    autolabel = isinstance(template, str) and is_format_string(template)
    explanation_column = dataset.get("explanation_column") if dataset is not None else None

    if autolabel:
        for dotted, reason in UNSUPPORTED.items():
            *parents, leaf = dotted.split(".")
            section = data.get(parents[0]) if parents else data
            if isinstance(section, dict) and section.get(leaf) not in (None, [], {}):
                raise ConfigError(f"{dotted}: {reason}")
        ignored = []
        for name, keys in IGNORED.items():
            section = data.get(name)
            for key in keys:
                if isinstance(section, dict) and key in section:
                    del section[key]
                    ignored.append(f"{name}.{key}")
        if ignored:
            warnings.warn(f"Autolabel config: ignoring {', '.join(ignored)} (no effect in autolabel-lite)", stacklevel=3)

    if dataset is not None:
        text_column = dataset.pop("text_column", None)
        if autolabel:
            label_column = dataset.get("label_column") or "label"
            prompt["example_template"], columns = _example_template(template, label_column, explanation_column)
            if text_column is not None and text_column not in columns:
                columns.insert(0, text_column)
            dataset.setdefault("input_columns", columns or ["example"])
        elif text_column is not None:
            dataset.setdefault("input_columns", [text_column])
    elif autolabel:
        prompt["example_template"], columns = _example_template(template, "label", None)
        data["dataset"] = {"input_columns": columns or ["example"]}

    if prompt is not None:
        if autolabel:
            if isinstance(prompt.get("task_guidelines"), str):
                if any(field == "labels" for _, field in _fields(prompt["task_guidelines"], "prompt.task_guidelines")):
                    prompt.setdefault("list_labels", False)  # the guidelines list them already
                prompt["task_guidelines"] = _task_guidelines(prompt["task_guidelines"])
            if isinstance(prompt.get("output_guidelines"), str):
                prompt["output_guidelines"] = _literal(prompt["output_guidelines"])
            if prompt.get("few_shot_selection") is None or not prompt.get("few_shot_num"):
                prompt["few_shot_num"] = 0
            elif isinstance(prompt["few_shot_num"], float) and prompt["few_shot_num"].is_integer():
                prompt["few_shot_num"] = int(prompt["few_shot_num"])  # Autolabel's schema says "number"
            for key in ("few_shot_selection", "chain_of_thought"):
                if prompt.get(key) is None:
                    prompt.pop(key, None)
        method = prompt.get("few_shot_selection")
        if isinstance(method, str):
            prompt["few_shot_selection"] = FEW_SHOT_METHODS.get(method, method)

    if model is not None and isinstance(model.get("provider"), str):
        model["provider"] = MODEL_PROVIDERS.get(model["provider"], model["provider"])

    embedding = _section(data, "embedding")
    if embedding is not None and autolabel:
        provider = embedding.get("provider")
        if provider not in EMBEDDING_PROVIDERS and provider not in OUR_EMBEDDING_PROVIDERS:
            raise ConfigError(
                f"embedding.provider: {provider!r} is not available here; use openai or huggingface_pipeline "
                "(a local sentence-transformers directory), or remove the block for the bundled all-MiniLM-L6-v2"
            )
        embedding["provider"] = EMBEDDING_PROVIDERS.get(provider, provider)
    return data
