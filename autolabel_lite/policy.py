"""Policy step: turn confidence scores into accept/reject decisions.

A label is accepted when its confidence is at least the threshold. The ``threshold``
block of the config picks how the threshold is chosen on labeled seed rows:

- ``fixed``: the configured value;
- ``target_accuracy``: the lowest threshold whose accepted seed labels reach the target
  accuracy with the stated statistical confidence. For each candidate threshold the
  one-sided Clopper–Pearson lower bound of the accepted rows' accuracy must reach the
  target; candidates are scanned from the strictest down and the scan stops at the first
  failure (fixed-sequence testing), so the guarantee holds across all thresholds tried.
  Candidates keep at least ``min_rows`` seed rows: fewer cannot prove the target even
  when every label is right. When no candidate passes, nothing is accepted;
- ``target_completion``: the highest threshold that keeps the target share of rows.

``calibrate`` first maps raw confidence to the probability of being correct (isotonic
regression or Platt scaling, fitted on the seed rows); the threshold then applies to
the calibrated value.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .cache import DEFAULT_CACHE
from .errors import ConfigError, DataError
from .files import replaced_when_done

if TYPE_CHECKING:
    from .cache import RowResult
    from .config import ThresholdConfig

# The threshold that accepts no row: no confidence reaches it.
ACCEPT_NOTHING = math.inf
CROSS_VALIDATION_FOLDS = 5


# -- statistics ------------------------------------------------------------------------


def clopper_pearson_lower(correct: int, rows: int, confidence_level: float) -> float:
    """One-sided Clopper–Pearson lower bound of a success rate: with probability
    ``confidence_level`` the true rate is at least this, after ``correct`` of ``rows``."""
    if rows <= 0 or correct <= 0:
        return 0.0
    from scipy.stats import beta  # scipy comes with scikit-learn

    return float(beta.ppf(1 - confidence_level, correct, rows - correct + 1))


def min_rows(target: float, confidence_level: float) -> int:
    """The fewest rows that can prove ``target`` accuracy: the smallest n whose bound for
    n correct out of n reaches it. That bound is (1 - confidence_level) ** (1 / n)."""
    n = max(1, math.ceil(math.log(1 - confidence_level) / math.log(target)))
    # Guard the closed form against floating-point rounding at the boundary.
    while clopper_pearson_lower(n, n, confidence_level) < target:
        n += 1
    while n > 1 and clopper_pearson_lower(n - 1, n - 1, confidence_level) >= target:
        n -= 1
    return n


# -- operating points ------------------------------------------------------------------


@dataclass(frozen=True)
class OperatingPoint:
    """What a threshold does to a set of rows: how many it accepts and how many of those are right.

    ``correct`` is None when the rows have no ground truth.
    """

    threshold: float
    accepted: int
    rows: int
    correct: int | None = None

    @property
    def completion(self) -> float:
        return self.accepted / self.rows if self.rows else 0.0

    @property
    def accuracy(self) -> float | None:
        if self.correct is None or not self.accepted:
            return None
        return self.correct / self.accepted

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "threshold": None if math.isinf(self.threshold) else self.threshold,
            "completion": self.completion,
            "accuracy": self.accuracy,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OperatingPoint":
        threshold = ACCEPT_NOTHING if data["threshold"] is None else data["threshold"]
        return cls(threshold, data["accepted"], data["rows"], data.get("correct"))


def operating_points(confidence: Sequence[float], correct: Sequence[bool] | None = None) -> list[OperatingPoint]:
    """One point per distinct confidence value, strictest first.

    Rows without a confidence (NaN: the row errored) are never accepted but count in
    ``rows``. Rows that tie are accepted together, so each point is reachable.
    """
    from .metrics import completion_curve

    values = np.asarray(confidence, dtype=float)
    scored = ~np.isnan(values)
    if not scored.any():
        return []
    right = np.zeros(values.size, dtype=bool) if correct is None else np.asarray(correct, dtype=bool)
    points = []
    for point in completion_curve(values[scored], right[scored]):
        # The curve gives rates over the scored rows; the Clopper–Pearson bound needs counts.
        accepted = int(round(point.completion_rate * scored.sum()))
        right_count = None if correct is None else int(round(point.accuracy * accepted))
        points.append(OperatingPoint(point.threshold, accepted, int(values.size), right_count))
    return points


def point_at(points: list[OperatingPoint], threshold: float, rows: int) -> OperatingPoint:
    """The operating point of any threshold, from the points of the distinct confidences."""
    reached = [p for p in points if p.threshold >= threshold]
    if not reached:
        return OperatingPoint(threshold, 0, rows, None if points and points[0].correct is None else 0)
    return OperatingPoint(threshold, reached[-1].accepted, rows, reached[-1].correct)


def completion_point(points: list[OperatingPoint], target: float) -> OperatingPoint | None:
    """The strictest point that keeps at least ``target`` of the rows (None if none does)."""
    return next((p for p in points if p.completion >= target - 1e-12), None)


# -- calibration -----------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """A monotone map from raw confidence to the probability that the label is correct.

    Stored as plain numbers so a tuned threshold can be saved as JSON and reapplied:
    ``isotonic`` keeps the fitted step points (linear between them, clipped outside),
    ``platt`` keeps the logistic slope and intercept.
    """

    method: str
    points_x: tuple[float, ...] = ()
    points_y: tuple[float, ...] = ()
    slope: float = 0.0
    intercept: float = 0.0

    def apply(self, confidence: Sequence[float] | float) -> np.ndarray:
        values = np.asarray(confidence, dtype=float)
        if self.method == "isotonic":
            mapped = np.interp(values, self.points_x, self.points_y)
        else:
            mapped = 1.0 / (1.0 + np.exp(-(self.slope * values + self.intercept)))
        return np.where(np.isnan(values), np.nan, mapped)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _fit_model(method: str, values: np.ndarray, correct: np.ndarray):
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(values, correct)
    from sklearn.linear_model import LogisticRegression

    # Platt's target smoothing (each row counts as right with probability t): without it a
    # seed set whose right and wrong labels separate cleanly would get an infinite slope.
    positives, negatives = int(correct.sum()), int((~correct).sum())
    target = np.where(correct, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    both = np.concatenate([values, values])[:, None]
    labels = np.concatenate([np.ones(values.size), np.zeros(values.size)])
    return LogisticRegression(C=np.inf).fit(both, labels, sample_weight=np.concatenate([target, 1 - target]))


def _as_calibration(method: str, model) -> Calibration:
    if method == "isotonic":
        return Calibration(method, tuple(map(float, model.X_thresholds_)), tuple(map(float, model.y_thresholds_)))
    return Calibration(method, slope=float(model.coef_[0, 0]), intercept=float(model.intercept_[0]))


def fit_calibration(method: str, confidence: Sequence[float], correct: Sequence[bool]) -> Calibration:
    """Fit ``isotonic`` or ``platt`` on the rows that have a confidence.

    Raises ValueError when the seed labels are all right or all wrong: there is then
    nothing to tell confidences apart by.
    """
    values, right = _scored(confidence, correct)
    if right.all() or not right.any():
        raise ValueError(f"calibration needs both right and wrong seed labels; all {right.size} are {'right' if right.all() else 'wrong'}")
    return _as_calibration(method, _fit_model(method, values, right))


def cross_validated_calibration(method: str, confidence: Sequence[float], correct: Sequence[bool]) -> np.ndarray | None:
    """Calibrated confidence of each row from a map fitted without that row's fold (NaN
    where the row has no confidence), for an honest after-calibration ECE. None when a
    class has fewer rows than two folds need."""
    from sklearn.model_selection import StratifiedKFold

    values = np.asarray(confidence, dtype=float)
    right = np.asarray(correct, dtype=bool)
    scored = np.flatnonzero(~np.isnan(values))
    folds = min(CROSS_VALIDATION_FOLDS, int(right[scored].sum()), int((~right[scored]).sum()))
    if folds < 2:
        return None
    out = np.full(values.size, np.nan)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    for train, test in splitter.split(scored, right[scored]):
        fitted = _as_calibration(method, _fit_model(method, values[scored[train]], right[scored[train]]))
        out[scored[test]] = fitted.apply(values[scored[test]])
    return out


def _scored(confidence: Sequence[float], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(confidence, dtype=float)
    keep = ~np.isnan(values)
    return values[keep], np.asarray(correct, dtype=bool)[keep]


# -- decisions -------------------------------------------------------------------------


@dataclass
class ThresholdDecision:
    """The chosen threshold, how it was chosen, and what it does on the rows it was chosen on."""

    policy: str
    threshold: float  # ACCEPT_NOTHING when no threshold meets the policy's target
    how: str
    point: OperatingPoint | None = None
    target: float | None = None  # the policy's target accuracy or completion
    lower_bound: float | None = None  # target_accuracy: Clopper–Pearson bound at the chosen point
    empirical: OperatingPoint | None = None  # target_accuracy: lowest threshold whose plain accuracy meets the target
    min_rows: int | None = None
    calibration: Calibration | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def accepts_nothing(self) -> bool:
        return math.isinf(self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "threshold": None if self.accepts_nothing else self.threshold,
            "accepts_nothing": self.accepts_nothing,
            "how": self.how,
            "target": self.target,
            "point": self.point.to_dict() if self.point else None,
            "lower_bound": self.lower_bound,
            "empirical": self.empirical.to_dict() if self.empirical else None,
            "min_rows": self.min_rows,
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ThresholdDecision":
        return cls(
            policy=data["policy"],
            threshold=ACCEPT_NOTHING if data["accepts_nothing"] else float(data["threshold"]),
            how=data["how"],
            target=data.get("target"),
            point=OperatingPoint.from_dict(data["point"]) if data.get("point") else None,
            lower_bound=data.get("lower_bound"),
            empirical=OperatingPoint.from_dict(data["empirical"]) if data.get("empirical") else None,
            min_rows=data.get("min_rows"),
            calibration=Calibration.from_dict(data["calibration"]) if data.get("calibration") else None,
            notes=list(data.get("notes", [])),
        )


def accepted_confidence(decision: ThresholdDecision | None, result: "RowResult") -> float | None:
    """A row's confidence as ``decision``'s threshold sees it: calibrated when the tuning calibrates."""
    calibration = decision.calibration if decision else None
    if result.confidence is None or calibration is None:
        return result.confidence
    return float(calibration.apply(result.confidence))


def accepts(decision: ThresholdDecision | None, result: "RowResult") -> bool:
    """Whether ``decision`` keeps a row's label (None: every label without an error)."""
    if result.error or not result.label:
        return False
    if decision is None:
        return True
    confidence = accepted_confidence(decision, result)
    return confidence is not None and confidence >= decision.threshold


