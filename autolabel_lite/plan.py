"""plan(): what a run will cost and, with labeled seed rows, which threshold to use.

A Plan shows the prompt of the first row exactly as the model gets it (a local model's
text with its chat template applied; for an API, the messages sent), counts rows and
tokens, prices them from ``model.pricing``, and — given seed rows with ground truth —
labels them with confidence, measures accuracy, AUROC and ECE, tabulates label quality
against completion rate, chooses the config's threshold and saves it for run().

In a cascade every stage labels the seed rows; the prompt, tokens and cost shown are the
last stage's, the seed report is the last stage's alone, and the cascade report gives each
stage's threshold (``policy.tune_cascade``) and what the cascade as a whole accepts and costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .errors import ConfigError
from .policy import (
    OperatingPoint,
    SavedThreshold,
    ThresholdDecision,
    accepted_rows,
    completion_point,
    cross_validated_calibration,
    operating_points,
    tune,
    tune_cascade,
)
from .prompt import Prompt

if TYPE_CHECKING:
    from .cache import Cache
    from .dataset import Dataset
    from .labeler import Labeler
    from .result import LabelingResult
    from .stage import Stage

# Prompt tokens are counted on this many rows and scaled to the whole dataset.
TOKEN_SAMPLE_ROWS = 200
CHARS_PER_TOKEN = 4
COMPLETION_STEPS = [step / 10 for step in range(1, 11)]  # the table's deciles


@dataclass
class TokenEstimate:
    """Tokens per row, and how they were counted."""

    rows_measured: int
    prompt_per_row: float
    output_per_row: float
    counted_with: str
    output_basis: str


@dataclass
class SeedReport:
    """How the labeler does on labeled seed rows, and the threshold the policy picks there."""

    source: str
    rows: int  # seed rows with a ground-truth label
    unlabeled: int  # seed rows skipped for having no ground truth
    errors: int
    with_confidence: int
    accuracy: float
    auroc: float | None
    ece: float | None
    ece_calibrated: float | None  # cross-validated, after the config's calibration
    curve: list[OperatingPoint]
    table: list[OperatingPoint]
    decision: ThresholdDecision | None
    saved: Path | None = None
    plot: Path | None = None
    # The labeled seed rows with the decision applied, for the HTML report.
    labels: "LabelingResult | None" = field(default=None, repr=False)


@dataclass
class StageReport:
    """What one stage of a cascade does to the seed rows: of the ``reached`` rows no earlier
    stage accepted, it accepts ``accepted`` (``correct`` of them right)."""

    name: str
    model: str  # provider and model name
    decision: ThresholdDecision
    reached: int
    accepted: int
    correct: int
    rows: int  # all seed rows
    calls_per_row: float  # labeling calls a row sent to this stage costs (0 for a local model)
    cost_per_row: float | None  # USD, estimated from tokens (None without model.pricing)

    @property
    def accepted_share(self) -> float:
        return self.accepted / self.rows if self.rows else 0.0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.accepted if self.accepted else None

    @property
    def calls_per_1k_rows(self) -> float:
        return 1000 * self.calls_per_row * self.reached / max(self.rows, 1)

    @property
    def cost_per_1k_rows(self) -> float | None:
        return None if self.cost_per_row is None else 1000 * self.cost_per_row * self.reached / max(self.rows, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "threshold": None if self.decision.accepts_nothing else self.decision.threshold,
            "accepted_share": self.accepted_share,
            "accuracy": self.accuracy,
            "reached_share": self.reached / max(self.rows, 1),
            "calls_per_1k_rows": self.calls_per_1k_rows,
            "cost_per_1k_rows": self.cost_per_1k_rows,
            "lower_bound": self.decision.lower_bound,
            "how": self.decision.how,
        }


@dataclass
class CascadeReport:
    """The stages' thresholds on the seed rows, and the last stage alone at the same target."""

    stages: list[StageReport]
    last_stage_alone: StageReport
    saved: Path | None = None

    @property
    def accepted(self) -> int:
        return sum(stage.accepted for stage in self.stages)

    @property
    def completion(self) -> float:
        return self.accepted / max(self.stages[0].rows, 1)

    @property
    def accuracy(self) -> float | None:
        return sum(stage.correct for stage in self.stages) / self.accepted if self.accepted else None

    @property
    def cost_per_1k_rows(self) -> float | None:
        costs = [stage.cost_per_1k_rows for stage in self.stages]
        return None if None in costs else sum(costs)

    @property
    def calls_per_1k_rows(self) -> float:
        return sum(stage.calls_per_1k_rows for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        alone = self.last_stage_alone
        return {
            "completion": self.completion,
            "accuracy": self.accuracy,
            "calls_per_1k_rows": self.calls_per_1k_rows,
            "cost_per_1k_rows": self.cost_per_1k_rows,
            "last_stage_alone": {
                "name": alone.name,
                "threshold": None if alone.decision.accepts_nothing else alone.decision.threshold,
                "completion": alone.accepted_share,
                "accuracy": alone.accuracy,
                "calls_per_1k_rows": alone.calls_per_1k_rows,
                "cost_per_1k_rows": alone.cost_per_1k_rows,
            },
            "saved": str(self.saved) if self.saved else None,
        }

    def lines(self) -> list[str]:
        alone = self.last_stage_alone
        lines = [
            f"cascade of {len(self.stages)} stages on the seed rows (each stage tuned on the rows the earlier ones pass on):",
            f"  {'stage':<12}  {'threshold':>10}  {'reaches':>8}  {'accepts':>8}  {'accuracy':>8}  {'calls/1k':>8}  {'cost/1k rows':>12}",
        ]
        for stage in self.stages:
            lines.append(_stage_line(stage.name, stage, stage.reached / max(stage.rows, 1)))
        lines.append(_stage_line("cascade", self, 1.0))
        lines.append(_stage_line(f"{alone.name} alone", alone, 1.0))
        for stage in self.stages:
            lines.append(f"  {stage.name}: {stage.decision.how}")
        if self.saved:
            lines.append(f"saved for run: {self.saved}")
        return lines


def _stage_line(name: str, report: "StageReport | CascadeReport", reached: float) -> str:
    threshold = getattr(report, "decision", None)
    value = "" if threshold is None else "none" if threshold.accepts_nothing else f"{threshold.threshold:.4g}"
    share = report.accepted_share if isinstance(report, StageReport) else report.completion
    cost = report.cost_per_1k_rows
    return (
        f"  {name:<12}  {value:>10}  {reached:>8.1%}  {share:>8.1%}  {_number(report.accuracy):>8}  "
        f"{report.calls_per_1k_rows:>8.0f}  {'unknown' if cost is None else f'${cost:,.4f}':>12}"
    )


@dataclass
class Plan:
    task_name: str
    provider: str
    model: str
    labeling_mode: str
    prompt: Prompt
    #: The text a local model reads (chat template applied); None when a server applies its own template.
    model_text: str | None
    rows: int
    tokens: TokenEstimate
    cost_usd: float | None
    seed: SeedReport | None = None
    # With seed rows and a threshold block: each stage's threshold (one stage without ``cascade``).
    cascade: CascadeReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return round(self.tokens.prompt_per_row * self.rows)

    @property
    def output_tokens(self) -> int:
        return round(self.tokens.output_per_row * self.rows)

    @property
    def threshold(self) -> float | None:
        """The recommended threshold (inf: accept nothing), or None without seed rows and a policy."""
        return self.seed.decision.threshold if self.seed and self.seed.decision else None

    @property
    def first_prompt(self) -> tuple[str, str]:
        """What the first row's prompt is, and its text: as a local model reads it, else the messages sent."""
        if self.model_text is not None:
            return "prompt for the first row, as the model reads it (its chat template applied)", self.model_text
        return "prompt for the first row, the messages as sent (the server applies its chat template)", _prompt_text(self.prompt)

    def to_dict(self) -> dict[str, Any]:
        seed = self.seed
        return {
            "task_name": self.task_name,
            "provider": self.provider,
            "model": self.model,
            "labeling_mode": self.labeling_mode,
            "prompt": {"system": self.prompt.system, "user": self.prompt.user, "model_text": self.model_text},
            "rows": self.rows,
            "tokens": {**vars(self.tokens), "prompt_total": self.prompt_tokens, "output_total": self.output_tokens},
            "cost_usd": self.cost_usd,
            "seed": None
            if seed is None
            else {
                "source": seed.source,
                "rows": seed.rows,
                "unlabeled": seed.unlabeled,
                "errors": seed.errors,
                "with_confidence": seed.with_confidence,
                "accuracy": seed.accuracy,
                "auroc": seed.auroc,
                "ece": seed.ece,
                "ece_calibrated": seed.ece_calibrated,
                "table": [p.to_dict() for p in seed.table],
                "curve": [p.to_dict() for p in seed.curve],
                "recommendation": seed.decision.to_dict() if seed.decision else None,
                "saved": str(seed.saved) if seed.saved else None,
                "plot": str(seed.plot) if seed.plot else None,
            },
            "stages": None if self.cascade is None else [stage.to_dict() for stage in self.cascade.stages],
            "cascade": None if self.cascade is None else self.cascade.to_dict(),
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        t = self.tokens
        cost = "unknown (set model.pricing)" if self.cost_usd is None else f"${self.cost_usd:,.4f}"
        lines = [
            f"plan for task {self.task_name!r}: {self.provider} model {self.model}, labels {self.labeling_mode}d",
            f"rows: {self.rows:,}",
            f"{self.first_prompt[0]}:",
            *(f"  | {line}" for line in self.first_prompt[1].splitlines()),
            f"tokens ({t.counted_with}, measured on {t.rows_measured} rows): prompt {self.prompt_tokens:,} "
            f"({t.prompt_per_row:.1f}/row), output {self.output_tokens:,} ({t.output_basis})",
            f"cost: {cost}",
        ]
        if self.seed and self.cascade and len(self.cascade.stages) > 1:
            lines += ["", f"the last stage, {self.cascade.last_stage_alone.name}, alone:", *_seed_lines(self.seed)]
            lines += ["", *self.cascade.lines()]
        elif self.seed:
            lines += ["", *_seed_lines(self.seed)]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def write_report(self, path: str | os.PathLike) -> Path:
        """Write the plan as one self-contained HTML page (figures need the ``plot`` extra)."""
        from .report import write_plan_report

        return write_plan_report(self, Path(path))


def _prompt_text(prompt: Prompt) -> str:
    return f"[system]\n{prompt.system}\n[user]\n{prompt.user}" if prompt.system else prompt.user


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _seed_lines(seed: SeedReport) -> list[str]:
    decision = seed.decision
    lines = [
        f"seed: {seed.rows} labeled rows from {seed.source}"
        + (f" ({seed.unlabeled} rows without ground truth skipped)" if seed.unlabeled else "")
        + f"; {seed.errors} errors, {seed.with_confidence} with a confidence",
        f"accuracy {seed.accuracy:.3f}  AUROC {_number(seed.auroc)}  ECE {_number(seed.ece)}"
        + (
            f"  ECE after {decision.calibration.method} calibration {_number(seed.ece_calibrated)} (cross-validated)"
            if decision and decision.calibration
            else ""
        ),
    ]
    if seed.table:
        if decision and decision.calibration:
            lines.append(f"  thresholds apply to {decision.calibration.method}-calibrated confidence")
        lines.append(f"  {'threshold':>10}  {'completion':>10}  {'accepted':>8}  {'accuracy':>8}")
        chosen = decision.point if decision else None
        for point in seed.table:
            mark = "  <- chosen" if chosen is not None and point.threshold == chosen.threshold else ""
            lines.append(
                f"  {point.threshold:>10.4g}  {point.completion:>10.1%}  {point.accepted:>8}  {_number(point.accuracy):>8}{mark}"
            )
    if decision is None:
        lines.append("recommended threshold: none (the config has no threshold block)")
        return lines
    value = "accept nothing" if decision.accepts_nothing else f"{decision.threshold:.4g}"
    lines.append(f"recommended threshold: {value} ({decision.policy}: {decision.how})")
    if decision.point is not None and not decision.accepts_nothing:
        lines.append(
            f"  on the seed rows it accepts {decision.point.accepted} of {decision.point.rows} "
            f"({decision.point.completion:.1%}) at accuracy {_number(decision.point.accuracy)}"
        )
    if decision.empirical is not None:
        e = decision.empirical
        lines.append(
            f"  plain empirical point (no statistical margin): threshold {e.threshold:.4g} keeps {e.completion:.1%} at accuracy {e.accuracy:.3f}"
        )
    lines += [f"  note: {note}" for note in decision.notes]
    if seed.saved:
        lines.append(f"saved for run: {seed.saved}")
    if seed.plot:
        lines.append(f"plot: {seed.plot}")
    return lines


# -- building a plan -------------------------------------------------------------------


def build_plan(
    stages: "list[Stage]",
    data: "Dataset",
    seed: "Dataset | int | None",
    max_rows: int | None,
    plot: Path,
    label_seed: "Callable[[Stage, Dataset, int | None], LabelingResult]",
    cache: "Cache",
    saving: tuple[Path, str],
) -> Plan:
    """The plan of a run through ``stages`` on ``data``: the last stage's prompt, tokens and cost
    and, with ``seed`` rows (a Dataset, or N for the first N rows of ``data``) labeled by each stage
    through ``label_seed``, every stage's threshold, saved at ``saving`` (path, tuning key)."""
    last = stages[-1]
    rows = sum(1 for _ in data.rows(max_rows))
    provider = last.provider
    labeler = _planning_labeler(last, cache)
    first_row = next(data.rows(1))
    tokens = _estimate_tokens(last, labeler, data.rows(min(TOKEN_SAMPLE_ROWS, rows)), first_row)
    prompt = _prompt(last, labeler, first_row)
    plan = Plan(
        task_name=last.config.task_name,
        provider=last.config.model.provider,
        model=provider.model_name,
        labeling_mode=labeler.mode,
        prompt=prompt,
        model_text=provider.model_text(prompt),
        rows=rows,
        tokens=tokens,
        cost_usd=None,
    )
    plan.cost_usd = _cost(last, tokens, rows)
    if plan.cost_usd is None:
        plan.notes.append("no cost estimate: set model.pricing (USD per million input and output tokens)")
    if last.config.model.compute_confidence:
        plan.notes.append("token counts leave out the confidence step's own model calls")
    if seed is not None:
        sample = list(data.rows(min(TOKEN_SAMPLE_ROWS, rows)))
        plan.seed, plan.cascade = _evaluate_seed(stages, data, seed, plot, label_seed, [cost_per_row(stage, cache, sample) for stage in stages], saving)
    return plan


def _planning_labeler(stage: "Stage", cache: "Cache") -> "Labeler":
    """The stage's labeler as plan uses it: to render prompts, never to call the model."""
    from .labeler import Labeler

    return Labeler(stage.task, stage.provider, stage.prompt_builder, stage.selector, cache)


def _prompt(stage: "Stage", labeler: "Labeler", row: dict[str, str]) -> Prompt:
    """The prompt a row gets, with the labels it is offered when the config selects labels per row."""
    return labeler.prompt_for(row, stage.selector.labels_for(row))


def _estimate_tokens(stage: "Stage", labeler: "Labeler", sample, first_row) -> TokenEstimate:
    provider, task, config = stage.provider, stage.task, stage.config
    counted_with = f"{provider.model_name} tokenizer"
    if provider.count_tokens("probe") is None:
        counted_with = f"heuristic of {CHARS_PER_TOKEN} characters per token, no local tokenizer for this model"

    def count(text: str) -> int:
        counted = provider.count_tokens(text)
        return counted if counted is not None else math.ceil(len(text) / CHARS_PER_TOKEN)

    prompts = [_prompt(stage, labeler, row) for row in sample]
    prompt_counts = [count(provider.model_text(prompt) or prompt.text) for prompt in prompts]
    prompt_per_row = sum(prompt_counts) / len(prompt_counts)
    candidates = task.candidates(first_row) if labeler.mode == "score" else None
    if candidates:
        output_basis = "labels are scored, not generated"
        if not provider.is_local:
            # API scoring sends the prompt once per candidate label (completions with echo).
            prompt_per_row = prompt_per_row * len(candidates) + sum(count(c) for c in candidates)
        return TokenEstimate(len(prompt_counts), prompt_per_row, 0.0, counted_with, output_basis)
    label_column = config.dataset.label_column or "label"
    answers = task.candidates(first_row) or [task.example_label(e.get(label_column)) for e in stage.examples]
    answers = [a for a in answers if a]
    if answers and not config.prompt.chain_of_thought:
        output_per_row = sum(count(a) for a in answers) / len(answers) + 1  # +1: the end-of-answer token
        output_basis = f"mean length of {len(answers)} known answers"
    else:  # free answers, or reasoning before the answer: only the cap is known
        output_per_row = float(config.prompt.max_output_tokens)
        output_basis = "prompt.max_output_tokens, an upper bound"
    return TokenEstimate(len(prompt_counts), prompt_per_row, output_per_row, counted_with, output_basis)


def _cost(stage: "Stage", tokens: TokenEstimate, rows: int) -> float | None:
    """USD to label ``rows`` rows with ``stage`` (zero for a local model; None without ``model.pricing``)."""
    if stage.provider.is_local:
        return 0.0
    pricing = stage.config.model.pricing
    if pricing is None:
        return None
    prompt_tokens, output_tokens = round(tokens.prompt_per_row * rows), round(tokens.output_per_row * rows)
    return (prompt_tokens * pricing.input_per_million + output_tokens * pricing.output_per_million) / 1e6


def cost_per_row(stage: "Stage", cache: "Cache", sample: list[dict[str, str]]) -> float | None:
    """Estimated USD per row sent to ``stage``, from the tokens of ``sample``'s prompts."""
    if stage.provider.is_local or stage.config.model.pricing is None:
        return _cost(stage, TokenEstimate(0, 0.0, 0.0, "", ""), 0)
    tokens = _estimate_tokens(stage, _planning_labeler(stage, cache), sample, sample[0])
    pricing = stage.config.model.pricing
    return (tokens.prompt_per_row * pricing.input_per_million + tokens.output_per_row * pricing.output_per_million) / 1e6


@dataclass
class SeedOutcomes:
    """One stage's labels of the seed rows: confidence (NaN where a label cannot be accepted) and correctness."""

    result: "LabelingResult"
    confidence: np.ndarray
    correct: np.ndarray
    unlabeled: int
    errors: int


def _seed_outcomes(result: "LabelingResult", gold_column: str) -> SeedOutcomes:
    confidence, correct, unlabeled, errors = [], [], 0, 0
    for row, outcome in result.rows():
        gold = row[gold_column]
        if not gold.strip():
            unlabeled += 1
            continue
        failed = bool(outcome.error) or not outcome.label
        errors += bool(outcome.error)
        confidence.append(math.nan if failed or outcome.confidence is None else outcome.confidence)
        correct.append(bool(outcome.label) and result.task.is_correct(outcome.label, gold))
    return SeedOutcomes(result, np.asarray(confidence, dtype=float), np.asarray(correct, dtype=bool), unlabeled, errors)


def _evaluate_seed(
    stages: "list[Stage]",
    dataset: "Dataset",
    seed: "Dataset | int",
    plot: Path,
    label_seed: "Callable[[Stage, Dataset, int | None], LabelingResult]",
    costs: list[float | None],
    saving: tuple[Path, str],
) -> tuple[SeedReport, CascadeReport | None]:
    """The last stage's report on the seed rows (alone) and, with a threshold block, the cascade's:
    every stage labels every seed row (its calls cached like any), thresholds are tuned and saved."""
    config = stages[-1].config
    gold_column = config.dataset.label_column
    if not gold_column:
        raise ConfigError("dataset.label_column: needed to evaluate seed rows (the column with the ground-truth label)")
    seed_data = dataset if isinstance(seed, int) else seed
    seed_rows = seed if isinstance(seed, int) else None
    source = f"the first {seed} rows of {dataset.name}" if isinstance(seed, int) else seed_data.name
    seed_data.require_columns([gold_column], what="ground-truth")  # before any labeling
    outcomes = [_seed_outcomes(label_seed(stage, seed_data, seed_rows), gold_column) for stage in stages]
    last = outcomes[-1]
    values, right = last.confidence, last.correct
    if not right.size:
        raise ConfigError(f"dataset.label_column: no seed row of {source} has a value in {gold_column!r}")
    scored = ~np.isnan(values)
    decision = tune(config.threshold, values, right) if config.threshold else None
    ece_calibrated = None
    if decision and decision.calibration:
        after = cross_validated_calibration(decision.calibration.method, values, right)
        ece_calibrated = _ece(after, right) if after is not None else None
        values = decision.calibration.apply(values)
    curve = operating_points(values, right)
    report = SeedReport(
        source=source,
        rows=int(right.size),
        unlabeled=last.unlabeled,
        errors=last.errors,
        with_confidence=int(scored.sum()),
        accuracy=float(right.mean()),
        auroc=_auroc(last.confidence, right),
        ece=_ece(last.confidence, right),
        ece_calibrated=ece_calibrated,
        curve=curve,
        table=_table(curve, decision),
        decision=decision,
        labels=last.result,
    )
    last.result.apply_thresholds([decision])
    cascade = None
    if config.threshold:
        decisions = tune_cascade(config.threshold, [o.confidence for o in outcomes], [o.correct for o in outcomes])
        saved = SavedThreshold(decisions, source, report.rows, saving[0])
        saved.save(saving[1])
        cascade = _cascade_report(stages, outcomes, decisions, costs, decision)
        if len(stages) == 1:
            report.saved = saved.path
        else:
            cascade.saved = saved.path
    report.plot = _plot(report, plot, cascade)
    return report, cascade


def _cascade_report(
    stages: "list[Stage]", outcomes: list[SeedOutcomes], decisions: list[ThresholdDecision], costs: list[float | None], alone: ThresholdDecision
) -> CascadeReport:
    """What each stage accepts of the seed rows that reach it, and what the last stage does alone."""
    rows = outcomes[0].correct.size
    reaching = np.ones(rows, dtype=bool)
    reports = []
    for stage, outcome, decision, cost in zip(stages, outcomes, decisions, costs):
        kept = reaching & accepted_rows(decision, outcome.confidence)
        calls = 0.0 if stage.provider.is_local else 1.0
        model = f"{stage.config.model.provider} {stage.provider.model_name}"
        reports.append(StageReport(stage.name, model, decision, int(reaching.sum()), int(kept.sum()), int(outcome.correct[kept].sum()), rows, calls, cost))
        reaching &= ~kept
    last = outcomes[-1]
    kept = accepted_rows(alone, last.confidence)
    alone_report = StageReport(
        stages[-1].name, reports[-1].model, alone, rows, int(kept.sum()), int(last.correct[kept].sum()), rows, reports[-1].calls_per_row, costs[-1]
    )
    return CascadeReport(reports, alone_report)


def _auroc(values: np.ndarray, right: np.ndarray) -> float | None:
    from .metrics import auroc

    scored = ~np.isnan(values)
    return _defined(auroc(values[scored], right[scored])) if scored.any() else None


def _ece(values: np.ndarray, right: np.ndarray) -> float | None:
    from .metrics import expected_calibration_error

    scored = ~np.isnan(values)
    return _defined(expected_calibration_error(values[scored], right[scored]))


def _defined(value: float) -> float | None:
    """The metrics say "undefined" with NaN (e.g. AUROC when every label is right); JSON says it with null."""
    return None if math.isnan(value) else value


def _table(curve: list[OperatingPoint], decision: ThresholdDecision | None) -> list[OperatingPoint]:
    """Deciles of completion, plus the chosen point, strictest first."""
    points = {p.threshold: p for p in (completion_point(curve, step) for step in COMPLETION_STEPS) if p is not None}
    if decision is not None and decision.point is not None and not decision.accepts_nothing:
        points[decision.point.threshold] = decision.point
    return sorted(points.values(), key=lambda p: -p.threshold)


def _plot(report: SeedReport, path: Path, cascade: CascadeReport | None) -> Path | None:
    """Label quality against completion rate (the last stage's), chosen point marked and, for a
    cascade, the point the cascade reaches after each stage; None without matplotlib or points."""
    from . import figures

    marks = cascade_marks(cascade, chosen_marks(report.decision))
    figure = figures.completion_figure(report.curve, marks, target_accuracy(report.decision), f"label quality vs completion on {report.rows} seed rows")
    if figure is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    figures.save(figure, path)
    return path.resolve()


def cascade_marks(cascade: CascadeReport | None, marks: list[tuple[str, OperatingPoint]]) -> list[tuple[str, OperatingPoint]]:
    """``marks`` (the last stage's, alone) and, in a cascade of several stages, the point the
    cascade reaches on the seed rows after each stage."""
    if cascade is None or len(cascade.stages) < 2:
        return marks
    marks = [(f"{cascade.last_stage_alone.name} alone: {label}", point) for label, point in marks]
    accepted = correct = 0
    for stage in cascade.stages:
        accepted, correct = accepted + stage.accepted, correct + stage.correct
        marks.append((f"cascade through {stage.name}", OperatingPoint(stage.decision.threshold, accepted, stage.rows, correct)))
    return marks


def target_accuracy(decision: ThresholdDecision | None) -> float | None:
    return decision.target if decision is not None and decision.policy == "target_accuracy" else None


def chosen_marks(decision: ThresholdDecision | None) -> list[tuple[str, OperatingPoint]]:
    """The operating point the decision chose on its seed rows, named for a plot's legend."""
    if decision is None or decision.point is None or decision.accepts_nothing:
        return []
    return [(f"chosen: threshold {decision.threshold:.4g}", decision.point)]
