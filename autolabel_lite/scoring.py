"""Turn a model's per-label evidence into a label distribution.

Scored labels (``label_distribution``): summed log-likelihood favours short, frequent
labels; ``mean`` divides by the label's token count; ``calibrated`` is contextual
calibration (Zhao et al. 2021): subtract each label's log-likelihood under content-free
inputs before normalising.

Generated answers (``generated_label_distribution``): the alternatives an API server lists
(top_logprobs) for the answer's first token, mapped onto the labels they begin to spell.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Mapping, Sequence

from .providers.base import SequenceScore
from .tasks.classification import normalise

# A label none of the listed alternatives begins: less likely than each of them, not impossible.
LABEL_FLOOR = 1e-4


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


def generated_label_distribution(
    tokens: Sequence[str], top_logprobs: Sequence[Mapping[str, float]], labels: Sequence[str]
) -> list[float] | None:
    """The model's distribution over ``labels`` from a generated answer: each label's share of
    the alternatives listed for the answer's first token (the first token with a letter or
    digit: a leading quote or newline is not the answer) that begin to spell it, case and
    spacing folded, so " Not" begins "not toxic" and never "toxic".

    Mass on alternatives that begin no label is dropped and the rest renormalised; a label no
    alternative begins gets ``LABEL_FLOOR``. An alternative that begins several labels ("card"
    of "card arrival" and "card linking") is split among them by the next position's
    alternatives when it is the token generated (those were computed after it), else evenly:
    nothing tells them apart. None when the answer has no top_logprobs or no alternative begins
    a label (e.g. "Label: positive"): then the answer says nothing about the labels' odds.
    """
    start = next((i for i, token in enumerate(tokens) if any(c.isalnum() for c in token)), None)
    if start is None or start >= len(top_logprobs) or not top_logprobs[start]:
        return None
    mass = _label_mass(tokens, top_logprobs, start, {i: normalise(label) for i, label in enumerate(labels)})
    total = sum(mass.values())
    if total <= 0:
        return None
    floored = [max(mass.get(i, 0.0) / total, LABEL_FLOOR) for i in range(len(labels))]
    return [p / sum(floored) for p in floored]


def _label_mass(
    tokens: Sequence[str], top_logprobs: Sequence[Mapping[str, float]], position: int, unspelt: Mapping[int, str]
) -> dict[int, float]:
    """Each label's probability mass among the alternatives at ``position``, given what of the
    label is still to spell (``unspelt``, folded). A label already spelt ("") takes the mass of
    alternatives that continue no other label: the model ends it there."""
    mass: dict[int, float] = defaultdict(float)
    spelt = [k for k, rest in unspelt.items() if not rest]
    follows = position + 1 < min(len(tokens), len(top_logprobs)) and bool(top_logprobs[position + 1])
    for token, logprob in top_logprobs[position].items():
        piece = normalise(token)
        begun = [k for k, rest in unspelt.items() if piece and rest.startswith(piece)] or spelt
        if not begun:
            continue
        share = math.exp(logprob)
        if len(begun) > 1 and follows and token == tokens[position]:
            later = _label_mass(tokens, top_logprobs, position + 1, {k: normalise(unspelt[k][len(piece) :]) for k in begun})
            later_total = sum(later.values())
            if later_total > 0:
                for k, value in later.items():
                    mass[k] += share * value / later_total
                continue
        for k in begun:
            mass[k] += share / len(begun)
    return mass