def choose_fixed(value: float, points: list[OperatingPoint], rows: int) -> ThresholdDecision:
    return ThresholdDecision("fixed", value, f"fixed at {value:g} by the config", point_at(points, value, rows) if rows else None)


def choose_target_completion(target: float, points: list[OperatingPoint], rows: int) -> ThresholdDecision:
    chosen = completion_point(points, target)
    if chosen is not None:
        how = f"the strictest threshold that keeps at least {target:.0%} of the rows"
        return ThresholdDecision("target_completion", chosen.threshold, how, chosen, target=target)
    if not points:
        return ThresholdDecision(
            "target_completion", ACCEPT_NOTHING, "no row has a confidence: accepting nothing", point_at(points, ACCEPT_NOTHING, rows), target=target
        )
    # Rows without a confidence (errors) can never be accepted, so the target may be out of reach.
    loosest = points[-1]
    how = (
        f"keeps every row that has a confidence ({loosest.completion:.1%}); {target:.0%} is out of reach because "
        f"{rows - loosest.accepted} rows have none"
    )
    return ThresholdDecision("target_completion", loosest.threshold, how, loosest, target=target)


def choose_target_accuracy(target: float, confidence_level: float, points: list[OperatingPoint], rows: int) -> ThresholdDecision:
    needed = min_rows(target, confidence_level)
    goal = f"{target:.1%} accuracy with {confidence_level:.0%} confidence"
    candidates = [p for p in points if p.accepted >= needed]
    reached = [p for p in points if p.accuracy is not None and p.accuracy >= target]
    empirical = reached[-1] if reached else None
    common = {"empirical": empirical, "min_rows": needed, "target": target}
    if not candidates:
        scored = points[-1].accepted if points else 0
        return ThresholdDecision(
            "target_accuracy",
            ACCEPT_NOTHING,
            f"too few seed rows: proving {goal} needs at least {needed} rows with a confidence, there are {scored}; accepting nothing",
            point_at(points, ACCEPT_NOTHING, rows),
            **common,
        )
    chosen, bound = None, None
    for point in candidates:
        point_bound = clopper_pearson_lower(point.correct, point.accepted, confidence_level)
        if point_bound < target:
            break  # fixed-sequence testing: the first failure ends the scan
        chosen, bound = point, point_bound
    if chosen is None:
        strictest = candidates[0]
        first_bound = clopper_pearson_lower(strictest.correct, strictest.accepted, confidence_level)
        return ThresholdDecision(
            "target_accuracy",
            ACCEPT_NOTHING,
            f"no threshold reaches {goal} on these seed rows (the strictest candidate, {strictest.threshold:.4g}, "
            f"keeps {strictest.accepted} rows at {strictest.accuracy:.1%}: lower bound {first_bound:.3f}); accepting nothing",
            point_at(points, ACCEPT_NOTHING, rows),
            lower_bound=first_bound,
            **common,
        )
    return ThresholdDecision(
        "target_accuracy",
        chosen.threshold,
        f"the lowest threshold whose accepted seed labels reach {goal} (Clopper–Pearson lower bound {bound:.3f} "
        f"on {chosen.accepted} rows; fixed-sequence scan from the strictest of {len(candidates)} candidates)",
        chosen,
        lower_bound=bound,
        **common,
    )


