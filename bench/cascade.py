"""Cascades: API calls saved by a local first stage, and the empirical coverage of plan's guarantee.

1. On the banking and civil_comments seed sets, 5-fold cross-validated as in
   bench/learned_labeler.py: the other 4/5 of the rows are the classifier stage's labeled
   examples and plan's seed rows; the held-out 1/5 is run through the cascade
   ``local`` (classifier provider) → ``api`` (the project's fake OpenAI server, whose answer
   is right on ``--api-accuracy`` of the rows, the wrong ones fixed by the row's text).
   Against the ``api`` stage alone at the same target, on the same held-out rows: calls to the
   API per 1,000 rows, their cost at gpt-4o-mini prices (tokens estimated by plan), completion
   and the accuracy of the accepted rows.
2. Synthetic data with known correctness: over ``--splits`` random seed sets, plan's
   ``tune_cascade`` picks the thresholds of a three-stage cascade; the share of splits where
   the accepted rows of a large test population fall below the target must be at most
   1 − confidence_level (plus sampling noise). The same with each stage scanned at the full
   confidence level (no Bonferroni split) shows what the split buys.

    python bench/cascade.py --output bench/cascade.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import zlib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from autolabel_lite import LabelingAgent  # noqa: E402
from autolabel_lite.config import ThresholdConfig  # noqa: E402
from autolabel_lite.learned import folds_for  # noqa: E402
from autolabel_lite.policy import accepted_rows, tune_cascade  # noqa: E402
from autolabel_lite.tasks.classification import normalise  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_openai_server import INPUT_MARKER, FakeOpenAIServer, parse_labels, prompt_text  # noqa: E402
from learned_labeler import DATA, REPO, read_rows, write_rows  # noqa: E402

DATASETS = ("banking", "civil_comments")
PRICING = {"input_per_million": 0.15, "output_per_million": 0.6}  # gpt-4o-mini, USD


class ApiThatIsRightOnAShare:
    """The fake server's answers: the gold label on ``accuracy`` of the rows, else another label;
    which rows are wrong is fixed by a hash of the row's text, so every fold and run agrees."""

    def __init__(self, gold: dict[str, str], input_column: str, accuracy: float) -> None:
        self.gold, self.prefix, self.accuracy = gold, f"{input_column}:", accuracy

    def __call__(self, request: dict) -> str:
        text = prompt_text(request)
        labels = parse_labels(text)
        # The prompt ends "input to label:\n<column>: ROW\nOutput:"; rows are keyed with their whitespace collapsed.
        row = " ".join(text.rpartition(INPUT_MARKER)[2].split()).removeprefix(self.prefix).removesuffix("Output:").strip()
        gold = self.gold[row]
        draw = zlib.crc32(row.encode()) / 2**32
        if draw < self.accuracy:
            return gold
        others = [label for label in labels if normalise(label) != normalise(gold)]
        return others[zlib.crc32(row.encode(), 1) % len(others)]


