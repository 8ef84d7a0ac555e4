"""``entropy`` (exhaustive): the verifier's probability of every label the row could take,
scored in one batched pass and normalised (``prompt.label_scoring``); confidence =
1 − H(p) / log K over the K labels. Only for tasks that score a fixed set of labels.

When the labeling model verifies and scored the labels itself, its label distribution
(``label_probs``, over the labels its prompt offered) is reused."""

from __future__ import annotations

from . import METHODS
from .base import Confidence, ConfidenceMethod, Labeled, normalised_certainty


@METHODS.register("entropy")
class EntropyConfidence(ConfidenceMethod):
    @classmethod
    def unsupported(cls, task_class) -> str | None:
        from ..tasks import Task

        # The label must be exactly one of a fixed set of scored labels (not a set of them, as in multilabel).
        if task_class.candidates is Task.candidates or task_class.choose is not Task.choose:
            return "it needs a task whose label is one of a fixed set of labels (e.g. classification)"
        return None

    async def score(self, labeled: Labeled) -> Confidence:
        probs = labeled.details.get("label_probs") if self.verifier.is_labeler else None
        if probs:
            values = list(probs.values())
        else:
            values = await self.verifier.label_distribution(labeled.prompt, self.task.candidates(labeled.row))
        return Confidence(normalised_certainty(values, len(values)))