def tune(config: "ThresholdConfig", confidence: Sequence[float], correct: Sequence[bool]) -> ThresholdDecision:
    """Choose the threshold the config's policy asks for on labeled seed rows.

    ``confidence`` has NaN for rows without one (they errored); ``correct`` says whether
    each row's label matches its ground truth.
    """
    values = np.asarray(confidence, dtype=float)
    calibration, notes = None, []
    if config.calibrate:
        try:
            calibration = fit_calibration(config.calibrate, values, correct)
            values = calibration.apply(values)
        except ValueError as exc:
            notes.append(f"{config.calibrate} calibration skipped: {exc}")
    points = operating_points(values, correct)
    if config.policy == "fixed":
        decision = choose_fixed(config.value, points, values.size)
    elif config.policy == "target_completion":
        decision = choose_target_completion(config.target, points, values.size)
    else:
        decision = choose_target_accuracy(config.target, config.confidence_level, points, values.size)
    decision.calibration = calibration
    decision.notes.extend(notes)
    return decision


def accepted_rows(decision: ThresholdDecision | None, confidence: np.ndarray) -> np.ndarray:
    """Which rows ``decision`` accepts, by their raw ``confidence`` (NaN: a row that cannot be accepted)."""
    values = np.asarray(confidence, dtype=float)
    if decision is None:
        return ~np.isnan(values)
    if decision.calibration is not None:
        values = decision.calibration.apply(values)
    with np.errstate(invalid="ignore"):
        return ~np.isnan(values) & (values >= decision.threshold)