def cascade_on_seed_set(name: str, target: float, level: float, api_accuracy: float, folds: int, cache: str) -> dict:
    config = json.loads((REPO / "task_configs" / f"{name}.json").read_text())
    rows = read_rows(DATA / name / "seed.csv")
    gold_column, input_column = config["dataset"]["label_column"], config["dataset"]["input_columns"][0]
    labels = list(config["prompt"]["labels"])
    index = {normalise(label): i for i, label in enumerate(labels)}
    y = np.array([index[normalise(r[gold_column])] for r in rows])
    gold = {" ".join(r[input_column].split()): r[gold_column] for r in rows}
    totals = {key: 0 for key in ("rows", "api_calls", "accepted", "right", "alone_accepted", "alone_right", "api_cost_row_sum", "plans")}
    with FakeOpenAIServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.responder = ApiThatIsRightOnAShare(gold, input_column, api_accuracy)
        api = {"provider": "openai", "name": "gpt-4o-mini", "base_url": server.base_url, "api_key": "fake", "pricing": PRICING, "concurrency": 16}
        threshold = {"policy": "target_accuracy", "target": target, "confidence_level": level}
        for fold, held in enumerate(folds_for(y, folds)):
            held_set = set(held.tolist())
            train = write_rows(Path(tmp) / f"train_{fold}.csv", [r for i, r in enumerate(rows) if i not in held_set])
            test = write_rows(Path(tmp) / f"test_{fold}.csv", [rows[i] for i in held])
            base = {key: value for key, value in config.items() if key != "model"}
            base["prompt"] = {**config["prompt"], "few_shot_examples": str(train), "few_shot_num": 0}
            base["threshold"] = threshold
            cascade = {**base, "cascade": [{"name": "local", "model": {"provider": "classifier"}}, {"name": "api", "model": api}]}
            alone = {**base, "model": {**api, "compute_confidence": True}}
            for which, fold_config in (("cascade", cascade), ("alone", alone)):
                agent = LabelingAgent(fold_config, cache=cache)
                plan = agent.plan(train, seed=train, plot=Path(tmp) / f"plan_{which}_{fold}.png", progress=False)
                result = agent.run(test, progress=False)
                for row, outcome in result.rows():
                    right = normalise(outcome.label) == normalise(row[gold_column])
                    accepted = result.is_accepted(outcome)
                    if which == "cascade":
                        totals["rows"] += 1
                        totals["api_calls"] += outcome.details.get("stage") == "api"
                        totals["accepted"] += accepted
                        totals["right"] += accepted and right
                    else:
                        totals["alone_accepted"] += accepted
                        totals["alone_right"] += accepted and right
                if which == "cascade":
                    totals["api_cost_row_sum"] += plan.cascade.stages[-1].cost_per_row
                    totals["plans"] += 1
            print(f"{name} target {target} fold {fold + 1}/{folds} done", file=sys.stderr)
    n = totals["rows"]
    cost_per_row = totals["api_cost_row_sum"] / totals["plans"]
    return {
        "rows": n,
        "labels": len(labels),
        "api_calls_per_1k": 1000 * totals["api_calls"] / n,
        "cost_per_1k": 1000 * totals["api_calls"] / n * cost_per_row,
        "completion": totals["accepted"] / n,
        "accuracy": totals["right"] / totals["accepted"] if totals["accepted"] else math.nan,
        "alone_calls_per_1k": 1000.0,
        "alone_cost_per_1k": 1000 * cost_per_row,
        "alone_completion": totals["alone_accepted"] / n,
        "alone_accuracy": totals["alone_right"] / totals["alone_accepted"] if totals["alone_accepted"] else math.nan,
    }


# -- coverage on synthetic data ---------------------------------------------------------

# Three stages, each better than the last; one latent difficulty per row drives them all, so a
# row the first stage passes on is harder for the next ones too (the hard case for the split).
STAGE_SKILL = (0.6, 1.6, 2.6)
DIFFICULTY_WEIGHT = 1.5
SIGNAL_NOISE = 0.8


