"""Reproduce the confidence (AUROC) study on the benchmark seed sets.

Runs every confidence method on the seed sets in ``../shared/data`` with the task
configs in ``task_configs/<dataset>.json`` and a chosen labeler and verifier (default:
the embedded model for both; any OpenAI-compatible server for either), then writes a
markdown report: AUROC and ECE in the study's layout (rows: methods; columns: datasets,
mean, std), each dataset's label quality, the accuracy of each
``prompt.label_scoring`` mode on the classification sets, and optionally a ROC plot
(needs matplotlib).

    python bench/confidence_study.py --max-rows 40 --plot bench/confidence_roc.png

Every model call is cached (``--cache``): the methods share the labeling calls, and a
rerun with more rows or methods pays only for what is new. A benchmark, run by hand;
the tests never run it.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from autolabel_lite import LabelingAgent, load_config  # noqa: E402
from autolabel_lite.config import TaskConfig  # noqa: E402
from autolabel_lite.confidence import get_method_class  # noqa: E402
from autolabel_lite.metrics import auroc, expected_calibration_error, roc_points  # noqa: E402
from autolabel_lite.tasks import get_task_class  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"
DATASETS = ["banking", "civil_comments", "conll2003", "squad_v2"]
# Table rows, in the study's order (token probability first, verbalized last): each a method
# and its options. logprob_mean: the geometric mean over the label's tokens, not the first token.
METHODS = {
    "logprob": {"confidence.method": "logprob"},
    "logprob_mean": {"confidence.method": "logprob", "confidence.token_probability": "mean"},
    "p_true": {"confidence.method": "p_true"},
    "entropy": {"confidence.method": "entropy"},
    "semantic_entropy": {"confidence.method": "semantic_entropy"},
    "verbalized": {"confidence.method": "verbalized"},
}
LABEL_SCORING_MODES = ["sum", "mean", "calibrated"]


@dataclass
class Measured:
    """One confidence method on one dataset."""

    rows: int
    scored: int  # rows with a label and a confidence
    correct: int  # of the scored rows
    auroc: float
    ece: float
    seconds: float
    model_calls: int  # made by this run; the rest came from the cache
    quality: dict[str, float]
    confidences: list[float] = field(repr=False, default_factory=list)
    outcomes: list[bool] = field(repr=False, default_factory=list)


def task_config(configs: Path, dataset: str, overrides: dict) -> TaskConfig:
    """``<configs>/<dataset>.json`` with dotted-key overrides (labeler, confidence method)."""
    path = configs / f"{dataset}.json"
    if not path.is_file():
        sys.exit(f"error: task config not found: {path}")
    return load_config(path, **overrides)


def seed_path(data_dir: Path, dataset: str) -> Path:
    path = data_dir / dataset / "seed.csv"
    if not path.is_file():
        sys.exit(f"error: seed set not found: {path}")
    return path


def measure(config: TaskConfig, data: Path, rows: int | None, cache: str) -> Measured:
    """Label ``rows`` rows with confidence; how well the confidence separates right from wrong."""
    agent = LabelingAgent(config, cache=cache)
    result = agent.run(data, max_rows=rows, progress=True)
    gold_column = agent.config.dataset.label_column
    confidences, outcomes = [], []
    for row, labeled in result.rows():
        if labeled.label and labeled.confidence is not None:
            confidences.append(labeled.confidence)
            outcomes.append(agent.task.is_correct(labeled.label, row[gold_column]))
    quality = {k: v for k, v in result.metrics.items() if k not in ("auroc", "ece")}
    return Measured(
        rows=result.stats.rows,
        scored=len(confidences),
        correct=sum(outcomes),
        auroc=auroc(confidences, outcomes),
        ece=expected_calibration_error(confidences, outcomes),
        seconds=result.stats.seconds,
        model_calls=result.stats.model_calls,
        quality=quality,
        confidences=confidences,
        outcomes=outcomes,
    )


def model_overrides(prefix: str, provider: str | None, name: str | None, base_url: str | None) -> dict:
    values = {"provider": provider, "name": name, "base_url": base_url}
    return {f"{prefix}.{key}": value for key, value in values.items() if value is not None}


# -- the label_scoring comparison ----------------------------------------------------------


def label_scoring_study(args, labeler: dict) -> dict[tuple[str, str], float]:
    """Accuracy of each ``prompt.label_scoring`` mode on the classification seed sets.

    The modes normalise the same label scores differently, so after the first mode the
    cached scores make the others nearly free."""
    accuracy = {}
    for dataset in args.datasets:
        base = task_config(args.configs, dataset, labeler)
        if base.task_type.value != "classification":
            continue
        for mode in LABEL_SCORING_MODES:
            config = task_config(args.configs, dataset, {**labeler, "prompt.label_scoring": mode, "prompt.labeling_mode": "score"})
            result = LabelingAgent(config, cache=args.cache).run(seed_path(args.data_dir, dataset), max_rows=args.label_scoring_rows, progress=True)
            accuracy[dataset, mode] = result.metrics["accuracy"]
            accuracy[dataset, "rows"] = result.stats.rows
            print(f"{dataset} label_scoring={mode}: accuracy {result.metrics['accuracy']:.3f} ({result.stats.rows} rows)", file=sys.stderr)
    return accuracy


# -- report ----------------------------------------------------------------------------------


def _cell(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def method_table(results: dict[tuple[str, str], Measured], datasets: list[str], methods: list[str], metric: str) -> list[str]:
    """Rows: methods; columns: datasets, mean, std over the datasets where the method applies."""
    lines = ["| method | " + " | ".join(datasets) + " | mean | std |", "|---|" + "---:|" * (len(datasets) + 2)]
    for method in methods:
        values = [getattr(results[d, method], metric) if (d, method) in results else None for d in datasets]
        defined = [v for v in values if v is not None and not math.isnan(v)]
        mean = statistics.fmean(defined) if defined else None
        std = statistics.stdev(defined) if len(defined) > 1 else None
        lines.append(f"| {method} | " + " | ".join(_cell(v) for v in values) + f" | {_cell(mean)} | {_cell(std)} |")
    return lines


def quality_table(results, datasets, methods) -> list[str]:
    lines = ["| dataset | rows | labeled with a confidence | correct | label quality |", "|---|---:|---:|---:|---|"]
    for dataset in datasets:
        first = next((results[dataset, m] for m in methods if (dataset, m) in results), None)
        if first is None:
            continue
        quality = ", ".join(f"{k} {v:.3f}" for k, v in list(first.quality.items())[:3])
        lines.append(f"| {dataset} | {first.rows} | {first.scored} | {first.correct} | {quality} |")
    return lines


def scoring_table(accuracy: dict, datasets: list[str]) -> list[str]:
    sets = [d for d in datasets if (d, "rows") in accuracy]
    lines = ["| label_scoring | " + " | ".join(f"{d} ({accuracy[d, 'rows']} rows)" for d in sets) + " |", "|---|" + "---:|" * len(sets)]
    for mode in LABEL_SCORING_MODES:
        lines.append(f"| {mode} | " + " | ".join(f"{accuracy[d, mode]:.1%}" for d in sets) + " |")
    return lines


def plot_roc(results, datasets, methods, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        for method in methods:
            measured = results.get((dataset, method))
            if measured is None or math.isnan(measured.auroc):
                continue
            fpr, tpr = roc_points(measured.confidences, measured.outcomes)
            axis.plot(fpr, tpr, label=f"{method} ({measured.auroc:.2f})")
        axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        axis.set(title=dataset, xlabel="false positive rate", ylabel="true positive rate")
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="folder with <dataset>/seed.csv")
    parser.add_argument("--configs", type=Path, default=REPO / "task_configs", help="folder with <dataset>.json task configs")
    parser.add_argument("--datasets", nargs="+", default=DATASETS, choices=DATASETS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--max-rows", type=int, help="rows per dataset for the confidence methods (default: all)")
    parser.add_argument("--label-scoring-rows", type=int, help="rows per classification set for the label_scoring table (default: all)")
    parser.add_argument("--no-label-scoring", action="store_true", help="skip the label_scoring table")
    parser.add_argument("--provider", help="labeler provider (default: the configs', the embedded model)")
    parser.add_argument("--model", help="labeler model name")
    parser.add_argument("--base-url", help="labeler OpenAI-compatible base URL")
    parser.add_argument("--verifier-provider", help="verifier provider (default: the labeler scores its own labels)")
    parser.add_argument("--verifier-model", help="verifier model name")
    parser.add_argument("--verifier-base-url", help="verifier OpenAI-compatible base URL")
    parser.add_argument("--cache", default=str(REPO / "bench" / ".confidence_study.sqlite"), help="model-call cache")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "confidence_study.md", help="markdown report")
    parser.add_argument("--plot", type=Path, help="also draw the ROC curves to this PNG (needs matplotlib)")
    return parser.parse_args(argv)


def describe(config: TaskConfig) -> str:
    def one(model) -> str:
        name = model.name or ("SmolLM2-135M-Instruct" if model.provider == "embedded" else "")
        where = f" at {model.base_url}" if model.base_url else ""
        return f"{model.provider} {name}{where}".strip()

    verifier = config.confidence.verifier
    return f"labeler: {one(config.model)}; verifier: {one(verifier) if verifier else 'the labeler itself'}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    labeler = model_overrides("model", args.provider, args.model, args.base_url)
    verifier = model_overrides("confidence.verifier", args.verifier_provider, args.verifier_model, args.verifier_base_url)
    started = time.time()
    accuracy = {} if args.no_label_scoring else label_scoring_study(args, labeler)

    results: dict[tuple[str, str], Measured] = {}
    overrides = {**labeler, **verifier, "model.compute_confidence": True}
    for dataset in args.datasets:
        data = seed_path(args.data_dir, dataset)
        task_class = get_task_class(task_config(args.configs, dataset, overrides).task_type)
        for method in args.methods:
            if get_method_class(METHODS[method]["confidence.method"]).unsupported(task_class):
                continue
            config = task_config(args.configs, dataset, {**overrides, **METHODS[method]})
            measured = measure(config, data, args.max_rows, args.cache)
            results[dataset, method] = measured
            print(f"{dataset} {method}: AUROC {_cell(measured.auroc)}  ECE {_cell(measured.ece)}  "
                  f"({measured.scored} of {measured.rows} rows scored, {measured.seconds:.0f}s)", file=sys.stderr)

    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    command = f"{threads}python bench/confidence_study.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    rows = "all" if args.max_rows is None else f"the first {args.max_rows}"
    report = [
        "# Confidence study",
        "",
        "How well each confidence method separates correct labels from wrong ones (AUROC; 0.5 is chance),",
        "in the layout of Refuel's *Labeling with Confidence* study, measured with this project's code.",
        "",
        f"- Command: `{command}`",
        f"- Models: {describe(task_config(args.configs, args.datasets[0], overrides))}",
        f"- Rows: {rows} rows of each seed set in `{os.path.relpath(args.data_dir, REPO)}/<dataset>/seed.csv`; task configs from `task_configs/`",
        f"- Machine: {os.cpu_count()} CPU cores, {platform.system()}, Python {platform.python_version()}; "
        f"wall time {time.time() - started:.0f}s; model calls made by this run: "
        f"{sum(m.model_calls for m in results.values())} (the others came from the cache of earlier runs)",
        "- n/a: the method does not apply to the task (entropy needs a fixed label set), or AUROC is undefined "
        "(every scored label right, or every one wrong). Mean and std (sample) are over the datasets with a value.",
        "",
        "## AUROC",
        "",
        *method_table(results, args.datasets, args.methods, "auroc"),
        "",
        "## Expected calibration error (10 equal-width bins; lower is better)",
        "",
        *method_table(results, args.datasets, args.methods, "ece"),
        "",
        "## Labels scored",
        "",
        *quality_table(results, args.datasets, args.methods),
        "",
    ]
    if accuracy:
        report += [
            "## Label scoring: accuracy of each `prompt.label_scoring` mode (score mode, zero-shot configs)",
            "",
            *scoring_table(accuracy, args.datasets),
            "",
        ]
    if args.plot:
        plot_roc(results, args.datasets, args.methods, args.plot)
        report += [f"ROC curves: `{args.plot.name}`", ""]
    args.output.write_text("\n".join(report), encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