def tune_cascade(config: "ThresholdConfig", confidence: Sequence[np.ndarray], correct: Sequence[np.ndarray]) -> list[ThresholdDecision]:
    """One threshold per stage of a cascade, from every stage's labels of the same seed rows
    (``confidence[k]``, ``correct[k]``: stage k's). Stage k is tuned on the seed rows that no
    earlier stage accepts, cheapest stage first, so the earliest stages keep all they can.

    ``target_accuracy`` splits the error budget evenly (Bonferroni): each of K stages runs the
    fixed-sequence Clopper–Pearson scan at confidence 1 - (1 - confidence_level) / K. Then with
    probability at least confidence_level every stage's accepted rows reach the target, and so
    does their union, the rows the cascade accepts.
    """
    stages = len(confidence)
    if stages > 1 and config.policy == "target_accuracy":
        config = config.model_copy(update={"confidence_level": 1 - (1 - config.confidence_level) / stages})
    reaching = np.ones(np.asarray(confidence[0]).size, dtype=bool)
    decisions = []
    for values, right in zip(confidence, correct):
        values, right = np.asarray(values, dtype=float), np.asarray(right, dtype=bool)
        decision = tune(config, values[reaching], right[reaching])
        decisions.append(decision)
        reaching &= ~accepted_rows(decision, values)
    return decisions


