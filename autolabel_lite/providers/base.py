"""The interface every model provider implements.

Providers are async so API providers can run many requests at once; local providers
run their CPU-bound work in a worker thread and batch what arrives together.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import ModelConfig
    from ..prompt import Prompt


@dataclass
class Generation:
    """Generated text with the log-probability of each generated token."""

    text: str
    tokens: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    # Per position: the most likely alternatives and their log-probabilities, when the model gives them.
    top_logprobs: list[dict[str, float]] = field(default_factory=list)


@dataclass
class SequenceScore:
    """A continuation scored by teacher forcing: its tokens and their log-probabilities."""

    tokens: list[str]
    logprobs: list[float]

    @property
    def total(self) -> float:
        return float(sum(self.logprobs))

    @property
    def mean(self) -> float:
        return self.total / max(len(self.logprobs), 1)


class Provider(ABC):
    #: Local providers score labels by default; API providers generate.
    is_local: ClassVar[bool] = False
    #: False for a provider that only chooses among labels (``classifier``): no prompts, no text.
    language_model: ClassVar[bool] = True
    #: The ``model.params`` keys the provider reads; None: every key goes to the model server as is.
    known_params: ClassVar[frozenset[str] | None] = None

    def __init__(self, config: "ModelConfig") -> None:
        self.config = config
        # An ignored key would still change the cache key: a silent relabel for nothing.
        if "max_tokens" in config.params:
            raise ConfigError("model.params.max_tokens: the answer length is prompt.max_output_tokens")
        unknown = sorted(set(config.params) - self.known_params) if self.known_params is not None else []
        if unknown:
            raise ConfigError(
                f"model.params: {unknown[0]!r} is not read by provider {config.provider!r} "
                f"(it reads {', '.join(sorted(self.known_params))})"
            )

    @property
    def model_name(self) -> str:
        return self.config.name or ""

    def identity(self) -> dict[str, Any]:
        """What makes two calls interchangeable, for cache keys. Never includes secrets."""
        return {"provider": self.config.provider, "model": self.model_name, "params": self.config.params}

    @property
    def concurrency(self) -> int:
        return self.config.concurrency

    def check(self) -> None:
        """Fail early, with a one-line ProviderError, when the provider cannot work (e.g. no key)."""

    @abstractmethod
    async def generate(self, prompt: "Prompt", **params: Any) -> Generation:
        """Generate an answer for one prompt (greedy unless ``params`` say otherwise)."""

    async def score(self, prompt: "Prompt", continuations: list[str]) -> list[SequenceScore]:
        """Log-probabilities of each continuation's tokens right after the prompt's answer start."""
        raise NotImplementedError(f"provider {self.config.provider!r} cannot score continuations")

    def model_text(self, prompt: "Prompt") -> str | None:
        """The exact text the model reads for ``prompt`` (chat template applied), or None when a
        server applies its own template to the messages."""
        return None

    def count_tokens(self, text: str) -> int | None:
        """Token count from the model's own tokenizer, or None when it has none locally."""
        return None

    async def aclose(self) -> None:
        """Release what belongs to the current event loop (connections); called after each run."""
