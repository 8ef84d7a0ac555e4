"""``verbalized``: ask the verifier for a number between 0 and 1 and parse it.

An answer without such a number scores 0.0 and is flagged in the row's details
(``confidence_unparsed``), so runs can count how often the verifier failed to answer.
"""

from __future__ import annotations

import re

from . import METHODS
from .base import Confidence, ConfidenceMethod, Labeled

TEMPLATE = "verifier_verbalized.jinja"
MAX_ANSWER_TOKENS = 16
# The first number in the answer, maybe a percentage: "0.8", ".8", "80%", "1".
_NUMBER = re.compile(r"(?<![\w.\-])(\d+(?:\.\d+)?|\.\d+)\s*(%?)")


def parse_probability(text: str) -> float | None:
    """The first number in ``text`` as a probability, or None when it is missing or outside [0, 1]."""
    match = _NUMBER.search(text)
    if match is None:
        return None
    value = float(match.group(1)) / (100 if match.group(2) else 1)
    return value if 0.0 <= value <= 1.0 else None


@METHODS.register("verbalized")
class VerbalizedConfidence(ConfidenceMethod):
    async def score(self, labeled: Labeled) -> Confidence:
        answer = await self.verifier.generate(self.verifier.ask(TEMPLATE, labeled), max_tokens=MAX_ANSWER_TOKENS)
        value = parse_probability(answer.text)
        if value is None:
            return Confidence(0.0, {"confidence_unparsed": answer.text})
        return Confidence(value)
