"""A stage of a cascade: one model (provider), how it labels (Labeler) and how its labels'
confidence is scored. The threshold above which the cascade keeps a stage's label is a
``ThresholdDecision`` per stage, chosen by plan and applied by run (policy.py).

A config without ``cascade`` is a one-stage cascade. Stages are built from a config
alone (no event loop, no agent), so any engine can build and run them.
"""

from __future__ import annotations

from typing import Any

from .cache import Cache, stable_hash
from .config import TaskConfig
from .dataset import Dataset
from .fewshot import ExampleSelector, load_examples
from .labeler import Labeler
from .prompt import PromptBuilder
from .providers import Provider, create_provider
from .tasks import get_task_class


class Stage:
    """``config`` is the task config as this stage sees it: its own ``model`` and ``confidence``."""

    def __init__(self, name: str, config: TaskConfig) -> None:
        self.name = name
        self.config = config
        self.task = get_task_class(config.task_type)(config)
        self.prompt_builder = PromptBuilder(self.task)
        self.examples = load_examples(config, self.task.input_columns)
        self.selector = ExampleSelector(config, self.examples)
        # Surface template errors now, not mid-run: render every example and a whole prompt.
        examples = [self.prompt_builder.render_example(example) for example in self.examples]
        self.prompt_builder.render(self.prompt_builder.content_free_rows[0], examples)
        self._provider: Provider | None = None
        self._verifier: Provider | None = None

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            provider = create_provider(self.config.model)
            provider.check()
            self._provider = provider
        return self._provider

    @property
    def verifier(self) -> Provider:
        """The model that scores confidence: ``confidence.verifier``, else the labeling model."""
        if self._verifier is None:
            verifier_config = self.config.confidence.verifier
            verifier = create_provider(verifier_config) if verifier_config is not None else self.provider
            if verifier.identity() == self.provider.identity():
                verifier = self.provider  # one model in memory, and its labeling logprobs are reusable
            verifier.check()
            self._verifier = verifier
        return self._verifier

    @property
    def model_version(self) -> str:
        """Who labels: ``provider/model``."""
        return f"{self.config.model.provider}/{self.provider.model_name}"

    def labeler(self, cache: Cache) -> Labeler:
        """This stage's labeling, its model calls cached in ``cache``."""
        verifier = self.verifier if self.config.model.compute_confidence else None
        return Labeler(self.task, self.provider, self.prompt_builder, self.selector, cache, verifier)

    def fingerprint(self, with_threshold: bool) -> dict[str, Any]:
        """The config and model, minus settings that change speed or cost but not labels or confidences."""
        exclude: dict = {"model": {"api_key", "concurrency", "batch_size", "max_retries", "timeout", "pricing"}, "cascade": True}
        if not with_threshold:
            exclude["threshold"] = True
        return {"config": self.config.model_dump(mode="json", exclude=exclude), "provider": self.provider.identity()}

    def run_key(self, data: Dataset) -> str:
        """Identifies this stage's labels of ``data`` for resuming: same labels config, same model, same data."""
        # The threshold decides acceptance, not labels: changing it must not relabel rows.
        return stable_hash({**self.fingerprint(with_threshold=False), "data": data.identity()})
