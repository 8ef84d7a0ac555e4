"""Entity matching: do two records describe the same thing? Classification with two
labels (``prompt.labels``, default ``duplicate`` / ``not duplicate``) and its own
template; the input columns hold the fields of both records."""

from __future__ import annotations

from . import TASKS
from .classification import ClassificationTask

DEFAULT_LABELS = ["duplicate", "not duplicate"]


@TASKS.register("entity_matching")
class EntityMatchingTask(ClassificationTask):
    template = "entity_matching.jinja"

    @classmethod
    def check_config(cls, config) -> None:
        if config.prompt.labels is not None and len(config.prompt.labels) != 2:
            raise ValueError("prompt.labels: entity_matching needs exactly two labels (match, no match)")

    def __init__(self, config) -> None:
        if config.prompt.labels is None:
            # A copy: the caller's config keeps saying what the user wrote.
            config = config.model_copy(update={"prompt": config.prompt.model_copy(update={"labels": list(DEFAULT_LABELS)})})
        super().__init__(config)