def synthetic_rows(rng: np.random.Generator, rows: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per stage: confidence (a noisy view of the label's chance to be right) and correctness."""
    difficulty = rng.normal(size=rows)
    confidence, correct = [], []
    for skill in STAGE_SKILL:
        logit = skill - DIFFICULTY_WEIGHT * difficulty
        correct.append(rng.random(rows) < 1 / (1 + np.exp(-logit)))
        confidence.append(1 / (1 + np.exp(-(logit + SIGNAL_NOISE * rng.normal(size=rows)))))
    return confidence, correct


def accepted_accuracy(decisions, confidence: list[np.ndarray], correct: list[np.ndarray]) -> tuple[float, float]:
    """(accuracy of the rows the cascade accepts, share accepted) on a population."""
    reaching = np.ones(confidence[0].size, dtype=bool)
    right = accepted = 0
    for decision, values, truth in zip(decisions, confidence, correct):
        kept = reaching & accepted_rows(decision, values)
        accepted += int(kept.sum())
        right += int(truth[kept].sum())
        reaching &= ~kept
    return (right / accepted if accepted else math.nan), accepted / confidence[0].size


def coverage(splits: int, seed_rows: int, population_rows: int, target: float, level: float) -> dict:
    rng = np.random.default_rng(14)
    population = synthetic_rows(rng, population_rows)
    config = ThresholdConfig(policy="target_accuracy", target=target, confidence_level=level)
    # Each stage at the full level, what the split guards against: the level whose split share is the full one.
    unsplit = config.model_copy(update={"confidence_level": 1 - len(STAGE_SKILL) * (1 - level)})
    outcomes = {"bonferroni": [], "no split": []}
    for _ in range(splits):
        seed = synthetic_rows(rng, seed_rows)
        outcomes["bonferroni"].append(accepted_accuracy(tune_cascade(config, *seed), *population))
        outcomes["no split"].append(accepted_accuracy(tune_cascade(unsplit, *seed), *population))
    result = {"splits": splits, "seed_rows": seed_rows, "population_rows": population_rows, "target": target, "level": level}
    for name, pairs in outcomes.items():
        accuracy = np.array([a for a, _ in pairs])
        completion = np.array([c for _, c in pairs])
        failed = np.nan_to_num(accuracy, nan=1.0) < target  # accepting nothing cannot fall below the target
        result[name] = {
            "failure_share": float(failed.mean()),
            "completion": float(completion.mean()),
            "accuracy": float(np.nanmean(accuracy)),
        }
    result["noise"] = 2 * math.sqrt((1 - level) * level / splits)
    return result


def report(seed_sets: dict[tuple[str, float], dict], study: dict, level: float, api_accuracy: float, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        f"## API calls saved: `local` (classifier) → `api` (fake server, right on {api_accuracy:.0%} of rows), "
        f"`target_accuracy` at confidence {level}",
        "",
        "5-fold cross-validation: plan on the 4/5 training rows (also the classifier's examples), run on the held-out 1/5; "
        "every number is on held-out rows. Cost: gpt-4o-mini prices on plan's token estimate.",
        "",
        "| seed set | target | rows | API calls / 1k rows: cascade | API alone | fewer calls | cost / 1k rows: cascade | API alone | completion: cascade | API alone | accepted accuracy: cascade | API alone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, target), r in seed_sets.items():
        saved = r["alone_calls_per_1k"] / r["api_calls_per_1k"] if r["api_calls_per_1k"] else math.inf
        lines.append(
            f"| {name} | {target} | {r['rows']} | {r['api_calls_per_1k']:.0f} | {r['alone_calls_per_1k']:.0f} | {saved:.1f}× | "
            f"${r['cost_per_1k']:.4f} | ${r['alone_cost_per_1k']:.4f} | {r['completion']:.1%} | {r['alone_completion']:.1%} | "
            f"{_accuracy(r['accuracy'])} | {_accuracy(r['alone_accuracy'])} |"
        )
    s = study
    lines += [
        "",
        f"## Coverage of the guarantee on synthetic data: {s['splits']} random seed sets of {s['seed_rows']} rows, "
        f"a three-stage cascade, population of {s['population_rows']:,} rows",
        "",
        f"Target accuracy {s['target']} at confidence {s['level']}: the share of seed sets whose thresholds let the accepted "
        f"population rows fall below the target must be at most {1 - s['level']:.2f} (± {s['noise']:.3f}, two standard errors over {s['splits']} splits).",
        "",
        "| thresholds | splits below the target | mean completion | mean accepted accuracy |",
        "|---|---:|---:|---:|",
    ]
    for name, label in (("bonferroni", "plan: error budget split over the stages (Bonferroni)"), ("no split", "each stage at the full level (not what plan does)")):
        r = s[name]
        lines.append(f"| {label} | {r['failure_share']:.3f} | {r['completion']:.1%} | {r['accuracy']:.3f} |")
    return "\n".join(lines)


def _accuracy(value: float) -> str:
    return "none accepted" if math.isnan(value) else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), help="seed sets (none: the coverage study only)")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.9, 0.8], help="seed-set targets; the coverage study uses the first")
    parser.add_argument("--confidence-level", type=float, default=0.95)
    parser.add_argument("--api-accuracy", type=float, default=0.95)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--splits", type=int, default=1000)
    parser.add_argument("--seed-rows", type=int, default=300)
    parser.add_argument("--population-rows", type=int, default=200_000)
    parser.add_argument("--cache", default=str(REPO / ".autolabel_lite" / "bench_cascade.sqlite"))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    seed_sets = {}
    if DATA.is_dir():
        seed_sets = {
            (name, target): cascade_on_seed_set(name, target, args.confidence_level, args.api_accuracy, args.folds, args.cache)
            for name in args.datasets
            for target in args.targets
        }
    else:
        print(f"seed sets not found at {DATA}: the coverage study only", file=sys.stderr)
    study = coverage(args.splits, args.seed_rows, args.population_rows, args.targets[0], args.confidence_level)
    text = report(seed_sets, study, args.confidence_level, args.api_accuracy, "python bench/cascade.py " + " ".join(sys.argv[1:]))
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
