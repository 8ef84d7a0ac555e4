"""The HTML report of a plan or a run: one self-contained page to look at.

Everything the page shows about labeled rows is collected from a LabelingResult in one
streaming pass (``Evidence``): confidence, correctness against the ground-truth column
when the data has one, label counts, a confusion matrix for single-label tasks, and the
lowest-confidence rows. Figures are PNG data inside the page (matplotlib, the ``plot``
extra); nothing is loaded from anywhere, and a Content-Security-Policy says so to the
browser. Every value from the rows or the config goes through Jinja's autoescaping.
"""

from __future__ import annotations

import base64
import heapq
import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import figures
from .files import check_outputs, replaced_when_done
from .metrics import ReliabilityBins, reliability_bins
from .plan import cascade_marks, chosen_marks, target_accuracy
from .policy import OperatingPoint, ThresholdDecision, operating_points, point_at
from .prompt import templates_dir
from .tasks.classification import ClassificationTask, normalise

if TYPE_CHECKING:
    from .plan import Plan
    from .result import LabelingResult

TEMPLATE = "report.html.jinja"
WORST_ROWS = 20
ERROR_ROWS = 20
# Up to this many labels the confusion matrix is also a table; above, its largest cells are.
CONFUSION_TABLE_LABELS = 15
TOP_CONFUSIONS = 20
NO_LABEL = "(no label)"


@dataclass
class ShownRow:
    """One row as a table of the report shows it."""

    number: int  # 1-based, in file order
    inputs: dict[str, str]
    label: str
    gold: str | None
    correct: bool | None
    confidence: float | None
    accepted: bool
    error: str

    @classmethod
    def of(cls, index, row, outcome, columns, gold, correct, confidence, accepted) -> "ShownRow":
        inputs = {column: str(row.get(column, "")) for column in columns}
        return cls(index + 1, inputs, outcome.label, gold or None, correct, confidence, accepted, outcome.error)


@dataclass
class LabelStats:
    label: str
    given: int  # rows given this label
    accepted: int  # of those, accepted
    gold: int = 0  # rows whose ground truth is this label
    right: int = 0  # rows of that ground truth labeled right

    @property
    def recall(self) -> float | None:
        return self.right / self.gold if self.gold else None

    @property
    def precision(self) -> float | None:
        return self.right / self.given if self.given else None


@dataclass
class Stage:
    """One stage of the labeling pipeline: a run without a cascade has one; a cascade lists one per stage."""

    name: str
    model: str
    threshold: float | None
    rows: int  # rows that reached the stage
    accepted: int
    accepted_correct: int | None  # None without ground truth
    model_calls: int

    @property
    def accuracy(self) -> float | None:
        return self.accepted_correct / self.accepted if self.accepted_correct is not None and self.accepted else None


class _LabelTally:
    """Counts per label of a single-label task, and the confusion matrix."""

    def __init__(self, label_names: list[str]) -> None:
        self.label_names = list(label_names)
        self.by_norm = {normalise(label): label for label in label_names}
        self.given, self.given_accepted, self.gold, self.right = Counter(), Counter(), Counter(), Counter()
        self.confusion: Counter = Counter()

    def add(self, label: str, gold: str, correct: bool, accepted: bool) -> None:
        self.given[label] += 1
        self.given_accepted[label] += accepted
        if gold:
            truth = self.by_norm.get(normalise(gold), gold)  # ground truth is compared case-insensitively
            self.gold[truth] += 1
            self.right[truth] += correct
            self.confusion[truth, label] += 1

    def stats(self) -> list[LabelStats]:
        """Every configured label, then labels seen outside the set (unknown ground truth, no label)."""
        others = [name for name in {**self.given, **self.gold} if name not in self.label_names]
        return [
            LabelStats(name, self.given[name], self.given_accepted[name], self.gold[name], self.right[name])
            for name in self.label_names + others
        ]


