"""``semantic_entropy`` (Kuhn et al. 2023): sample answers from the verifier, group the
ones that say the same thing, and score how concentrated the groups are.

``confidence.samples`` answers at ``confidence.temperature``; two answers share a group
when their ROUGE-L F1 reaches ``confidence.rouge_threshold`` (groups are the connected
components of that relation). Each sample weighs its sequence probability; confidence =
1 − H(groups) / log(samples).
"""

from __future__ import annotations

import asyncio

from ..rouge import rouge_l
from ..scoring import softmax
from ..tasks.classification import normalise
from . import METHODS
from .base import Confidence, ConfidenceMethod, Labeled, normalised_certainty


def group_answers(answers: list[str], threshold: float) -> list[int]:
    """A group id per answer: answers are joined, transitively, when their ROUGE-L F1 ≥ threshold."""
    parent = list(range(len(answers)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(answers)):
        for j in range(i + 1, len(answers)):
            if root(i) != root(j) and rouge_l(answers[i], answers[j]) >= threshold:
                parent[root(j)] = root(i)
    roots = [root(i) for i in range(len(answers))]
    ids = {r: n for n, r in enumerate(dict.fromkeys(roots))}
    return [ids[r] for r in roots]


def semantic_certainty(answers: list[str], logprobs: list[float], threshold: float) -> tuple[float, int]:
    """(1 − normalised entropy of the group distribution, number of groups) for samples
    with these sequence log-probabilities."""
    weights = softmax(logprobs)
    groups = group_answers(answers, threshold)
    mass = [0.0] * (max(groups) + 1)
    for group, weight in zip(groups, weights):
        mass[group] += weight
    return normalised_certainty(mass, len(answers)), len(mass)


@METHODS.register("semantic_entropy")
class SemanticEntropyConfidence(ConfidenceMethod):
    async def score(self, labeled: Labeled) -> Confidence:
        samples = await asyncio.gather(
            *(
                self.verifier.generate(labeled.prompt, temperature=self.config.temperature, seed=seed)
                for seed in range(self.config.samples)
            )
        )
        answers = [self._meaning(s.text, labeled) for s in samples]
        value, groups = semantic_certainty(answers, [sum(s.logprobs) for s in samples], self.config.rouge_threshold)
        return Confidence(value, {"semantic_groups": groups})

    def _meaning(self, text: str, labeled: Labeled) -> str:
        """What a sample says, to compare: the words that carry its label (NER: its entities,
        not the JSON around them), or the text itself when the task cannot parse it."""
        label = self.task.parse(text, labeled.row).label
        return " ".join(self.task.confidence_parts(label)) if label else normalise(text)
