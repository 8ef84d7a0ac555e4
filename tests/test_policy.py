"""Threshold policies on hand-built (confidence, correct) arrays with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import beta, binom

from autolabel_lite.config import ThresholdConfig
from autolabel_lite.policy import (
    ACCEPT_NOTHING,
    Calibration,
    ThresholdDecision,
    choose_fixed,
    choose_target_accuracy,
    choose_target_completion,
    clopper_pearson_lower,
    cross_validated_calibration,
    fit_calibration,
    min_rows,
    operating_points,
    tune,
)


def ranked(correct: list[bool]) -> tuple[np.ndarray, list[bool]]:
    """Distinct confidences, highest first, for rows given best-first."""
    return np.linspace(0.99, 0.01, len(correct)), correct


# -- Clopper–Pearson -------------------------------------------------------------------


@pytest.mark.parametrize("correct,rows", [(1, 1), (8, 10), (29, 29), (95, 100), (150, 200), (3, 40)])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_clopper_pearson_matches_beta_quantile_and_binomial_tail(correct, rows, level):
    bound = clopper_pearson_lower(correct, rows, level)
    assert bound == pytest.approx(beta.ppf(1 - level, correct, rows - correct + 1), abs=1e-12)
    # The defining property: if the true rate were the bound, seeing >= `correct` successes has probability 1 - level.
    assert binom.sf(correct - 1, rows, bound) == pytest.approx(1 - level, rel=1e-6)


def test_clopper_pearson_known_values():
    # 8/10: the two-sided 90% interval is (0.4931, 0.9632), so the one-sided 95% lower bound is 0.4931.
    assert clopper_pearson_lower(8, 10, 0.95) == pytest.approx(0.4931, abs=1e-4)
    # n of n: the bound is (1 - level) ** (1 / n).
    assert clopper_pearson_lower(29, 29, 0.95) == pytest.approx(0.05 ** (1 / 29))
    assert clopper_pearson_lower(0, 10, 0.95) == 0.0
    assert clopper_pearson_lower(0, 0, 0.95) == 0.0


@pytest.mark.parametrize("target,level,expected", [(0.90, 0.95, 29), (0.95, 0.95, 59), (0.99, 0.95, 299), (0.90, 0.99, 44), (0.5, 0.5, 1)])
def test_min_rows_is_the_smallest_n_that_can_prove_the_target(target, level, expected):
    n = min_rows(target, level)
    assert n == expected
    assert clopper_pearson_lower(n, n, level) >= target
    assert n == 1 or clopper_pearson_lower(n - 1, n - 1, level) < target


# -- operating points ------------------------------------------------------------------


def test_operating_points_accept_ties_together_and_never_accept_rows_without_confidence():
    confidence = [0.9, 0.5, 0.9, math.nan, 0.7, 0.5]
    correct = [True, False, False, False, True, True]
    points = operating_points(confidence, correct)
    assert [(p.threshold, p.accepted, p.correct, p.rows) for p in points] == [
        (0.9, 2, 1, 6),
        (0.7, 3, 2, 6),
        (0.5, 5, 3, 6),
    ]
    assert points[-1].completion == pytest.approx(5 / 6)
    assert points[0].accuracy == 0.5


# -- target_accuracy -------------------------------------------------------------------


def test_target_accuracy_picks_the_lowest_threshold_that_still_proves_the_target():
    confidence, correct = ranked([True] * 35 + [False] * 5)
    decision = choose_target_accuracy(0.90, 0.95, operating_points(confidence, correct), 40)
    # 35 of 35 right proves 90% (bound 0.918); 35 of 36 does not (bound 0.874).
    assert decision.threshold == confidence[34]
    assert (decision.point.accepted, decision.point.correct) == (35, 35)
    assert decision.lower_bound == pytest.approx(0.05 ** (1 / 35))
    assert decision.min_rows == 29
    # The plain empirical point goes further: 35 of 38 right is 92.1% (35 of 39 is 89.7%).
    assert decision.empirical.threshold == confidence[37]


def test_target_accuracy_stops_at_the_first_failure():
    # A wrong label at rank 30 fails the test there; lower thresholds would pass again
    # (99 of 100 right has bound 0.953) but the fixed sequence has already ended.
    correct = [True] * 29 + [False] + [True] * 70
    confidence, correct = ranked(correct)
    decision = choose_target_accuracy(0.90, 0.95, operating_points(confidence, correct), 100)
    assert decision.point.accepted == 29
    assert decision.threshold == confidence[28]
    assert clopper_pearson_lower(99, 100, 0.95) > 0.90  # the trap the scan must not fall into


def test_target_accuracy_with_ties_accepts_the_whole_tie():
    # 29 right rows, then two rows tied at 0.5 of which one is wrong: the tie cannot be split.
    confidence = list(np.linspace(0.99, 0.6, 29)) + [0.5, 0.5]
    correct = [True] * 29 + [True, False]
    points = operating_points(confidence, correct)
    assert [p.accepted for p in points][-2:] == [29, 31]
    decision = choose_target_accuracy(0.90, 0.95, points, 31)
    assert decision.threshold == pytest.approx(0.6)
    # All rows tied: one candidate, all or nothing.
    tied = choose_target_accuracy(0.90, 0.95, operating_points([0.7] * 40, [True] * 40), 40)
    assert (tied.threshold, tied.point.accepted) == (0.7, 40)


def test_target_accuracy_all_correct_accepts_everything():
    confidence, correct = ranked([True] * 50)
    decision = choose_target_accuracy(0.90, 0.95, operating_points(confidence, correct), 50)
    assert decision.threshold == confidence[-1]
    assert decision.point.completion == 1.0
    assert decision.lower_bound == pytest.approx(0.05 ** (1 / 50))


def test_target_accuracy_all_wrong_accepts_nothing():
    confidence, correct = ranked([False] * 50)
    decision = choose_target_accuracy(0.90, 0.95, operating_points(confidence, correct), 50)
    assert decision.accepts_nothing and decision.threshold == ACCEPT_NOTHING
    assert decision.point.accepted == 0
    assert "no threshold reaches 90.0% accuracy" in decision.how
    assert decision.empirical is None


def test_target_accuracy_too_few_rows_accepts_nothing_and_says_why():
    confidence, correct = ranked([True] * 28)
    decision = choose_target_accuracy(0.90, 0.95, operating_points(confidence, correct), 28)
    assert decision.accepts_nothing
    assert "needs at least 29 rows" in decision.how and "there are 28" in decision.how
    # The plain empirical point is still reported: 100% on every row.
    assert decision.empirical.accepted == 28


# -- target_completion and fixed -------------------------------------------------------


def test_target_completion_keeps_at_least_the_target_share():
    confidence, correct = ranked([True] * 10)
    decision = choose_target_completion(0.8, operating_points(confidence, correct), 10)
    assert decision.threshold == confidence[7] and decision.point.accepted == 8
    # A tie at the boundary keeps more rows rather than fewer than the target.
    tied = choose_target_completion(0.2, operating_points([0.9, 0.9, 0.9, 0.5, 0.4], None), 5)
    assert (tied.threshold, tied.point.accepted) == (0.9, 3)


def test_target_completion_out_of_reach_when_rows_have_no_confidence():
    confidence = [0.9, 0.8, math.nan, math.nan, 0.7]
    decision = choose_target_completion(0.8, operating_points(confidence, None), 5)
    assert decision.threshold == 0.7 and decision.point.accepted == 3
    assert "out of reach" in decision.how


def test_fixed_reports_the_seed_rows_it_keeps():
    confidence = [0.95, 0.85, 0.8, 0.3]
    decision = choose_fixed(0.8, operating_points(confidence, [True, True, False, False]), 4)
    assert (decision.threshold, decision.point.accepted, decision.point.correct) == (0.8, 3, 2)
    above_all = choose_fixed(0.99, operating_points(confidence, [True] * 4), 4)
    assert above_all.point.accepted == 0


def test_tune_dispatches_on_the_configured_policy():
    confidence, correct = ranked([True] * 35 + [False] * 5)
    accuracy = tune(ThresholdConfig(policy="target_accuracy", target=0.9), confidence, correct)
    completion = tune(ThresholdConfig(policy="target_completion", target=0.5), confidence, correct)
    fixed = tune(ThresholdConfig(policy="fixed", value=0.5), confidence, correct)
    assert accuracy.point.accepted == 35
    assert completion.point.accepted == 20
    assert fixed.threshold == 0.5


# -- calibration -----------------------------------------------------------------------


def noisy_seed(rows: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Overconfident scores: a row with confidence c is right with probability c ** 2."""
    generator = np.random.default_rng(7)
    confidence = generator.uniform(0.3, 1.0, rows)
    return confidence, generator.uniform(size=rows) < confidence**2


