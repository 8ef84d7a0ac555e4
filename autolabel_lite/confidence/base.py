"""The interface every confidence method implements, and what it gets to work with.

A method sees the row's labeling outcome (``Labeled``) and the verifier model's calls
(``Verifier``, through the labeler's cache: a rerun makes no model call again), and
returns a ``Confidence`` in [0, 1].
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from ..errors import ConfigError, ProviderError
from ..prompt import Prompt, templates_dir

if TYPE_CHECKING:
    from ..config import ConfidenceConfig
    from ..labeler import Labeler
    from ..providers import Generation, Provider, SequenceScore
    from ..tasks import Task


@dataclass
class Labeled:
    """One row's label as the labeling step produced it."""

    prompt: Prompt
    row: Mapping[str, Any]
    label: str
    #: The text the labeling model produced for the label: its generation, or the candidate it scored best.
    output: str
    #: The labeling step's details: ``tokens``/``logprobs`` of ``output``, ``label_probs`` when labels were scored.
    details: Mapping[str, Any]


@dataclass
class Confidence:
    value: float
    #: Kept in the row's details (e.g. per-entity scores, an unparseable verbalized answer).
    details: dict[str, Any] = field(default_factory=dict)


class Verifier:
    """The verifier model's calls, through the labeler's cache, and its prompts."""

    def __init__(self, labeler: "Labeler", provider: "Provider") -> None:
        self.labeler = labeler
        self.provider = provider

    @property
    def is_labeler(self) -> bool:
        """True when the labeling model verifies its own labels: its logprobs can be reused."""
        return self.provider is self.labeler.provider

    async def generate(self, prompt: Prompt, **params: Any) -> "Generation":
        generation, _ = await self.labeler.generate(prompt, provider=self.provider, **params)
        return generation

    async def score(self, prompt: Prompt, continuations: list[str]) -> list["SequenceScore"]:
        """Teacher forcing: each continuation's token logprobs right after the prompt."""
        with _scoring_errors():
            scores, _ = await self.labeler.score(prompt, continuations, provider=self.provider)
        return scores

    async def label_distribution(self, prompt: Prompt, candidates: list[str]) -> list[float]:
        """Normalised probabilities of ``candidates`` after ``prompt`` (``prompt.label_scoring``)."""
        with _scoring_errors():
            probs, _, _ = await self.labeler.label_distribution(prompt, candidates, provider=self.provider)
        return probs

    @cached_property
    def _templates(self) -> SandboxedEnvironment:
        # The config's folder first, so a user can override a verifier prompt by file name.
        search_path = [str(self.labeler.config.base_dir), str(templates_dir())]
        return SandboxedEnvironment(loader=jinja2.FileSystemLoader(search_path), undefined=jinja2.StrictUndefined)

    def ask(self, template: str, labeled: Labeled) -> Prompt:
        """The verifier's prompt: the row's prompt and its label, then the template's question."""
        try:
            user = self._templates.get_template(template).render(prompt=labeled.prompt.user, answer=labeled.label)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"confidence: verifier template {template}: {exc}") from None
        return Prompt(user=user.strip(), system=labeled.prompt.system)


@contextmanager
def _scoring_errors():
    """A verifier that cannot teacher-force: say so in confidence terms (the provider's own
    hint is about labeling)."""
    try:
        yield
    except (ProviderError, NotImplementedError) as exc:
        reason = str(exc).split(";")[0]
        raise ProviderError(
            f"confidence.verifier: {reason}; this method needs a verifier that scores text "
            "(a local model, or a server with completions echo + logprobs), or use confidence.method verbalized"
        ) from None


class ConfidenceMethod(ABC):
    #: True when the method scores each part of a split label (NER entities) and keeps those scores.
    scores_parts: ClassVar[bool] = False

    def __init__(self, config: "ConfidenceConfig", task: "Task", verifier: Verifier) -> None:
        self.config = config
        self.task = task
        self.verifier = verifier

    @classmethod
    def unsupported(cls, task_class: type["Task"]) -> str | None:
        """Why this method cannot score the task's labels (for a config error), or None."""
        return None

    @abstractmethod
    async def score(self, labeled: Labeled) -> Confidence:
        """The verifier's confidence in ``labeled.label``."""

    async def __call__(self, labeled: Labeled) -> Confidence:
        confidence = await self.score(labeled)
        # Probability arithmetic can stray a rounding error outside [0, 1].
        confidence.value = min(1.0, max(0.0, confidence.value))
        return confidence


def normalised_certainty(probabilities: list[float], outcomes: int) -> float:
    """1 − H(p) / log(outcomes): 1 when all mass is on one outcome, 0 when it is spread evenly."""
    if outcomes < 2:
        return 1.0
    entropy = -sum(p * math.log(p) for p in probabilities if p > 0)
    return 1.0 - entropy / math.log(outcomes)


def splits_labels(task_class: type["Task"]) -> bool:
    """True when the task scores a label's parts separately (NER: its entities)."""
    from ..tasks import Task

    return task_class.confidence_parts is not Task.confidence_parts