@dataclass
class Evidence:
    """What the report shows about a set of labeled rows."""

    rows: int = 0
    labeled: int = 0
    errors: int = 0
    accepted: int = 0
    gold_column: str | None = None  # set when the data has the ground-truth column
    # Per row: the confidence the threshold sees (calibrated when the tuning calibrates), the
    # raw one (NaN where the row has no label, an error or no confidence), whether it has a
    # ground truth and whether its label is right.
    confidence: np.ndarray = field(default_factory=lambda: np.empty(0))
    raw: np.ndarray = field(default_factory=lambda: np.empty(0))
    has_gold: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    right: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    accepted_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    labels: list[LabelStats] | None = None  # single-label tasks only
    confusion: Counter = field(default_factory=Counter)  # (ground truth, label given) -> rows
    worst: list[ShownRow] = field(default_factory=list)  # lowest confidence first
    failed: list[ShownRow] = field(default_factory=list)  # the first rows with an error

    @property
    def gold_rows(self) -> int:
        return int(self.has_gold.sum())

    @property
    def scored(self) -> np.ndarray:
        return ~np.isnan(self.confidence)

    @classmethod
    def collect(cls, result: "LabelingResult") -> "Evidence":
        task = result.task
        gold_column = result.config.dataset.label_column
        evidence = cls(gold_column=gold_column if gold_column and gold_column in result.data.columns else None)
        tally = _LabelTally(result.config.prompt.label_names) if isinstance(task, ClassificationTask) else None
        confidence, raw, has_gold, right, accepted_rows = array("d"), array("d"), array("b"), array("b"), array("b")
        worst: list[tuple[float, int, ShownRow]] = []  # a heap of WORST_ROWS, the most confident on top
        for index, (row, outcome) in enumerate(result.rows()):
            evidence.rows += 1
            evidence.labeled += bool(outcome.label)
            evidence.errors += bool(outcome.error)
            accepted = result.is_accepted(outcome)
            evidence.accepted += accepted
            failed = bool(outcome.error) or not outcome.label or outcome.confidence is None
            value = math.nan if failed else result.confidence(outcome)
            gold = row[evidence.gold_column].strip() if evidence.gold_column else ""
            correct = (bool(outcome.label) and task.is_correct(outcome.label, gold)) if gold else None
            confidence.append(value)
            raw.append(math.nan if failed else outcome.confidence)
            has_gold.append(bool(gold))
            right.append(bool(correct))
            accepted_rows.append(accepted)
            if tally is not None:
                tally.add(outcome.label or NO_LABEL, gold, bool(correct), accepted)
            if outcome.error and len(evidence.failed) < ERROR_ROWS:
                evidence.failed.append(ShownRow.of(index, row, outcome, task.input_columns, gold, correct, None, accepted))
            if not failed and (len(worst) < WORST_ROWS or -worst[0][0] > value):
                shown = ShownRow.of(index, row, outcome, task.input_columns, gold, correct, value, accepted)
                (heapq.heappush if len(worst) < WORST_ROWS else heapq.heapreplace)(worst, (-value, -index, shown))
        evidence.confidence, evidence.raw = np.frombuffer(confidence), np.frombuffer(raw)
        evidence.has_gold, evidence.right = np.frombuffer(has_gold, dtype=bool), np.frombuffer(right, dtype=bool)
        evidence.accepted_rows = np.frombuffer(accepted_rows, dtype=bool)
        evidence.worst = [entry[2] for entry in sorted(worst, key=lambda e: (-e[0], -e[1]))]
        if tally is not None:
            evidence.labels, evidence.confusion = tally.stats(), tally.confusion
        return evidence

    # -- what the sections show ---------------------------------------------------

    def curve(self) -> list[OperatingPoint]:
        """Quality against completion on the rows with ground truth."""
        return operating_points(self.confidence[self.has_gold], self.right[self.has_gold])

    def groups(self) -> list[tuple[str, np.ndarray]]:
        """Confidences to histogram: right and wrong labels with ground truth, else all."""
        scored = self.scored
        if self.gold_rows:
            gold = scored & self.has_gold
            return [("right", self.confidence[gold & self.right]), ("wrong", self.confidence[gold & ~self.right])]
        return [("all labels", self.confidence[scored])]

    def reliability(self, calibrated: bool) -> ReliabilityBins:
        values = self.confidence if calibrated else self.raw
        keep = ~np.isnan(values) & self.has_gold
        return reliability_bins(values[keep], self.right[keep])

    def accuracy(self) -> float | None:
        return float(self.right[self.has_gold].mean()) if self.gold_rows else None

    def accepted_correct(self) -> int | None:
        return int((self.accepted_rows & self.has_gold & self.right).sum()) if self.gold_rows else None

    def accepted_accuracy(self) -> float | None:
        accepted = self.accepted_rows & self.has_gold
        return float(self.right[accepted].mean()) if accepted.any() else None

    def confusion_labels(self) -> tuple[list[str], list[str]]:
        """Ground-truth labels (rows) and labels given (columns), in label-set order."""
        order = [stats.label for stats in self.labels or []]
        gold = [label for label in order if any(truth == label for truth, _ in self.confusion)]
        given = [label for label in order if any(said == label for _, said in self.confusion)]
        return gold, given

    def confusion_matrix(self) -> tuple[list[str], list[str], np.ndarray]:
        gold, given = self.confusion_labels()
        counts = np.zeros((len(gold), len(given)), dtype=int)
        for (truth, said), count in self.confusion.items():
            counts[gold.index(truth), given.index(said)] = count
        return gold, given, counts

    def top_confusions(self) -> list[tuple[str, str, int]]:
        wrong = [(truth, said, count) for (truth, said), count in self.confusion.items() if truth != said]
        return sorted(wrong, key=lambda c: -c[2])[:TOP_CONFUSIONS]