def test_isotonic_calibration_replays_scikit_learn_from_saved_numbers():
    from sklearn.isotonic import IsotonicRegression

    confidence, correct = noisy_seed()
    saved = Calibration.from_dict(json.loads(json.dumps(fit_calibration("isotonic", confidence, correct).to_dict())))
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(confidence, correct)
    grid = np.linspace(0, 1, 101)
    np.testing.assert_allclose(saved.apply(grid), reference.predict(grid), atol=1e-12)
    assert np.all(np.diff(saved.apply(grid)) >= 0)


def test_platt_calibration_matches_platts_method():
    from sklearn.calibration import _sigmoid_calibration  # Platt's algorithm with his target smoothing

    confidence, correct = noisy_seed()
    fitted = fit_calibration("platt", confidence, correct)
    a, b = _sigmoid_calibration(confidence, correct)
    assert (fitted.slope, fitted.intercept) == pytest.approx((-a, -b), rel=1e-3)
    # Cleanly separated seeds still give a finite map: Platt's smoothed targets, 1/4 for the
    # two wrong rows and 3/4 for the two right ones, not 0 and 1 (an unbounded slope).
    scores, right = [0.1, 0.2, 0.8, 0.9], [False, False, True, True]
    separated = fit_calibration("platt", scores, right)
    a, b = _sigmoid_calibration(np.array(scores), np.array(right))
    assert (separated.slope, separated.intercept) == pytest.approx((-a, -b), rel=1e-3)
    assert separated.apply(np.array([0.1, 0.5, 0.9])) == pytest.approx([0.225, 0.5, 0.775], abs=1e-3)


