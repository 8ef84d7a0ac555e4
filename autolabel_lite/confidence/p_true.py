"""``p_true``: ask the verifier whether the proposed answer is correct; confidence = P(Yes),
normalised over Yes and No (Kadavath et al. 2022)."""

from __future__ import annotations

from ..scoring import softmax
from . import METHODS
from .base import Confidence, ConfidenceMethod, Labeled

TEMPLATE = "verifier_p_true.jinja"
ANSWERS = ["Yes", "No"]


@METHODS.register("p_true")
class PTrueConfidence(ConfidenceMethod):
    async def score(self, labeled: Labeled) -> Confidence:
        yes, no = await self.verifier.score(self.verifier.ask(TEMPLATE, labeled), ANSWERS)
        return Confidence(softmax([yes.total, no.total])[0])