# -- pages --------------------------------------------------------------------------


def write_run_report(result: "LabelingResult", path: Path) -> Path:
    check_outputs([result.data.path], {"report": path})
    evidence = Evidence.collect(result)
    decision = result.decision
    context = {"title": f"run of task {result.config.task_name!r}", "plan": None, **_labels_context(result, evidence, kind="run")}
    curve = context["curve"]
    marks = []
    if curve and result.threshold is not None and math.isfinite(result.threshold):
        marks.append((f"this run: threshold {result.threshold:.4g}", point_at(curve, result.threshold, evidence.gold_rows)))
    if decision is not None and decision.point is not None and decision.point.correct is not None and not decision.accepts_nothing:
        marks.append(("expected from plan's seed rows", decision.point))
    _add_completion(context, marks, f"label quality vs completion on {evidence.gold_rows} rows with ground truth")
    stats = result.stats
    context["facts"] = [
        ("data", str(result.data.path)),
        ("cache hits", stats.cache_hits),
        ("resumed rows", stats.resumed),
        ("model calls", stats.model_calls),
        ("time", f"{stats.seconds:.1f} s"),
    ]
    context["metrics"] = result.metrics
    return _write(path, context)


def write_plan_report(plan: "Plan", path: Path) -> Path:
    seed = plan.seed
    check_outputs([seed.labels.data.path] if seed else [], {"report": path})
    context: dict[str, Any] = {"title": f"plan for task {plan.task_name!r}", "plan": plan, "evidence": None, "decision": None}
    facts: list[tuple[str, Any]] = []
    if seed is not None:
        evidence = Evidence.collect(seed.labels)
        context.update(_labels_context(seed.labels, evidence, kind="plan"))
        decision = seed.decision
        marks = chosen_marks(decision)
        if decision is not None and decision.empirical is not None and decision.empirical.threshold != plan.threshold:
            marks.append((f"plain empirical point: threshold {decision.empirical.threshold:.4g} (no statistical margin)", decision.empirical))
        cascade = plan.cascade
        if cascade is not None and len(cascade.stages) > 1:  # the seed labels are the last stage's alone: show every stage's
            context["stages"] = [
                Stage(s.name, s.model, _threshold_of(s.decision), s.reached, s.accepted, s.correct, round(s.calls_per_row * s.reached)) for s in cascade.stages
            ]
        _add_completion(context, cascade_marks(cascade, marks), f"label quality vs completion on {seed.rows} seed rows")
        context["metrics"] = {"auroc": seed.auroc, "ece": seed.ece}
        if seed.ece_calibrated is not None:
            context["metrics"]["ece after calibration (cross-validated)"] = seed.ece_calibrated
        facts = [("seed rows", f"{seed.rows} labeled rows from {seed.source}"), ("seed rows without ground truth", seed.unlabeled)]
    context["facts"] = [
        ("model", f"{plan.provider} model {plan.model}, labels {plan.labeling_mode}d"),
        ("rows to label", plan.rows),
        ("prompt tokens", f"{plan.prompt_tokens:,} ({plan.tokens.prompt_per_row:.1f}/row, {plan.tokens.counted_with})"),
        ("output tokens", f"{plan.output_tokens:,} ({plan.tokens.output_basis})"),
        ("cost", "unknown (set model.pricing)" if plan.cost_usd is None else f"${plan.cost_usd:,.4f}"),
        *facts,
    ]
    return _write(path, context)


