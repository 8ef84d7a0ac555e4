"""plan(): what a run will cost and, with labeled seed rows, which threshold to use.

A Plan shows the prompt of the first row exactly as the model gets it (a local model's
text with its chat template applied; for an API, the messages sent), counts rows and
tokens, prices them from ``model.pricing``, and — given seed rows with ground truth —
labels them with confidence, measures accuracy, AUROC and ECE, tabulates label quality
against completion rate, chooses the config's threshold and saves it for run().
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError
from .policy import (
    OperatingPoint,
    SavedThreshold,
    ThresholdDecision,
    completion_point,
    cross_validated_calibration,
    operating_points,
    tune,
)
from .prompt import Prompt

if TYPE_CHECKING:
    from .agent import LabelingAgent
    from .dataset import Dataset
    from .labeler import Labeler
    from .result import LabelingResult

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
        if self.seed:
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
    agent: "LabelingAgent",
    dataset: "Dataset",
    seed: Any,
    max_rows: int | None,
    plot: Path,
    progress: bool | None,
) -> Plan:
    from .cache import Cache
    from .labeler import Labeler

    data = dataset
    rows = sum(1 for _ in data.rows(max_rows))
    provider = agent.provider
    labeler = Labeler(agent.task, provider, agent.prompt_builder, agent.selector, Cache(agent.cache_location))
    first_row = next(data.rows(1))
    tokens = _estimate_tokens(agent, labeler, data.rows(min(TOKEN_SAMPLE_ROWS, rows)), first_row)
    prompt = _prompt(agent, labeler, first_row)
    plan = Plan(
        task_name=agent.config.task_name,
        provider=agent.config.model.provider,
        model=provider.model_name,
        labeling_mode=labeler.mode,
        prompt=prompt,
        model_text=provider.model_text(prompt),
        rows=rows,
        tokens=tokens,
        cost_usd=None,
    )
    plan.cost_usd = _cost(agent, plan)
    if plan.cost_usd is None:
        plan.notes.append("no cost estimate: set model.pricing (USD per million input and output tokens)")
    if agent.config.model.compute_confidence:
        plan.notes.append("token counts leave out the confidence step's own model calls")
    if seed is not None:
        plan.seed = _evaluate_seed(agent, data, seed, plot, progress)
    return plan


def _prompt(agent: "LabelingAgent", labeler: "Labeler", row: dict[str, str]) -> Prompt:
    """The prompt a row gets, with the labels it is offered when the config selects labels per row."""
    return labeler.prompt_for(row, agent.selector.labels_for(row))


def _estimate_tokens(agent: "LabelingAgent", labeler: "Labeler", sample, first_row) -> TokenEstimate:
    provider = agent.provider
    counted_with = f"{provider.model_name} tokenizer"
    if provider.count_tokens("probe") is None:
        counted_with = f"heuristic of {CHARS_PER_TOKEN} characters per token, no local tokenizer for this model"

    def count(text: str) -> int:
        counted = provider.count_tokens(text)
        return counted if counted is not None else math.ceil(len(text) / CHARS_PER_TOKEN)

    prompts = [_prompt(agent, labeler, row) for row in sample]
    prompt_counts = [count(provider.model_text(prompt) or prompt.text) for prompt in prompts]
    prompt_per_row = sum(prompt_counts) / len(prompt_counts)
    candidates = agent.task.candidates(first_row) if labeler.mode == "score" else None
    if candidates:
        output_basis = "labels are scored, not generated"
        if not provider.is_local:
            # API scoring sends the prompt once per candidate label (completions with echo).
            prompt_per_row = prompt_per_row * len(candidates) + sum(count(c) for c in candidates)
        return TokenEstimate(len(prompt_counts), prompt_per_row, 0.0, counted_with, output_basis)
    label_column = agent.config.dataset.label_column or "label"
    answers = agent.task.candidates(first_row) or [agent.task.example_label(e.get(label_column)) for e in agent.examples]
    answers = [a for a in answers if a]
    if answers and not agent.config.prompt.chain_of_thought:
        output_per_row = sum(count(a) for a in answers) / len(answers) + 1  # +1: the end-of-answer token
        output_basis = f"mean length of {len(answers)} known answers"
    else:  # free answers, or reasoning before the answer: only the cap is known
        output_per_row = float(agent.config.prompt.max_output_tokens)
        output_basis = "prompt.max_output_tokens, an upper bound"
    return TokenEstimate(len(prompt_counts), prompt_per_row, output_per_row, counted_with, output_basis)


def _cost(agent: "LabelingAgent", plan: Plan) -> float | None:
    if agent.provider.is_local:
        return 0.0
    pricing = agent.config.model.pricing
    if pricing is None:
        return None
    return (plan.prompt_tokens * pricing.input_per_million + plan.output_tokens * pricing.output_per_million) / 1e6


def _evaluate_seed(agent: "LabelingAgent", dataset: "Dataset", seed: Any, plot: Path, progress: bool | None) -> SeedReport:
    gold_column = agent.config.dataset.label_column
    if not gold_column:
        raise ConfigError("dataset.label_column: needed to evaluate seed rows (the column with the ground-truth label)")
    seed_data = dataset if isinstance(seed, int) else agent.open_dataset(seed)
    seed_rows = seed if isinstance(seed, int) else None
    source = f"the first {seed} rows of {dataset.name}" if isinstance(seed, int) else seed_data.name
    seed_data.require_columns([gold_column], what="ground-truth")  # before any labeling
    result = agent.label(seed_data, max_rows=seed_rows, progress=progress)
    confidence, correct, unlabeled, errors = [], [], 0, 0
    for row, outcome in result.rows():
        gold = row[gold_column]
        if not gold.strip():
            unlabeled += 1
            continue
        failed = bool(outcome.error) or not outcome.label
        errors += bool(outcome.error)
        confidence.append(math.nan if failed or outcome.confidence is None else outcome.confidence)
        correct.append(bool(outcome.label) and agent.task.is_correct(outcome.label, gold))
    values, right = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=bool)
    if not right.size:
        raise ConfigError(f"dataset.label_column: no seed row of {source} has a value in {gold_column!r}")
    scored = ~np.isnan(values)
    decision = tune(agent.config.threshold, values, right) if agent.config.threshold else None
    ece_calibrated = None
    if decision and decision.calibration:
        after = cross_validated_calibration(decision.calibration.method, values, right)
        ece_calibrated = _ece(after, right) if after is not None else None
        values = decision.calibration.apply(values)
    curve = operating_points(values, right)
    report = SeedReport(
        source=source,
        rows=int(right.size),
        unlabeled=unlabeled,
        errors=errors,
        with_confidence=int(scored.sum()),
        accuracy=float(right.mean()),
        auroc=_auroc(np.asarray(confidence, dtype=float), right),
        ece=_ece(np.asarray(confidence, dtype=float), right),
        ece_calibrated=ece_calibrated,
        curve=curve,
        table=_table(curve, decision),
        decision=decision,
        labels=result,
    )
    result.apply_threshold(decision)
    if decision is not None:
        saved = SavedThreshold(decision, source, report.rows, agent.saved_threshold_path())
        saved.save(agent.tuning_key())
        report.saved = saved.path
    report.plot = _plot(report, plot)
    return report


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


def _plot(report: SeedReport, path: Path) -> Path | None:
    """Label quality against completion rate, chosen point marked; None without matplotlib or points."""
    from . import figures

    figure = figures.completion_figure(
        report.curve, chosen_marks(report.decision), target_accuracy(report.decision), f"label quality vs completion on {report.rows} seed rows"
    )
    if figure is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    figures.save(figure, path)
    return path.resolve()


def target_accuracy(decision: ThresholdDecision | None) -> float | None:
    return decision.target if decision is not None and decision.policy == "target_accuracy" else None


def chosen_marks(decision: ThresholdDecision | None) -> list[tuple[str, OperatingPoint]]:
    """The operating point the decision chose on its seed rows, named for a plot's legend."""
    if decision is None or decision.point is None or decision.accepts_nothing:
        return []
    return [(f"chosen: threshold {decision.threshold:.4g}", decision.point)]
