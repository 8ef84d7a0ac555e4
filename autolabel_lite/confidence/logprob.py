"""``logprob``: the probability the verifier gives the label's tokens (the study's best method).

Whole labels (classification, QA) score the probability of the label's first token, the
study's definition, or the geometric mean over its tokens (``confidence.token_probability:
mean``). Tasks that split a label into parts (NER: one per entity, see
``Task.confidence_parts``) score each part by the geometric mean over its tokens (the
average token probability, as Autolabel computes it), keep the per-part scores, and
give the row its least confident part.

When the labeling model is the verifier and scored the labels, the confidence is the chosen
label's probability in that scoring (calibrated, and combined by the learned labeler when it
labels); when its output shows the label, the labeling call's logprobs are reused; otherwise
the label is teacher-forced after the prompt.
"""

from __future__ import annotations

import math
from collections import Counter

from ..errors import ProviderError
from ..spans import find_occurrences
from . import METHODS
from .base import Confidence, ConfidenceMethod, Labeled, splits_labels

# Byte-level BPE and SentencePiece spell spaces and newlines with these marks in raw tokens.
_TOKEN_MARKS = str.maketrans({"Ġ": " ", "Ċ": "\n", "ĉ": "\t", "▁": " "})
# Characters a token may skip past: the ones covered by byte-fragment tokens that cannot be placed.
MAX_ALIGNMENT_GAP = 4


def token_offsets(tokens: list[str], text: str) -> list[tuple[int, int]]:
    """The character span of each token in ``text``, the text the tokens spell.

    Tokens come decoded (generations, API logprobs) or as raw pieces (teacher forcing).
    A token that cannot be placed, such as a fragment of a multi-byte character, gets an
    empty span and the next token picks up the thread.
    """
    offsets, cursor = [], 0
    for token in tokens:
        piece = token.translate(_TOKEN_MARKS)
        if piece and text.startswith(piece, cursor):
            start = cursor
        else:
            piece = piece.strip()
            start = text.find(piece, cursor, cursor + len(piece) + MAX_ALIGNMENT_GAP) if piece else -1
            if start < 0:
                offsets.append((cursor, cursor))
                continue
        cursor = start + len(piece)
        offsets.append((start, cursor))
    return offsets


def part_logprobs(text: str, tokens: list[str], logprobs: list[float], parts: list[str]) -> list[list[float]] | None:
    """For each part, in order, the logprobs of the tokens that spell its place in ``text``;
    None when a part is not there, or when the tokens do not spell ``text`` (they belong to another output)."""
    offsets = token_offsets(tokens, text)
    if not offsets or offsets[-1][1] < len(text.rstrip()):
        return None
    wanted, used = Counter(parts), Counter()
    found = []
    for part in parts:
        # The last occurrences: a model that reasons before answering states its answer last.
        places = find_occurrences(text, part)[-wanted[part] :]
        if not places:
            return None
        start, end = places[min(used[part], len(places) - 1)]
        used[part] += 1
        values = [value for (left, right), value in zip(offsets, logprobs) if left < end and right > start]
        if not values:
            return None
        found.append(values)
    return found


def token_probability(logprobs: list[float], how: str) -> float:
    """``first``: the first token's probability; ``mean``: the geometric mean of the tokens' probabilities."""
    if how == "first":
        return math.exp(logprobs[0])
    return math.exp(sum(logprobs) / len(logprobs))


@METHODS.register("logprob")
class LogprobConfidence(ConfidenceMethod):
    scores_parts = True

    async def score(self, labeled: Labeled) -> Confidence:
        split = splits_labels(type(self.task))
        label_probs = labeled.details.get("label_probs") or {}
        if self.verifier.is_labeler and not split and labeled.output in label_probs:
            # A scored label: its probability under the normalisation that chose it. Its first
            # token's raw probability disagrees exactly where calibration changed the choice
            # (AUROC 0.10 on toxic comments: right labels ranked below wrong ones).
            return Confidence(label_probs[labeled.output])
        named = self.task.confidence_parts(labeled.label)
        parts = named or [labeled.label]
        values = None
        if self.verifier.is_labeler:
            details = labeled.details
            values = part_logprobs(labeled.output, details.get("tokens") or [], details.get("logprobs") or [], parts)
        if values is None:
            [forced] = await self.verifier.score(labeled.prompt, [labeled.label])
            if not forced.logprobs:
                raise ProviderError("confidence.verifier: returned no logprobs for the label")
            # The label spells its own parts; should a part's tokens not line up, the whole label stands in.
            values = part_logprobs(labeled.label, forced.tokens, forced.logprobs, parts) or [forced.logprobs] * len(parts)
        how = self.config.token_probability or ("mean" if split else "first")
        scores = [token_probability(v, how) for v in values]
        if not split:
            return Confidence(scores[0])
        entities = [{"text": part, "confidence": round(score, 6)} for part, score in zip(named, scores)]
        return Confidence(min(scores), {"entity_confidences": entities})
