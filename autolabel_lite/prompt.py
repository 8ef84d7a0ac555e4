"""Prompt step: render a row (plus few-shot examples) into the messages a model sees.

Templates are rendered in a sandbox with StrictUndefined. Row values are passed only as
variables, never compiled as template source, so a row containing ``{{ ... }}`` is
labeled as the plain text it is.
"""

from __future__ import annotations

import json
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from .errors import ConfigError
from .tasks import Task


MAX_FRAMES = 256
CHAIN_OF_THOUGHT_INSTRUCTION = (
    "Think step by step: explain your reasoning in one or two sentences, "
    'then write the answer on the last line as JSON: {"label": "<answer>"}'
)


def chain_of_thought_answer(text: str) -> str:
    """The answer after the reasoning: the last ``{"label": ...}`` object, else the last line."""
    decoder = json.JSONDecoder()
    for start in reversed([match.start() for match in re.finditer(r"\{", text)]):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and "label" in value:
            label = value["label"]
            return label if isinstance(label, str) else json.dumps(label, ensure_ascii=False)
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def templates_dir() -> Path:
    """The wheel ships ``prompts/`` inside the package; a source checkout keeps it at the top level."""
    here = Path(__file__).resolve().parent
    packaged = here / "prompts"
    return packaged if packaged.is_dir() else here.parent / "prompts"


@dataclass(frozen=True)
class Prompt:
    """What one model call sends: a user message and an optional system message."""

    user: str
    system: str | None = None

    @property
    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [{"role": "user", "content": self.user}]

    @property
    def text(self) -> str:
        """Plain-text form for completion endpoints without a chat template."""
        return f"{self.system}\n\n{self.user}\n" if self.system else f"{self.user}\n"


@contextmanager
def template_errors(where: str):
    """Whatever a template does wrong, at compile or render time, becomes one ConfigError
    line that starts with ``where`` (the config key, and the file for template files)."""
    try:
        yield
    except ConfigError:
        raise
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"{where}: template file not found: {exc.name}") from None
    except jinja2.TemplateSyntaxError as exc:
        place = f" ({exc.name}, line {exc.lineno})" if exc.name else f" (line {exc.lineno})"
        raise ConfigError(f"{where}: template syntax error: {exc.message}{place}") from None
    except SecurityError as exc:
        raise ConfigError(f"{where}: template refused by the sandbox: {exc}") from None
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"{where}: template uses an undefined variable: {exc.message}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: template file is not UTF-8 text") from None
    except Exception as exc:  # the template's own expressions failed (1/0, a filter given the wrong type)
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"{where}: template failed: {type(exc).__name__}{': ' + detail if detail else ''}") from None


class PromptBuilder:
    def __init__(self, task: Task) -> None:
        self.task = task
        prompt_config = task.config.prompt
        search_path = [str(task.config.base_dir), str(templates_dir())]
        self._env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(search_path),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            autoescape=False,
        )
        template_name = prompt_config.template or task.template
        self._where = {
            "template": f"prompt.template ({template_name})",
            "example_template": "prompt.example_template",
            "task_guidelines": "prompt.task_guidelines",
            "output_guidelines": "prompt.output_guidelines",
        }
        # In a template the label column's own name means ``label`` (Autolabel's and tutorials' habit).
        self._label_alias = task.config.dataset.label_column
        with template_errors(self._where["template"]):
            self._template = self._env.get_template(template_name)
        with template_errors(self._where["example_template"]):
            self._example_template = self._env.from_string(prompt_config.example_template or task.default_example_template)
        self._guidelines = {}
        for name in ("task_guidelines", "output_guidelines"):
            with template_errors(self._where[name]):
                self._guidelines[name] = self._env.from_string(getattr(prompt_config, name))
        self._static = self._with_guidelines(task.prompt_variables())
        # A user's own template may use the row's text anywhere (filters, conditions): rendered whole.
        self._frames: dict[tuple, tuple[str, str]] | None = None if prompt_config.template else {}
        self._marker = f"\x00{uuid.uuid4().hex}\x00"

    def _with_guidelines(self, variables: dict[str, Any]) -> dict[str, Any]:
        rendered = {}
        for name, template in self._guidelines.items():
            with template_errors(self._where[name]):
                rendered[name] = template.render(variables).strip()
        if self.task.config.prompt.chain_of_thought:
            rendered["output_guidelines"] = "\n".join(filter(None, [rendered["output_guidelines"], CHAIN_OF_THOUGHT_INSTRUCTION]))
        return {**variables, **rendered}

    def _example(self, row: Mapping[str, Any], label: str) -> str:
        inputs = self.task.render_inputs(row)
        variables = {**self.task.template_aliases(inputs), **inputs, "inputs": inputs, "label": label}
        if self._label_alias and self._label_alias not in inputs:
            variables[self._label_alias] = label
        with template_errors(self._where["example_template"]):
            return self._example_template.render(variables).rstrip()

    def render_example(self, example: Mapping[str, Any]) -> str:
        label_column = self.task.config.dataset.label_column or "label"
        label = self.task.example_label(example.get(label_column))
        if self.task.config.prompt.chain_of_thought:
            label = json.dumps({"label": label}, ensure_ascii=False)  # the answer format the model is asked for
        return self._example(example, label)

    def render(self, row: Mapping[str, Any], examples: list[str] | None = None, labels: list[str] | None = None) -> Prompt:
        """Render the prompt for ``row``; ``examples`` are already-rendered few-shot examples;
        ``labels`` replaces the label list for this row (label selection)."""
        current = self._example(row, "")
        if self._frames is None:
            user = self._render_user(examples, labels, current)
        else:
            head, tail = self._frame(examples, labels)
            user = head + current + tail
        return Prompt(user=user.strip())

    def _render_user(self, examples: list[str] | None, labels: list[str] | None, current: str) -> str:
        variables = self._static if labels is None else self._with_guidelines({**self._static, "labels": labels})
        with template_errors(self._where["template"]):
            return self._template.render(**variables, examples=examples or [], current=current)

    def _frame(self, examples: list[str] | None, labels: list[str] | None) -> tuple[str, str]:
        """The prompt before and after the row's own text, rendered once per examples and labels.

        Only for the built-in templates, which place ``current`` verbatim: with fixed examples
        every row shares one frame, and re-rendering it was a third of the framework's time
        per row against a fast server."""
        key = (tuple(examples or ()), None if labels is None else tuple(labels))
        frame = self._frames.get(key)
        if frame is None:
            if len(self._frames) >= MAX_FRAMES:  # per-row examples or labels: keep memory bounded
                self._frames.clear()
            head, _, tail = self._render_user(examples, labels, self._marker).partition(self._marker)
            frame = self._frames[key] = (head, tail)
        return frame

    @cached_property
    def content_free_rows(self) -> list[dict[str, str]]:
        """Inputs with no content, for contextual calibration of label scores."""
        return [{column: filler for column in self.task.input_columns} for filler in ("N/A", "", "[MASK]")]
