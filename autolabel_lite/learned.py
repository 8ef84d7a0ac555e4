"""The learned labeler: fit a label distribution on the labeled examples the config holds.

Two views of a row, combined by a small fitted model (a stacker):
- the language model's label distribution (label scoring, one packed pass per row), when
  the provider is a language model;
- an embedding view: a class-balanced logistic regression over the row's all-MiniLM-L6-v2
  vector (entity matching: over how its two records compare — embedding cosine, token and
  character overlap, agreement of model numbers — never one vector of both), or, with no
  labeled examples, the row's similarity to each label's name and description (zero-shot
  prototypes).

The stacker is ``log p(k) ∝ a·log p_view(k) + b·log p_llm(k) + c_k``, fitted with
class-balanced log loss, so the output is a calibrated distribution whose choice serves
balanced accuracy on skewed data. Everything is fitted out of fold: a labeled row's own
distribution (and its confidence) comes from fits that never saw its label, so plan()'s
threshold tuning on those rows keeps its guarantee. ``CorrectnessModel`` learns, from the
same out-of-fold rows, how likely the chosen label is to be right (``confidence.method:
learned``).

Multilabel classification (``LabelSets``) is the same pipeline label by label: the view is one
class-balanced binary logistic regression per label (log-odds that it applies), the language
model's feature is log(K·p(k)), the stacker gives each label ``P(applies) = sigmoid(a·view(k) +
b·llm(k) + c_k)``, a row takes the labels above 0.5, and the correctness model says how likely
the whole label set is right.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from .dataset import row_digest
from .fewshot import label_text
from .tasks.classification import normalise

if TYPE_CHECKING:
    from .fewshot import RowEmbedder

LOG_FLOOR = math.log(1e-6)
# Zero-shot prototypes: cosine similarities are close together; this temperature spreads them.
PROTOTYPE_TEMPERATURE = 0.05
# The embedding view's inverse regularisation (scikit-learn's C) on unit-length vectors.
EMBEDDING_C = 3.0
# The correctness model's inverse regularisation: 9 signals fitted on 100-200 rows. Chosen by
# cross-validation on the seed sets (C=1 → 0.1: civil_comments plan→run at target 0.95 accepted
# 1.3% → 7.3% of held-out rows; banking AUROC 0.82 → 0.83).
CORRECTNESS_C = 0.1
# L2 weight of the stacker's per-label offsets: with a handful of examples per label they
# would otherwise memorise the label counts.
OFFSET_PENALTY = 0.01
# Rows predicted ahead and not yet labeled, at most (the embedding store keeps as many vectors).
AHEAD_MEMORY = 4096
_WORD = re.compile(r"[a-z0-9]+")


def min_examples(folds: int) -> int:
    """Fewer labeled examples than this: nothing is fitted (zero-shot prototypes)."""
    return 2 * max(folds, 2)


def log_probs(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probabilities, 1e-6, 1.0))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exps = np.exp(shifted)
    return exps / exps.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * logits))  # no overflow warning at large |logits|


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Each row weighted by 1 / (its label's share): every label counts the same in a fit."""
    counts = np.bincount(y)
    return len(y) / (np.count_nonzero(counts) * counts[y])


