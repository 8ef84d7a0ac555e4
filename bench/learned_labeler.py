"""Cross-validated quality of the learned labeler on the classification seed sets.

For each seed set (banking, civil_comments) and each of 5 folds: the other 4/5 of the rows
are the config's labeled examples (``prompt.few_shot_examples``, ``few_shot_num: 0``: they
are fitted on, not shown in the prompt), the held-out 1/5 is labeled by the product
(``LabelingAgent.label``, the embedded model unless ``--provider`` says otherwise). Every
number is on rows no fit saw. Per view: accuracy, balanced accuracy, macro F1; per
confidence signal: AUROC and ECE.

    python bench/learned_labeler.py --output bench/learned_labeler.md

Model calls are cached (``--cache``): each row's label scores do not depend on the fold
(the prompt shows no examples), so every fold after the first reuses them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from autolabel_lite import LabelingAgent  # noqa: E402
from autolabel_lite.learned import folds_for  # noqa: E402
from autolabel_lite.metrics import auroc, expected_calibration_error  # noqa: E402
from autolabel_lite.tasks.classification import normalise  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
DATASETS = ("civil_comments", "banking")


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def label_quality(gold: list[str], predicted: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    return {
        "accuracy": accuracy_score(gold, predicted),
        "balanced accuracy": balanced_accuracy_score(gold, predicted),
        "macro F1": f1_score(gold, predicted, average="macro", zero_division=0),
    }


def cross_validate(name: str, folds: int, cache: str, provider: str | None) -> dict:
    config = json.loads((REPO / "task_configs" / f"{name}.json").read_text())
    rows = read_rows(DATA / name / "seed.csv")
    label_column = config["dataset"]["label_column"]
    labels = config["prompt"]["labels"]
    labels = list(labels) if isinstance(labels, dict) else labels
    index = {normalise(label): i for i, label in enumerate(labels)}
    y = np.array([index[normalise(r[label_column])] for r in rows])
    collected: dict[str, list] = {key: [] for key in ("gold", "combined", "llm", "view", "p_combined", "p_llm", "p_view", "learned", "certainty")}
    seconds, labeled = 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for fold, held in enumerate(folds_for(y, folds)):
            held_set = set(held.tolist())
            train = [r for i, r in enumerate(rows) if i not in held_set]
            test = [rows[i] for i in held]
            fold_config = json.loads(json.dumps(config))
            fold_config["prompt"].update(few_shot_examples=str(write_rows(Path(tmp) / f"examples_{fold}.csv", train)), few_shot_num=0)
            fold_config["model"]["compute_confidence"] = True
            data = write_rows(Path(tmp) / f"test_{fold}.csv", test)
            agent = LabelingAgent(fold_config, provider=provider, cache=cache)
            started = time.perf_counter()
            result = agent.label(data, progress=sys.stderr.isatty())
            seconds += time.perf_counter() - started
            labeled += len(test)
            for row, outcome in result.rows():
                details = outcome.details
                combined = details["label_probs"]
                collected["gold"].append(row[label_column])
                collected["combined"].append(outcome.label)
                collected["p_combined"].append(combined[outcome.label])
                collected["certainty"].append(1 - _entropy(list(combined.values())))
                collected["learned"].append(outcome.confidence)
                for view, key in (("llm", "llm_label_probs"), ("view", "embedding_label_probs")):
                    probs = details.get(key) or combined
                    best = max(probs, key=probs.get)
                    collected[view].append(best)
                    collected[f"p_{view}"].append(probs[best])
            print(f"{name} fold {fold + 1}/{folds}: {len(test)} rows", file=sys.stderr)
    gold = collected["gold"]
    views = {view: label_quality(gold, collected[view]) for view in ("llm", "view", "combined")}

    def confidence(label_key: str, score_key: str) -> dict[str, float]:
        correct = [normalise(p) == normalise(g) for p, g in zip(collected[label_key], gold)]
        scores = collected[score_key]
        return {"AUROC": auroc(scores, correct), "ECE": expected_calibration_error(scores, correct)}

    signals = {
        "LLM only: probability of its label (calibrated scoring)": confidence("llm", "p_llm"),
        "embedding only: probability of its label": confidence("view", "p_view"),
        "combined: probability of the chosen label (`logprob`)": confidence("combined", "p_combined"),
        "combined: 1 − normalised entropy (`entropy`)": confidence("combined", "certainty"),
        "combined: correctness model (`learned`)": confidence("combined", "learned"),
    }
    return {"rows": len(gold), "labels": len(labels), "views": views, "signals": signals, "seconds_per_row": seconds / labeled}


def _entropy(probs: list[float]) -> float:
    values = np.clip(np.asarray(probs), 1e-12, 1)
    return float(-(values * np.log(values)).sum() / np.log(max(len(values), 2)))


def report(results: dict[str, dict], command: str) -> str:
    lines = [f"Command: `{command}`", ""]
    for name, result in results.items():
        lines += [
            f"## {name}: {result['rows']} rows, {result['labels']} labels, 5-fold cross-validation",
            "",
            "| labels from | accuracy | balanced accuracy | macro F1 |",
            "|---|---:|---:|---:|",
        ]
        names = {"llm": "LLM only (calibrated label scoring)", "view": "embedding only (MiniLM + balanced logistic regression)", "combined": "combined (learned labeler)"}
        for view, quality in result["views"].items():
            lines.append(f"| {names[view]} | {quality['accuracy']:.3f} | {quality['balanced accuracy']:.3f} | {quality['macro F1']:.3f} |")
        lines += ["", "| confidence | AUROC | ECE |", "|---|---:|---:|"]
        for signal, quality in result["signals"].items():
            lines.append(f"| {signal} | {quality['AUROC']:.3f} | {quality['ECE']:.3f} |")
        lines += ["", f"Seconds per row, whole run including the fit (model calls cached after fold 1): {result['seconds_per_row']:.3f}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--provider", default=None, help="e.g. classifier (no language model)")
    parser.add_argument("--cache", default=str(REPO / ".autolabel_lite" / "bench_learned.sqlite"))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"seed sets not found at {DATA}")
    results = {name: cross_validate(name, args.folds, args.cache, args.provider) for name in args.datasets}
    text = report(results, "python bench/learned_labeler.py " + " ".join(sys.argv[1:]))
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
