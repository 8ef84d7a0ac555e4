"""Turn per-label log-likelihoods into a label distribution.

Summed log-likelihood favours short, frequent labels; ``mean`` divides by the label's
token count; ``calibrated`` is contextual calibration (Zhao et al. 2021): subtract each
label's log-likelihood under content-free inputs before normalising.
"""

from __future__ import annotations

import math
from typing import Sequence

from .providers.base import SequenceScore


def aggregate(score: SequenceScore, mode: str) -> float:
    return score.mean if mode == "mean" else score.total


def softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def label_distribution(
    scores: Sequence[SequenceScore], mode: str, content_free: Sequence[Sequence[SequenceScore]] = ()
) -> list[float]:
    """Probabilities over the scored labels, in their order.

    ``content_free`` holds the same labels scored after each content-free input; it is
    required for ``calibrated`` and ignored otherwise.
    """
    if mode == "calibrated":
        if not content_free:
            raise ValueError("calibrated scoring needs content-free scores")
        # Average the content-free label distribution (in probability space, as the paper does).
        baselines = [softmax([s.total for s in row]) for row in content_free]
        prior = [sum(b[i] for b in baselines) / len(baselines) for i in range(len(scores))]
        return softmax([s.total - math.log(max(p, 1e-12)) for s, p in zip(scores, prior)])
    return softmax([aggregate(s, mode) for s in scores])
