"""``learned``: the probability that the chosen label is right, from the learned labeler's
correctness model (learned.py) — a logistic regression over the combined distribution's
top probability, margin and certainty and over how each view (language model, embeddings)
sees the chosen label, fitted out of fold on the labeled examples. With too few examples to
fit it, the combined distribution's probability of the chosen label stands in.
"""

from __future__ import annotations

from . import METHODS
from .base import Confidence, ConfidenceMethod, Labeled
from .entropy import EntropyConfidence


@METHODS.register("learned")
class LearnedConfidence(ConfidenceMethod):
    unsupported = EntropyConfidence.unsupported  # the same need: one label out of a fixed set

    async def score(self, labeled: Labeled) -> Confidence:
        learned = labeled.details.get("learned_confidence")
        if learned is not None:
            return Confidence(learned)
        return Confidence(labeled.details["label_probs"][labeled.output])
