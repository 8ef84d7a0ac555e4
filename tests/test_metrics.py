"""AUROC, expected calibration error and the quality-vs-completion curve, on hand-computed cases."""

from __future__ import annotations

import math
import random

import pytest
from scipy.stats import mannwhitneyu

from autolabel_lite.metrics import (
    CompletionPoint,
    auroc,
    completion_curve,
    confidence_quality,
    expected_calibration_error,
    roc_points,
)


def test_auroc_is_the_share_of_correct_wrong_pairs_ranked_right():
    # Correct {0.9, 0.3} against wrong {0.8, 0.2}: 0.9>0.8, 0.9>0.2, 0.3<0.8, 0.3>0.2 -> 3 of 4.
    assert auroc([0.9, 0.8, 0.3, 0.2], [True, False, True, False]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [True, False]) == pytest.approx(0.5)  # a tie counts half
    assert auroc([0.1, 0.9], [True, False]) == 0.0


def test_auroc_agrees_with_the_mann_whitney_statistic():
    rng = random.Random(7)
    scores = [rng.random() for _ in range(300)]
    correct = [rng.random() < s for s in scores]
    positives = [s for s, c in zip(scores, correct) if c]
    negatives = [s for s, c in zip(scores, correct) if not c]
    u = mannwhitneyu(positives, negatives).statistic
    assert auroc(scores, correct) == pytest.approx(u / (len(positives) * len(negatives)))


def test_auroc_is_undefined_when_there_is_nothing_to_separate():
    assert math.isnan(auroc([0.2, 0.9], [True, True]))
    assert math.isnan(auroc([], []))


def test_roc_points_run_from_the_origin_to_the_corner():
    fpr, tpr = roc_points([0.9, 0.8, 0.3, 0.2], [True, False, True, False])
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)


def test_expected_calibration_error_over_ten_equal_width_bins():
    # Bin 9: two labels at 0.95, one right -> |0.5 - 0.95| * 2/4 = 0.225
    # Bin 1: 0.15, wrong -> 0.15 * 1/4 = 0.0375;  bin 5: 0.55, right -> 0.45 * 1/4 = 0.1125
    assert expected_calibration_error([0.95, 0.95, 0.15, 0.55], [True, False, False, True]) == pytest.approx(0.375)
    # 1.0 falls in the last bin, 0.0 in the first.
    assert expected_calibration_error([1.0, 0.0], [True, False]) == 0.0
    # Bins are equal-width: 0.61 and 0.69 share bin 6 (mean 0.65, accuracy 0.5).
    assert expected_calibration_error([0.61, 0.69], [True, False]) == pytest.approx(0.15)
    assert math.isnan(expected_calibration_error([], []))


def test_completion_curve_keeps_tied_confidences_together():
    curve = completion_curve([0.7, 0.9, 0.2, 0.7], [True, True, False, False])
    assert curve == [
        CompletionPoint(threshold=0.9, completion_rate=0.25, accuracy=1.0),
        CompletionPoint(threshold=0.7, completion_rate=0.75, accuracy=pytest.approx(2 / 3)),
        CompletionPoint(threshold=0.2, completion_rate=1.0, accuracy=0.5),
    ]
    assert completion_curve([], []) == []


def test_confidence_quality_for_a_run():
    assert confidence_quality([], []) == {}
    quality = confidence_quality([0.9, 0.8, 0.3, 0.2], [True, False, True, False])
    assert quality["auroc"] == pytest.approx(0.75)
    # One label per bin: |1 - 0.9| + |0 - 0.8| + |1 - 0.3| + |0 - 0.2| = 1.8, over 4 labels.
    assert quality["ece"] == pytest.approx(0.45)
    assert set(quality) == {"auroc", "ece"}


@pytest.mark.parametrize(
    "scores, correct, message",
    [([0.5, 1.2], [True, False], "confidences must lie in [0, 1]"), ([0.5], [True, False], "need one confidence per label")],
)
def test_bad_input_is_a_clear_error(scores, correct, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        auroc(scores, correct)
