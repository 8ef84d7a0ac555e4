"""How often label selection keeps the gold label (recall@k), and how fast selection runs.

Leave-one-out on the 200-row Banking77 seed set (../shared/data/banking/seed.csv): each
row is labeled with the other 199 rows as its labeled examples. For k = 5, 10, 20 it
reports how often the row's gold label is among the k labels ``prompt.label_selection``
keeps, for the shipped scoring (best of label-text and labeled-example similarity) and
for label text alone (no examples), with all-MiniLM-L6-v2 and with the TF-IDF fallback;
plus the 1-nearest-neighbour accuracy for reference. Then it times example selection
for 10,000 rows against 1,000 examples, and compares the embedded model's accuracy
with and without label selection (10 labels) on 40 held-out rows.

    HF_HUB_OFFLINE=1 python bench/label_selection_recall.py [--out bench/label_selection_recall.md]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from autolabel_lite.cache import Cache
from autolabel_lite.config import load_config
from autolabel_lite.fewshot import ExampleSelector, LabelSelector, load_examples

REPO = Path(__file__).resolve().parent.parent
SEED = REPO.parent / "shared" / "data" / "banking" / "seed.csv"
KS = (5, 10, 20)


def config_for(rows: list[dict], provider: str, **prompt):
    labels = sorted({row["label"] for row in rows})
    return load_config(
        {
            "task_name": "banking",
            "dataset": {"input_columns": ["example"], "label_column": "label"},
            "prompt": {"labels": labels, "few_shot_examples": rows, "label_selection": True, **prompt},
            "embedding": {"provider": provider},
        }
    )


def recall(rows: list[dict], provider: str, cache: Cache) -> dict[str, dict[int, float]]:
    config = config_for(rows, provider, few_shot_num=0)
    examples = load_examples(config, ["example"])
    embedder = ExampleSelector(config, examples).embedder
    embedder.store.cache = cache
    labels = config.prompt.label_names
    row_vectors = embedder.rows(examples)
    example_vectors = embedder.kept(examples)
    results: dict[str, dict[int, float]] = {"label text + examples": {}, "label text only": {}}
    hits = {name: {k: 0 for k in KS} for name in results}
    nearest_correct = 0
    for i, row in enumerate(examples):
        others = examples[:i] + examples[i + 1 :]
        gold = labels.index(row["label"])
        for name, pool in (("label text + examples", others), ("label text only", [])):
            scores = LabelSelector(config, pool, embedder).scores(row_vectors[i : i + 1])[0]
            rank = int((scores > scores[gold]).sum())  # labels strictly better than the gold one
            for k in KS:
                hits[name][k] += rank < k
        similarity = example_vectors @ row_vectors[i]
        similarity[i] = -np.inf
        nearest_correct += examples[int(np.argmax(similarity))]["label"] == row["label"]
    for name in results:
        results[name] = {k: hits[name][k] / len(examples) for k in KS}
    results["1-nearest-neighbour accuracy"] = {1: nearest_correct / len(examples)}
    return results


def selection_speed(rows: list[dict], cache: Cache, n_examples: int = 1000, n_rows: int = 10_000) -> list[tuple[str, float]]:
    """Seconds to select for ``n_rows`` rows from ``n_examples`` examples (embedding timed apart)."""
    texts = [row["example"] for row in rows]
    pool = [{"example": f"{texts[i % len(texts)]} (case {i})", "label": rows[i % len(rows)]["label"]} for i in range(n_examples)]
    queries = [{"example": f"{texts[(7 * i) % len(texts)]} #{i}"} for i in range(n_rows)]
    config = config_for(pool, "auto", few_shot_selection="semantic_similarity", few_shot_num=10, label_selection_count=10)
    selector = ExampleSelector(config, load_examples(config, ["example"]))
    selector.attach(cache)
    selector.select(queries[0])  # example and label vectors: computed, or read from the cache
    methods = ("semantic_similarity", "max_marginal_relevance", "label_diversity")
    seconds = {"embed": 0.0, "labels": 0.0, **{method: 0.0 for method in methods}}
    for start in range(0, n_rows, 1000):
        batch = queries[start : start + 1000]
        began = time.perf_counter()
        selector.embedder.prefetch(batch)  # what LabelingAgent.run does a batch ahead of labeling
        seconds["embed"] += time.perf_counter() - began
        for method in methods:
            selector.method = method
            began = time.perf_counter()
            for query in batch:
                selector.select(query)
            seconds[method] += time.perf_counter() - began
        began = time.perf_counter()
        for query in batch:
            selector.labels_for(query)
        seconds["labels"] += time.perf_counter() - began
    return [
        (f"embed {n_rows:,} rows (all-MiniLM-L6-v2)", seconds["embed"]),
        *[(f"{method}: 10 of {n_examples:,} examples per row", seconds[method]) for method in methods],
        (f"label selection: 10 of {len(config.prompt.label_names)} labels per row", seconds["labels"]),
    ]


def model_accuracy(rows: list[dict], folder: Path, n_examples: int = 150, n_eval: int = 40) -> list[tuple[int, str, float, float]]:
    """(few-shot examples, labels scored, accuracy, seconds) of the embedded SmolLM2 scoring
    labels on held-out rows, with 0 or 3 semantically selected examples from the first ``n_examples`` rows."""
    from autolabel_lite.agent import LabelingAgent

    fields = ["example", "label"]
    for name, part in (("examples.csv", rows[:n_examples]), ("eval.csv", rows[n_examples : n_examples + n_eval])):
        with (folder / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(part)
    results = []
    for shots in (3, 0):
        for setting, selection in (("all", {"label_selection": False}), ("10 nearest", {"label_selection": True, "label_selection_count": 10})):
            config = config_for(rows, "auto", few_shot_examples=str(folder / "examples.csv"), few_shot_selection="semantic_similarity", few_shot_num=shots)
            config = config.model_dump(mode="json")
            config["prompt"].update(selection)
            config["model"] = {"provider": "embedded"}
            began = time.perf_counter()
            result = LabelingAgent(config, cache=folder / "model_cache.sqlite").run(folder / "eval.csv", progress=False)
            results.append((shots, setting, result.metrics["accuracy"], time.perf_counter() - began))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".md"))
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-model", action="store_true", help="skip labeling held-out rows with the embedded model")
    args = parser.parse_args()
    if not SEED.is_file():
        raise SystemExit(f"seed set not found: {SEED}")
    with SEED.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    with tempfile.TemporaryDirectory() as folder:
        cache = Cache(Path(folder) / "cache.sqlite")
        started = time.perf_counter()
        by_model = {name: recall(rows, provider, cache) for name, provider in (("all-MiniLM-L6-v2", "auto"), ("TF-IDF", "tfidf"))}
        recall_seconds = time.perf_counter() - started
        timings = [] if args.skip_speed else selection_speed(rows, cache)
        accuracy = [] if args.skip_model else model_accuracy(rows, Path(folder))

    n_labels = len({row["label"] for row in rows})
    lines = [
        "# Label selection recall on Banking77 seed rows",
        "",
        f"Leave-one-out over the {len(rows)} rows of `../shared/data/banking/seed.csv` ({n_labels} labels): each row's",
        f"labeled examples are the other {len(rows) - 1} rows. recall@k = share of rows whose gold label is among the k labels kept.",
        "",
        "| embedding | label scores | " + " | ".join(f"recall@{k}" for k in KS) + " |",
        "|---|---|" + "---|" * len(KS),
    ]
    for model, results in by_model.items():
        for name in ("label text + examples", "label text only"):
            lines.append(f"| {model} | {name} | " + " | ".join(f"{results[name][k]:.3f}" for k in KS) + " |")
    lines += ["", "1-nearest-neighbour accuracy (label of the most similar other row):", ""]
    lines += [f"- {model}: {results['1-nearest-neighbour accuracy'][1]:.3f}" for model, results in by_model.items()]
    lines += ["", f"Recall computed in {recall_seconds:.1f} s."]
    if timings:
        lines += ["", "## Speed, 10,000 rows", "", "| step | seconds | rows/s |", "|---|---|---|"]
        lines += [f"| {name} | {seconds:.2f} | {10_000 / seconds:,.0f} |" for name, seconds in timings]
    if accuracy:
        lines += [
            "",
            "## Does it help a small model?",
            "",
            "SmolLM2-135M-Instruct (`--provider embedded`) scoring labels (calibrated) on seed rows 151-190,",
            "with 3 or 0 semantically selected examples from rows 1-150. 40 rows: one row is 2.5 points.",
            "",
            "| few-shot examples | labels in prompt and scored | accuracy | seconds |",
            "|---|---|---|---|",
        ]
        lines += [f"| {shots} | {setting} | {value:.3f} | {seconds:.0f} |" for shots, setting, value, seconds in accuracy]
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines += ["", f"Machine: {os.cpu_count()} CPU cores, load average at the end {load} (other jobs inflate the timings)."]
    lines += ["", "Command: `HF_HUB_OFFLINE=1 python bench/label_selection_recall.py`", ""]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