def test_calibration_needs_right_and_wrong_labels():
    with pytest.raises(ValueError, match="all 3 are right"):
        fit_calibration("isotonic", [0.2, 0.5, 0.9], [True, True, True])
    decision = tune(ThresholdConfig(policy="fixed", value=0.5, calibrate="platt"), [0.2, 0.5, 0.9], [False] * 3)
    assert decision.calibration is None
    assert "platt calibration skipped: calibration needs both right and wrong seed labels; all 3 are wrong" in decision.notes


def test_tune_with_calibration_thresholds_the_calibrated_values():
    confidence, correct = noisy_seed()
    decision = tune(ThresholdConfig(policy="target_completion", target=0.5, calibrate="isotonic"), confidence, correct)
    calibrated = decision.calibration.apply(confidence)
    assert decision.point.accepted == int((calibrated >= decision.threshold).sum())
    assert decision.point.accepted >= 100


def test_cross_validated_calibration_covers_every_scored_row():
    confidence, correct = noisy_seed()
    confidence[[3, 17]] = np.nan
    out = cross_validated_calibration("isotonic", confidence, correct)
    assert np.isnan(out[[3, 17]]).all() and not np.isnan(np.delete(out, [3, 17])).any()
    assert cross_validated_calibration("platt", [0.1, 0.5, 0.9], [True, False, True]) is None  # one wrong row: no 2 folds


def test_decision_round_trips_through_json_including_accept_nothing():
    confidence, correct = ranked([False] * 40)
    nothing = choose_target_accuracy(0.9, 0.95, operating_points(confidence, correct), 40)
    text = json.dumps(nothing.to_dict(), allow_nan=False)  # strict JSON: no Infinity
    back = ThresholdDecision.from_dict(json.loads(text))
    assert back.accepts_nothing and back.to_dict() == nothing.to_dict()
    confidence, correct = noisy_seed()
    tuned = tune(ThresholdConfig(policy="target_accuracy", target=0.8, calibrate="platt"), confidence, correct)
    assert ThresholdDecision.from_dict(json.loads(json.dumps(tuned.to_dict()))).to_dict() == tuned.to_dict()