def folds_for(y: np.ndarray, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Held-out index sets, stratified by label as far as the label counts allow."""
    from sklearn.model_selection import KFold, StratifiedKFold

    splits = min(folds, len(y))
    if np.bincount(y)[np.unique(y)].min() >= splits:
        splitter = StratifiedKFold(splits, shuffle=True, random_state=seed)
    else:  # labels with fewer examples than folds (77 intents, 2-3 rows each): plain shuffled folds
        splitter = KFold(splits, shuffle=True, random_state=seed)
    return [held for _, held in splitter.split(np.zeros(len(y)), y)]


# -- the embedding view -------------------------------------------------------------------


def pair_features(vectors_a: np.ndarray, vectors_b: np.ndarray, texts_a: Sequence[str], texts_b: Sequence[str]) -> np.ndarray:
    """How two records compare, one row of scalar features per pair."""
    rows = []
    for vector_a, vector_b, text_a, text_b in zip(vectors_a, vectors_b, texts_a, texts_b):
        words_a, words_b = _words(text_a), _words(text_b)
        codes_a, codes_b = {w for w in words_a if any(c.isdigit() for c in w)}, {w for w in words_b if any(c.isdigit() for c in w)}
        grams_a, grams_b = _grams(text_a), _grams(text_b)
        shorter = min(len(words_a), len(words_b)) or 1
        rows.append(
            [
                float(vector_a @ vector_b),
                _jaccard(words_a, words_b),
                len(words_a & words_b) / shorter,
                _jaccard(grams_a, grams_b),
                _jaccard(codes_a, codes_b) if codes_a or codes_b else 1.0,
                float(bool(codes_a ^ codes_b)),
            ]
        )
    return np.array(rows, dtype=np.float64).reshape(len(rows), 6)


def _words(text: str) -> set[str]:
    # "K-200" and "K200" are one model number.
    return set(_WORD.findall(text.lower().replace("-", "")))


def _grams(text: str) -> set[str]:
    squashed = " ".join(text.lower().split())
    return {squashed[i : i + 3] for i in range(max(len(squashed) - 2, 0))}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class RowFeatures:
    """The embedding view's input for rows and examples: one vector per row, or pair
    features for entity matching (the first half of the input columns is record A)."""

    def __init__(self, embedder: "RowEmbedder", columns: list[str], pairs: bool) -> None:
        self.embedder = embedder
        self.columns = columns
        self.pairs = pairs
        half = len(columns) // 2
        self.records = (columns[:half], columns[half:])

    def __call__(self, rows: Sequence[Mapping[str, Any]], keep: bool = False) -> np.ndarray:
        """``keep``: the rows are examples, whose vectors are worth keeping in the cache."""
        if not self.pairs:
            return self.embedder.kept(rows) if keep else self.embedder.rows(rows)
        texts = [[" ".join(str(row.get(c) or "") for c in record) for row in rows] for record in self.records]
        embed = self.embedder.store.persistent if keep else self.embedder.store.rows
        vectors = embed(texts[0] + texts[1])
        return pair_features(vectors[: len(rows)], vectors[len(rows) :], texts[0], texts[1])


class EmbeddingView:
    """A class-balanced logistic regression from row features to labels; labels without a
    training row get the lowest log-probability the row gives any label."""

    def __init__(self, labels: int, pairs: bool) -> None:
        self.labels = labels
        self.pairs = pairs
        self.model = None
        self.only: int | None = None

    def fit(self, features: np.ndarray, y: np.ndarray, label_vectors: np.ndarray | None = None) -> "EmbeddingView":
        """``label_vectors``: each label's name and description embedded, one more labeled example
        per label (banking's 77 intents, ~2 examples each: held-out accuracy 0.57 → 0.72)."""
        if label_vectors is not None:
            features = np.vstack([features, label_vectors])
            y = np.concatenate([y, np.arange(len(label_vectors))])
        if len(np.unique(y)) < 2:
            self.only = int(y[0])
            return self
        self.model = self._fitted_classifier(features, y)
        return self

    def _fitted_classifier(self, features: np.ndarray, y: np.ndarray):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        classifier = LogisticRegression(C=EMBEDDING_C, class_weight="balanced", max_iter=500)
        # Pair features have different scales; unit vectors do not need scaling.
        model = make_pipeline(StandardScaler(), classifier) if self.pairs else classifier
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on tiny folds
            return model.fit(features, y)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(rows × labels) log-probabilities."""
        out = np.full((len(features), self.labels), LOG_FLOOR)
        if self.only is not None:
            out[:, self.only] = 0.0
            return out
        known = self.model.predict_log_proba(features)
        out[:] = known.min(axis=1, keepdims=True)
        out[:, self.model.classes_] = known
        return out


class LabelwiseView(EmbeddingView):
    """Multilabel: per label, does it apply? A class-balanced binary logistic regression per label;
    each label's text vector is a positive example of its own label and a negative of the others."""

    def fit(self, features: np.ndarray, y: np.ndarray, label_vectors: np.ndarray | None = None) -> "LabelwiseView":
        """``y``: (examples × labels) multi-hot."""
        if label_vectors is not None:
            features = np.vstack([features, label_vectors])
            y = np.vstack([y, np.eye(len(label_vectors), dtype=y.dtype)])
        # A label every training row agrees on gets the floor's log-odds instead of a fit.
        self.model = [
            self._fitted_classifier(features, column) if column.min() != column.max() else (-LOG_FLOOR if column[0] else LOG_FLOOR)
            for column in y.T
        ]
        return self

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(rows × labels) log-odds that each label applies."""
        return np.column_stack(
            [np.full(len(features), model) if isinstance(model, float) else model.decision_function(features) for model in self.model]
        )


# -- the stacker ----------------------------------------------------------------------------


@dataclass
class Stacker:
    """``log p(k) ∝ a·view(k) + b·llm(k) + c_k`` over the labels a row may take."""

    a: float = 1.0
    b: float = 1.0
    offsets: np.ndarray | None = None

    def logits(self, view: np.ndarray, llm: np.ndarray | None) -> np.ndarray:
        logits = self.a * view
        if llm is not None:
            logits = logits + self.b * llm
        return logits + self.offsets if self.offsets is not None else logits

    def proba(self, view: np.ndarray, llm: np.ndarray | None, allowed: np.ndarray) -> np.ndarray:
        return softmax(np.where(allowed, self.logits(view, llm), -np.inf))

    @classmethod
    def fit(cls, view: np.ndarray, llm: np.ndarray | None, allowed: np.ndarray, y: np.ndarray) -> "Stacker":
        """Class-balanced log loss of the label each row has (``y``: label indices)."""
        weights = balanced_weights(y)
        weights = weights / weights.sum()
        onehot = np.eye(view.shape[1])[y]

        def loss(raw_logits: np.ndarray) -> tuple[float, np.ndarray]:
            logits = np.where(allowed, raw_logits, -np.inf)
            top = logits.max(axis=1, keepdims=True)
            log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
            value = -(weights * (logits[np.arange(len(y)), y] - log_norm)).sum()
            return value, (np.exp(logits - log_norm[:, None]) - onehot) * weights[:, None]

        return cls._minimise(loss, view, llm)

    @classmethod
    def _minimise(cls, loss, view: np.ndarray, llm: np.ndarray | None) -> "Stacker":
        """The stacker minimising ``loss(logits) → (value, d value / d logits)`` plus the offsets' penalty."""
        from scipy.optimize import minimize

        labels = view.shape[1]
        uses_llm = llm is not None

        def penalised(theta: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad_logits = loss(cls(theta[0], theta[1], theta[2:]).logits(view, llm if uses_llm else None))
            grad = np.concatenate(
                [
                    [(grad_logits * view).sum()],
                    [(grad_logits * llm).sum() if uses_llm else 0.0],
                    grad_logits.sum(axis=0) + OFFSET_PENALTY * theta[2:],
                ]
            )
            return value + 0.5 * OFFSET_PENALTY * float(theta[2:] @ theta[2:]), grad

        start = np.concatenate([[1.0, 1.0 if uses_llm else 0.0], np.zeros(labels)])
        bounds = [(0.0, None), (0.0, None) if uses_llm else (0.0, 0.0)] + [(None, None)] * labels
        theta = minimize(penalised, start, jac=True, method="L-BFGS-B", bounds=bounds).x
        return cls(float(theta[0]), float(theta[1]), theta[2:])


class LabelwiseStacker(Stacker):
    """Multilabel: per label, ``P(applies) = sigmoid(a·view(k) + b·llm(k) + c_k)`` (view: log-odds;
    llm: log(K·p(k)), above 0 where the language model puts more than uniform on the label)."""

    def proba(self, view: np.ndarray, llm: np.ndarray | None, allowed: np.ndarray) -> np.ndarray:
        return np.where(allowed, sigmoid(self.logits(view, llm)), 0.0)

    @classmethod
    def fit(cls, view: np.ndarray, llm: np.ndarray | None, allowed: np.ndarray, y: np.ndarray) -> "LabelwiseStacker":
        """Binary log loss over every offered (example, label) pair (``y``: multi-hot), each label's
        applying and not applying pairs weighted alike, every label alike."""
        positives = (y * allowed).sum(axis=0)
        negatives = ((1 - y) * allowed).sum(axis=0)
        weights = allowed * np.where(y == 1, 1 / np.maximum(positives, 1), 1 / np.maximum(negatives, 1))
        weights = weights / weights.sum()

        def loss(logits: np.ndarray) -> tuple[float, np.ndarray]:
            # -log sigmoid(z) = logaddexp(0, -z); -log(1 - sigmoid(z)) = logaddexp(0, z)
            value = (weights * np.where(y == 1, np.logaddexp(0, -logits), np.logaddexp(0, logits))).sum()
            return value, weights * (sigmoid(logits) - y)

        return cls._minimise(loss, view, llm)


# -- correctness of the chosen label (confidence.method: learned) ----------------------------


def signals(combined: np.ndarray, view: np.ndarray, llm: np.ndarray | None) -> np.ndarray:
    """What says a row's chosen label is right: per row, the chosen label's probability, its
    margin over the runner-up, the distribution's certainty, and each view's probability of
    that label, whether it chose it too, and how sure it is of its own choice. ``view``/``llm``: their distributions."""
    order = np.argsort(-combined, axis=1)
    rows = np.arange(len(combined))
    chosen = order[:, 0]
    top = combined[rows, chosen]
    runner_up = combined[rows, order[:, 1]] if combined.shape[1] > 1 else np.zeros(len(combined))
    entropy = -(combined * log_probs(combined)).sum(axis=1) / math.log(max(combined.shape[1], 2))
    llm = combined if llm is None else llm

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    return np.column_stack(
        [
            logit(top),
            top - runner_up,
            1 - entropy,
            logit(view[rows, chosen]),
            view.argmax(axis=1) == chosen,
            logit(llm[rows, chosen]),
            llm.argmax(axis=1) == chosen,
            logit(llm.max(axis=1)),  # how sure the language model is of its own choice
            logit(view.max(axis=1)),
        ]
    ).astype(np.float64)


def set_signals(combined: np.ndarray, view: np.ndarray, llm: np.ndarray | None) -> np.ndarray:
    """Multilabel: what says a row's chosen label set is right: per row, the log-probability of
    that set (Π_k max(P_k, 1 − P_k)), its least sure label's margin |P_k − 0.5|, how many labels it
    holds, and whether each view would choose the same set and how sure the embedding view is
    of its own. ``combined``/``view``: P(applies) per label; ``llm``: its distribution."""
    chosen = combined > 0.5
    if llm is None:
        llm_chosen = chosen
    else:  # the task's rule for a distribution: above uniform over the offered labels
        llm_chosen = llm > 1 / np.maximum((llm > 0).sum(axis=1, keepdims=True), 1)

    def set_log_prob(p: np.ndarray) -> np.ndarray:
        return log_probs(np.maximum(p, 1 - p)).sum(axis=1)

    return np.column_stack(
        [
            set_log_prob(combined),
            np.abs(combined - 0.5).min(axis=1),
            chosen.sum(axis=1),
            ((view > 0.5) == chosen).all(axis=1),
            set_log_prob(view),
            (llm_chosen == chosen).all(axis=1),
        ]
    ).astype(np.float64)


class SingleLabel:
    """Classification and entity matching: one label per example (its index), one distribution per row."""

    independent = False
    view = EmbeddingView
    stacker = Stacker

    def example_labels(self, values: Sequence[Any], index: Mapping[str, int]) -> np.ndarray:
        """Each example's label index, -1 when its label is not one of the task's labels."""
        return np.array([index.get(normalise(str(value)), -1) for value in values], dtype=int)

    def known(self, y: np.ndarray) -> np.ndarray:
        return y >= 0

    def strata(self, y: np.ndarray) -> np.ndarray:
        return y

    def llm_feature(self, llm: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        return llm

    def view_probs(self, view: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        return softmax(np.where(allowed, view, -np.inf))

    def quality(self, y: np.ndarray, combined: np.ndarray) -> float:
        """Out-of-fold balanced accuracy: what decides whether the language model's scores stay in."""
        from sklearn.metrics import balanced_accuracy_score

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fold may predict a label no example has
            return balanced_accuracy_score(y, combined.argmax(axis=1))

    def correct(self, y: np.ndarray, combined: np.ndarray) -> np.ndarray:
        return combined.argmax(axis=1) == y

    def signals(self, combined: np.ndarray, view: np.ndarray, llm: np.ndarray | None) -> np.ndarray:
        return signals(combined, view, llm)


class LabelSets:
    """Multilabel classification: each example's labels as a multi-hot row, each label's
    P(applies) independent of the others; a row takes the labels above 0.5."""

    independent = True
    view = LabelwiseView
    stacker = LabelwiseStacker

    def __init__(self, label_set: Callable[[Any], set[str]]) -> None:
        """``label_set``: the task's reading of a label list (names outside the label set kept)."""
        self.label_set = label_set

    def example_labels(self, values: Sequence[Any], index: Mapping[str, int]) -> np.ndarray:
        """(examples × labels) multi-hot; a row of -1 when a label is not one of the task's labels."""
        y = np.zeros((len(values), len(index)), dtype=int)
        for row, value in zip(y, values):
            positions = [index.get(normalise(label), -1) for label in self.label_set(value)]
            if -1 in positions:
                row[:] = -1
            else:
                row[positions] = 1
        return y

    def known(self, y: np.ndarray) -> np.ndarray:
        return (y >= 0).all(axis=1)

    def strata(self, y: np.ndarray) -> np.ndarray:
        """Folds stratified by label set, as far as the sets' counts allow."""
        return np.unique(y, axis=0, return_inverse=True)[1].reshape(-1)

    def llm_feature(self, llm: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        # log(K·p): 0 at uniform, the task's own cut between a label applying and not.
        return llm + np.log(allowed.sum(axis=1, keepdims=True))

    def view_probs(self, view: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        return np.where(allowed, sigmoid(view), 0.0)

    def quality(self, y: np.ndarray, combined: np.ndarray) -> float:
        """Out-of-fold macro F1 over the labels (the task's metric that, like balanced accuracy, counts
        rare labels as much as common ones)."""
        from sklearn.metrics import f1_score

        return f1_score(y, combined > 0.5, average="macro", zero_division=0)

    def correct(self, y: np.ndarray, combined: np.ndarray) -> np.ndarray:
        return ((combined > 0.5) == (y == 1)).all(axis=1)

    def signals(self, combined: np.ndarray, view: np.ndarray, llm: np.ndarray | None) -> np.ndarray:
        return set_signals(combined, view, llm)


class CorrectnessModel:
    """P(the chosen label is right) from ``signals``: a logistic regression (not class-balanced:
    its output is a probability of being right, so it must keep the real share of right labels)."""

    def __init__(self) -> None:
        self.model = None
        self.constant: float | None = None

    def fit(self, features: np.ndarray, correct: np.ndarray) -> "CorrectnessModel":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if correct.min() == correct.max():  # all right or all wrong: nothing to tell apart
            self.constant = float(correct.mean())
            return self
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=CORRECTNESS_C, max_iter=500)).fit(features, correct)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.model is None:
            return np.full(len(features), self.constant)
        return self.model.predict_proba(features)[:, 1]


# -- the whole learned labeler ---------------------------------------------------------------


@dataclass
class Prediction:
    """One row's learned distribution over its candidate labels, and the views behind it."""

    probs: list[float]
    view: list[float]
    llm: list[float] | None
    #: P(the chosen label is right), from the correctness model (None before it is fitted).
    confidence: float | None
    #: True when the row is a labeled example and these numbers come from fits that never saw it.
    out_of_fold: bool = False
    #: True when ``probs`` are each label's P(applies) (multilabel, fitted) rather than one distribution.
    independent: bool = False

    def details(self, candidates: list[str]) -> dict[str, Any]:
        """What the row's details keep of the views (``label_probs`` is the combined distribution,
        or each label's P(applies))."""
        kept: dict[str, Any] = {"embedding_label_probs": dict(zip(candidates, self.view))}
        if self.llm is not None:
            kept["llm_label_probs"] = dict(zip(candidates, self.llm))
        if self.confidence is not None:
            kept["learned_confidence"] = self.confidence
        if self.out_of_fold:
            kept["out_of_fold"] = True
        return kept


@dataclass
class _Fitted:
    #: One view per fold: a new row gets their mean, the kind of view the stacker was fitted on
    #: (a refit on every example would be more confident than any out-of-fold view it saw).
    views: list[EmbeddingView]
    stacker: Stacker
    correctness: CorrectnessModel | None
    #: Whether the language model's label scores are part of the distribution (else only a signal of confidence).
    uses_llm: bool
    shape: SingleLabel | LabelSets


@dataclass
class LearnedLabeler:
    """Fits on the labeled examples (``fit``), then gives each row its distribution (``predict``)."""

    labels: list[str]
    descriptions: Mapping[str, str]
    features: RowFeatures
    input_columns: list[str]
    folds: int = 5
    #: One label per row, or label sets (``LabelSets``).
    shape: SingleLabel | LabelSets = field(default_factory=SingleLabel)
    _fitted: _Fitted | None = None
    _held_out: dict[str, Prediction] = field(default_factory=dict)

    @cached_property
    def prototypes(self) -> np.ndarray:
        """Each label's name and description, embedded (kept in the cache like the examples)."""
        texts = [label_text(label, self.descriptions.get(label)) for label in self.labels]
        return self.features.embedder.store.persistent(texts)
    #: Predictions made ahead of their rows (``predict_ahead``): row digest → (candidates, prediction).
    _ahead: OrderedDict[str, tuple[list[str], Prediction]] = field(default_factory=OrderedDict)

    @cached_property
    def index(self) -> dict[str, int]:
        return {normalise(label): i for i, label in enumerate(self.labels)}

    def example_labels(self, examples: Sequence[Mapping[str, Any]], label_column: str) -> np.ndarray:
        """Each example's label (see ``shape.example_labels``)."""
        return self.shape.example_labels([e.get(label_column, "") for e in examples], self.index)

    def known(self, y: np.ndarray) -> np.ndarray:
        """Which examples' labels are all among the task's labels."""
        return self.shape.known(y)

    def fit(self, examples: Sequence[Mapping[str, Any]], y: np.ndarray, llm: np.ndarray | None, allowed: np.ndarray) -> "LearnedLabeler":
        """``y``: ``example_labels``; ``llm``: (examples × labels) language-model log-probabilities
        (LOG_FLOOR where not offered) or None without a language model; ``allowed``: the labels
        each example's prompt offered. With no examples: zero-shot prototypes."""
        keep = self.known(y)
        examples = [e for e, k in zip(examples, keep) if k]
        y, allowed = y[keep], allowed[keep]
        llm = llm[keep] if llm is not None else None
        if len(examples) < min_examples(self.folds) or len(np.unique(y, axis=0)) < 2:
            # Too few to fit anything honestly: the labels' own texts as prototypes. (Pulling each
            # prototype towards its examples measured worse: 20/24 against 24/24 on the demo.)
            self._fitted = None
            return self
        features = self.features(examples, keep=True)
        # A label's text says nothing about how two records compare.
        label_vectors = None if self.features.pairs else self.prototypes
        # Hundreds of tiny fits: with two BLAS threads the waiting thread spun on shared cores
        # and the fit took 5-17 s on banking, against 0.2-0.3 s on one thread. (The embedding
        # model above keeps its threads: its vectors must not depend on where the fit ran.)
        with threadpool_limits(limits=1):
            return self._fit_on(examples, features, label_vectors, y, llm, allowed)

    def _fit_on(
        self,
        examples: Sequence[Mapping[str, Any]],
        features: np.ndarray,
        label_vectors: np.ndarray | None,
        y: np.ndarray,
        llm: np.ndarray | None,
        allowed: np.ndarray,
    ) -> "LearnedLabeler":
        shape = self.shape
        view_oof = np.zeros((len(y), len(self.labels)))
        held_sets = folds_for(shape.strata(y), self.folds)
        views = []
        for held in held_sets:
            train = np.setdiff1d(np.arange(len(y)), held)
            view = shape.view(len(self.labels), self.features.pairs).fit(features[train], y[train], label_vectors)
            view_oof[held] = view.scores(features[held])
            views.append(view)
        llm_scores = None if llm is None else shape.llm_feature(llm, allowed)

        def cross_fitted(scores: np.ndarray | None) -> np.ndarray:
            # Each fold's rows are combined by a stacker fitted on the other folds' out-of-fold
            # rows, so no row's own label shapes its distribution.
            combined = np.zeros_like(view_oof)
            for held in held_sets:
                train = np.setdiff1d(np.arange(len(y)), held)
                stacker = shape.stacker.fit(view_oof[train], None if scores is None else scores[train], allowed[train], y[train])
                combined[held] = stacker.proba(view_oof[held], None if scores is None else scores[held], allowed[held])
            return combined

        # The language model's scores stay in only where they help out of fold: a stacker fitted
        # for log loss kept SmolLM2's 77-intent scores at weight 0.6 while they cut held-out
        # banking accuracy from 0.60 to 0.48.
        with_llm = cross_fitted(llm_scores)
        combined_oof, uses_llm = with_llm, llm is not None
        if llm is not None:
            without = cross_fitted(None)
            if shape.quality(y, without) > shape.quality(y, with_llm):
                combined_oof, uses_llm = without, False
        stacker = shape.stacker.fit(view_oof, llm_scores if uses_llm else None, allowed, y)
        view_probs = shape.view_probs(view_oof, allowed)
        llm_probs = None if llm is None else softmax(np.where(allowed, llm, -np.inf))
        found = shape.signals(combined_oof, view_probs, llm_probs)
        correct = shape.correct(y, combined_oof).astype(int)
        confidence_oof = np.zeros(len(y))
        for held in held_sets:
            train = np.setdiff1d(np.arange(len(y)), held)
            confidence_oof[held] = CorrectnessModel().fit(found[train], correct[train]).predict(found[held])
        self._fitted = _Fitted(views, stacker, CorrectnessModel().fit(found, correct), uses_llm, shape)
        self._held_out = {}
        for i, example in enumerate(examples):
            mask = allowed[i]
            self._held_out[row_digest(example, self.input_columns)] = Prediction(
                probs=combined_oof[i][mask].tolist(),
                view=view_probs[i][mask].tolist(),
                llm=None if llm_probs is None else llm_probs[i][mask].tolist(),
                confidence=float(confidence_oof[i]),
                out_of_fold=True,
                independent=shape.independent,
            )
        return self

    @property
    def fitted(self) -> bool:
        return self._fitted is not None

    def _view_scores(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(rows × labels) embedding-view scores (``EmbeddingView.scores``), each fitted model called
        once for all rows; unfitted, the prototypes' log-probabilities."""
        if self._fitted is not None:
            features = self.features(rows)
            return np.mean([view.scores(features) for view in self._fitted.views], axis=0)
        if self.features.pairs:
            return np.zeros((len(rows), len(self.labels)))  # a label's text says nothing about how two records compare
        row_vectors = self.features.embedder.rows(rows)
        return log_probs(softmax((row_vectors @ self.prototypes.T) / PROTOTYPE_TEMPERATURE))

    def predict(self, row: Mapping[str, Any], candidates: list[str], llm_probs: list[float] | None) -> Prediction:
        """The row's distribution over ``candidates`` (a subset of the labels, in any order)."""
        ahead = self._ahead.pop(row_digest(row, self.input_columns), None)
        if ahead is not None and llm_probs is None and ahead[0] == candidates:
            return ahead[1]
        return self.predict_many([row], candidates, None if llm_probs is None else [llm_probs])[0]

    def predict_ahead(self, rows: Sequence[Mapping[str, Any]], candidates: list[str]) -> None:
        """Predict rows that get no language-model scores in one batch, before ``predict`` asks for
        each: per row, sklearn's calls cost far more than their arithmetic."""
        for row, prediction in zip(rows, self.predict_many(rows, candidates, None)):
            self._ahead[row_digest(row, self.input_columns)] = (list(candidates), prediction)
        while len(self._ahead) > AHEAD_MEMORY:  # rows never asked for (a resumed run skips done rows)
            self._ahead.popitem(last=False)

    def predict_many(self, rows: Sequence[Mapping[str, Any]], candidates: list[str], llm_probs: Sequence[list[float]] | None) -> list[Prediction]:
        """Each row's distribution over the same ``candidates``; ``llm_probs``: one list per row, or None."""
        index = self.index
        positions = [index[normalise(c)] for c in candidates]
        predictions: list[Prediction | None] = []
        for row in rows:
            held = self._held_out.get(row_digest(row, self.input_columns))
            predictions.append(held if held is not None and len(held.probs) == len(candidates) else None)
        new = [i for i, prediction in enumerate(predictions) if prediction is None]
        if not new:
            return predictions
        view = self._view_scores([rows[i] for i in new])[:, positions]
        llm = None if llm_probs is None else log_probs(np.asarray([llm_probs[i] for i in new], dtype=np.float64))
        allowed = np.ones_like(view, dtype=bool)
        # Unfitted, label sets too take the prototypes' distribution (the task keeps labels above 1/K).
        shape = self._fitted.shape if self._fitted is not None else SingleLabel()
        stacker = self._fitted.stacker if self._fitted is not None else Stacker()
        if self._fitted is not None and stacker.offsets is not None:
            stacker = type(stacker)(stacker.a, stacker.b, stacker.offsets[positions])
        combined_llm = None if llm is None else shape.llm_feature(llm, allowed)
        if self._fitted is not None and not self._fitted.uses_llm:
            combined_llm = None
        probs = stacker.proba(view, combined_llm, allowed)
        view_probs = shape.view_probs(view, allowed)
        llm_probs_array = None if llm is None else softmax(llm)
        confidences = [None] * len(new)
        if self._fitted is not None and self._fitted.correctness is not None:
            confidences = self._fitted.correctness.predict(shape.signals(probs, view_probs, llm_probs_array)).tolist()
        for j, i in enumerate(new):
            predictions[i] = Prediction(
                probs=probs[j].tolist(),
                view=view_probs[j].tolist(),
                llm=None if llm_probs_array is None else llm_probs_array[j].tolist(),
                confidence=confidences[j],
                independent=shape.independent,
            )
        return predictions