def _add_completion(context: dict[str, Any], marks: list[tuple[str, OperatingPoint]], title: str) -> None:
    """The quality-vs-completion figure (plan's plot) with the page's operating points."""
    context["marks"] = marks
    context["images"]["completion"] = _png(figures.completion_figure(context["curve"], marks, target_accuracy(context["decision"]), title))


def _threshold_of(decision: ThresholdDecision | None) -> float | None:
    return None if decision is None else decision.threshold


def _labels_context(result: "LabelingResult", evidence: Evidence, kind: str) -> dict[str, Any]:
    """What both pages show about labeled rows."""
    decision = result.decision
    calibration = decision.calibration if decision else None
    threshold = result.threshold
    curve = evidence.curve() if evidence.gold_rows else []
    reliability = [("raw confidence", evidence.reliability(calibrated=False))]
    if calibration is not None:
        fitted = " (fitted on these rows)" if kind == "plan" else ""
        reliability.append((f"after {calibration.method} calibration{fitted}", evidence.reliability(calibrated=True)))
    scale = f"confidence ({calibration.method}-calibrated, as the threshold sees it)" if calibration else "confidence"
    images = {
        "histogram": _png(figures.histogram_figure(evidence.groups(), threshold, scale)),
        "reliability": _png(figures.reliability_figure(reliability)) if evidence.gold_rows else None,
    }
    confusion = evidence.confusion_matrix() if evidence.labels is not None and evidence.gold_rows else None
    if confusion is not None:
        images["confusion"] = _png(figures.confusion_figure(*confusion))
    if result.cascade:
        stages = [
            Stage(stage.name, f"{stage.config.model.provider} {stage.provider.model_name}", _threshold_of(decision), *counts, result.stats.stage_calls.get(stage.name, 0))
            for stage, decision, counts in zip(result.stages, result.decisions, result.stage_counts())
        ]
    else:
        only = result.stages[0]
        model = f"{only.config.model.provider} {only.provider.model_name}"
        stages = [Stage("model", model, threshold, evidence.rows, evidence.accepted, evidence.accepted_correct(), result.stats.model_calls)]
    return {
        "evidence": evidence,
        "task_type": result.config.task_type.value,
        "decision": decision,
        "threshold": threshold,
        "scale": scale,
        "curve": curve,
        "reliability": reliability,
        "confusion": confusion,
        "confusion_table": confusion is not None and max(len(confusion[0]), len(confusion[1])) <= CONFUSION_TABLE_LABELS,
        "stages": stages,
        "images": images,
        "input_columns": result.task.input_columns,
        "gold_column": result.config.dataset.label_column,
        "compute_confidence": result.computes_confidence,
    }


def _png(figure) -> str | None:
    return None if figure is None else base64.b64encode(figures.png_bytes(figure)).decode("ascii")


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "accept nothing"
    return f"{value:.{digits}f}" if isinstance(value, float) else f"{value:,}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _threshold(value: float | None) -> str:
    if value is None:
        return "none (every labeled row is accepted)"
    return "accept nothing" if math.isinf(value) else f"{value:.4g}"


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(templates_dir()), autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(number=_number, percent=_percent, threshold=_threshold)
    return env


def _write(path: Path, context: dict[str, Any]) -> Path:
    context.setdefault("metrics", {})
    page = _environment().get_template(TEMPLATE).render(version=_version(), plot_missing=not figures.available(), **context)
    with replaced_when_done(path) as staging:
        staging.write_text(page, encoding="utf-8")
    return path.resolve()


def _version() -> str:
    from . import __version__

    return __version__
