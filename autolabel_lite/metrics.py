"""How well confidence scores separate correct labels from wrong ones.

- ``auroc``: area under the ROC curve of confidence against correctness (scikit-learn);
  0.5 is chance, 1.0 means every correct label outranks every wrong one.
- ``expected_calibration_error``: confidence against accuracy in 10 equal-width bins
  (``reliability_bins``, which the report's reliability diagram draws).
- ``completion_curve``: label quality against completion rate, one point per threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

ECE_BINS = 10


def _arrays(confidences: Sequence[float], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(confidences, dtype=float)
    truth = np.asarray(correct, dtype=bool)
    if scores.shape != truth.shape or scores.ndim != 1:
        raise ValueError(f"need one confidence per label: got {scores.shape} confidences and {truth.shape} labels")
    if scores.size and (scores.min() < 0 or scores.max() > 1 or np.isnan(scores).any()):
        raise ValueError("confidences must lie in [0, 1]")
    return scores, truth


def auroc(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """Area under the ROC curve; NaN when every label is correct or every label is wrong
    (nothing to separate)."""
    from sklearn.metrics import roc_auc_score

    scores, truth = _arrays(confidences, correct)
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, scores))


def roc_points(confidences: Sequence[float], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) of the ROC curve, for plots."""
    from sklearn.metrics import roc_curve

    scores, truth = _arrays(confidences, correct)
    fpr, tpr, _ = roc_curve(truth, scores)
    return fpr, tpr


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> float:
    """Σ over equal-width confidence bins of (bin share of labels) × |bin accuracy − bin mean confidence|.

    Bin i holds confidences in [i/bins, (i+1)/bins); the last bin also holds 1.0.
    NaN when there are no labels."""
    reliability = reliability_bins(confidences, correct, bins)
    if not reliability.labels:
        return float("nan")
    return float(np.abs(reliability.correct - reliability.confidence_sums).sum() / reliability.labels)


@dataclass(frozen=True)
class ReliabilityBins:
    """Per equal-width confidence bin: how many labels fall in it, how many of them are
    right, and the sum of their confidences (the reliability diagram and ECE read these)."""

    counts: np.ndarray
    correct: np.ndarray
    confidence_sums: np.ndarray

    @property
    def labels(self) -> int:
        return int(self.counts.sum())

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.counts.size + 1)

    @property
    def accuracy(self) -> np.ndarray:
        """Share of right labels per bin; NaN for an empty bin."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.correct / self.counts, np.nan)

    @property
    def mean_confidence(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.confidence_sums / self.counts, np.nan)


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> ReliabilityBins:
    """Labels binned by confidence: bin i holds [i/bins, (i+1)/bins), the last also 1.0."""
    scores, truth = _arrays(confidences, correct)
    index = np.minimum((scores * bins).astype(int), bins - 1)
    return ReliabilityBins(
        counts=np.bincount(index, minlength=bins),
        correct=np.bincount(index, weights=truth.astype(float), minlength=bins),
        confidence_sums=np.bincount(index, weights=scores, minlength=bins),
    )


@dataclass(frozen=True)
class CompletionPoint:
    """Keeping labels with confidence ≥ ``threshold`` keeps ``completion_rate`` of the rows
    at ``accuracy``."""

    threshold: float
    completion_rate: float
    accuracy: float


def completion_curve(confidences: Sequence[float], correct: Sequence[bool]) -> list[CompletionPoint]:
    """Label quality against completion rate: one point per distinct confidence, highest first."""
    scores, truth = _arrays(confidences, correct)
    if not scores.size:
        return []
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], np.cumsum(truth[order])
    # Rows tied at a threshold are kept together: take the last position of each distinct value.
    last = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    return [
        CompletionPoint(float(ranked[i]), (i + 1) / scores.size, float(hits[i]) / (i + 1))
        for i in last
    ]


def confidence_quality(confidences: Sequence[float], correct: Sequence[bool]) -> dict[str, float]:
    """AUROC and ECE of a run's confidences (rows that have one), for its metrics."""
    if not len(confidences):
        return {}
    return {"auroc": auroc(confidences, correct), "ece": expected_calibration_error(confidences, correct)}
