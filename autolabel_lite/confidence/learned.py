"""``learned``: the probability that the chosen label (multilabel: the chosen label set) is
right, from the learned labeler's correctness model (learned.py) — a logistic regression over
the combined distribution's top probability, margin and certainty and over how each view
(language model, embeddings) sees the chosen label (multilabel: the set's probability, its
least sure label's margin, its size and whether each view chooses the same set), fitted out
of fold on the labeled examples. With too few examples to fit it, the combined distribution's
probability of the chosen labels stands in.
"""

from __future__ import annotations

from . import METHODS
from .base import Confidence, ConfidenceMethod, Labeled


@METHODS.register("learned")
class LearnedConfidence(ConfidenceMethod):
    @classmethod
    def unsupported(cls, task_class) -> str | None:
        from ..tasks import Task

        if task_class.candidates is Task.candidates:
            return "it needs a task that chooses among a fixed set of labels (e.g. classification)"
        return None

    async def score(self, labeled: Labeled) -> Confidence:
        learned = labeled.details.get("learned_confidence")
        if learned is not None:
            return Confidence(learned)
        probs = labeled.details["label_probs"]
        return Confidence(sum(probs[part] for part in self.task.confidence_parts(labeled.output)))