# -- the tuned threshold, saved for run() ----------------------------------------------


@dataclass
class SavedThreshold:
    """The thresholds tuned by ``plan`` on seed rows, one per stage of the cascade, as run() reads them back."""

    decisions: list[ThresholdDecision]
    seed: str
    seed_rows: int
    path: Path

    def save(self, tuning_key: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "tuning_key": tuning_key,
            "seed": self.seed,
            "seed_rows": self.seed_rows,
            "decisions": [decision.to_dict() for decision in self.decisions],
        }
        with replaced_when_done(self.path) as staging:  # a run reading it sees the old file or the new one
            staging.write_text(json.dumps(payload, indent=2, allow_nan=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path, tuning_key: str) -> "SavedThreshold | None":
        if not path.is_file():
            return None
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            if payload["tuning_key"] != tuning_key:
                return None
            # "decision": one stage's, as saved before cascades.
            decisions = payload["decisions"] if "decisions" in payload else [payload["decision"]]
            return cls([ThresholdDecision.from_dict(d) for d in decisions], payload["seed"], payload["seed_rows"], path)
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a saved threshold ({exc}); delete it and run `autolabel-lite plan` again") from None


def saved_threshold_path(cache_url: str, task_name: str, tuning_key: str) -> Path:
    """Tuned thresholds live in ``thresholds/`` next to the SQLite cache (for other
    databases, in the default cache directory), one file per task and labeling setup:
    a different prompt, model or policy needs its own tuning."""
    from sqlalchemy.engine import make_url

    url = make_url(cache_url)
    database = url.database if url.get_backend_name() == "sqlite" else None
    folder = Path(database).parent if database and database != ":memory:" else DEFAULT_CACHE.parent
    return folder / "thresholds" / f"{task_name}-{tuning_key[:16]}.json"


def check_applicable(config: "ThresholdConfig | None", saved: SavedThreshold | None) -> None:
    """Fail before labeling when the policy needs a threshold tuned on labeled seed rows and none is saved."""
    if saved is None and config is not None and (config.policy == "target_accuracy" or config.calibrate):
        raise ConfigError(
            f"threshold: policy {config.policy!r}{' with calibration' if config.calibrate else ''} needs a threshold tuned on "
            "labeled seed rows; run `autolabel-lite plan CONFIG DATA --seed SEED.csv` first (none is saved for this config and model)"
        )


def decision_for_run(
    config: "ThresholdConfig | None", saved: SavedThreshold | None, confidence: Callable[[], np.ndarray], stage: int = -1
) -> ThresholdDecision | None:
    """The threshold a run applies at cascade stage ``stage``: the saved tuning when there is
    one, else what the config alone determines. ``confidence`` gives the run's own confidences
    (NaN where a row cannot be accepted), used by ``target_completion`` when nothing was tuned
    (a one-stage policy: a cascade's earlier stages never call it, they route before labeling)."""
    if config is None:
        return None
    if saved is not None:
        decision = saved.decisions[stage]
        return replace(decision, how=f"tuned by plan on {saved.seed_rows} seed rows of {saved.seed} (saved in {saved.path}): {decision.how}")
    check_applicable(config, saved)
    if config.policy == "fixed":
        return choose_fixed(config.value, [], 0)
    values = confidence()
    decision = choose_target_completion(config.target, operating_points(values), values.size)
    decision.how = f"on this run's rows (no threshold tuned by plan): {decision.how}"
    return decision
