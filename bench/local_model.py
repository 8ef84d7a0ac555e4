"""The embedded model (SmolLM2-135M-Instruct on the CPU): prefix reuse and packed label scoring.

1. Prefix reuse: civil_comments with 4 fixed few-shot examples, so every row's prompt
   starts with the same ~350 tokens. The rows are labeled twice, with
   ``model.params.prefix_reuse`` on (the default) and off, each with a fresh cache:
   rows/s of both, and the largest difference in label probabilities and logprobs.
2. Label scoring cost: the 2-label civil_comments config and the 77-label banking
   config (zero-shot, ``label_scoring: sum`` so no one-off calibration pass is timed),
   s/row with every label packed into one pass after the prompt, the share of the time
   spent in the model's forward passes, and, for comparison, K times the cost of one full
   prompt pass (a lower bound for scoring each label with its own pass).

The seed sets are read in place from ../shared/data (never copied).

    python bench/local_model.py --threads 1

prints the markdown quoted in bench/RESULTS.md (``--output FILE`` also writes it to FILE).

This is a benchmark, run by hand; the tests never run it.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from report import publish  # noqa: E402  (bench/ is not a package)

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
SHOTS_PER_LABEL = 2
TARGET_SPEEDUP = 3.0
TOLERANCE = 1e-4


@dataclass
class Timing:
    """Wall time of a run, and (tokens, seconds) of each forward pass of the model during it."""

    seconds: float = 0.0
    forward_passes: list[tuple[int, float]] = field(default_factory=list)

    @property
    def model_share(self) -> float:
        return sum(seconds for _, seconds in self.forward_passes) / self.seconds

    @property
    def tokens(self) -> int:
        return sum(tokens for tokens, _ in self.forward_passes)


def seed_config(name: str, **prompt) -> dict:
    config = json.loads((REPO / "task_configs" / f"{name}.json").read_text(encoding="utf-8"))
    config["prompt"].update(prompt)
    return config


def fixed_shots(path: Path, skip: int) -> list[dict[str, str]]:
    """The first SHOTS_PER_LABEL rows of each label after the first ``skip`` rows (which are labeled)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[skip:]
    labels = sorted({row["label"] for row in rows})
    return [row for label in labels for row in [r for r in rows if r["label"] == label][:SHOTS_PER_LABEL]]


def label(config: dict, data: Path, rows: int, cache: Path):
    """Label the first ``rows`` rows with a loaded model; returns the result and its timing."""
    from autolabel_lite import LabelingAgent
    from autolabel_lite.prompt import Prompt

    agent = LabelingAgent(config, cache=cache)
    provider = agent.provider
    # Load the model and run a first pass before the clock starts (the first passes of a process are slow).
    asyncio.run(provider.score(Prompt(user="Warm up."), ["ok"]))
    timing = Timing()
    forward = provider._forward

    def timed_forward(ids, *args, **kwargs):
        started = time.perf_counter()
        try:
            return forward(ids, *args, **kwargs)
        finally:
            timing.forward_passes.append((len(ids), time.perf_counter() - started))

    provider._forward = timed_forward  # instrumentation only: the pass itself is unchanged
    started = time.perf_counter()
    result = agent.run(data, max_rows=rows, progress=False)
    timing.seconds = time.perf_counter() - started
    if result.stats.errors:
        raise RuntimeError(f"rows failed: {result.summary()}")
    return agent, result, timing


def shared_prefix_tokens(agent, data: Path) -> tuple[float, float]:
    """Mean prompt length in tokens, and the length of the prefix the first two rows' prompts share."""
    provider, labeler_rows = agent.provider, list(agent.open_dataset(data).rows(max_rows=2))
    examples = [agent.prompt_builder.render_example(e) for e in agent.selector.select(labeler_rows[0])]
    ids = [provider._prompt_ids(agent.prompt_builder.render(row, examples)) for row in labeler_rows]
    shared = next((i for i, (a, b) in enumerate(zip(*ids)) if a != b), min(map(len, ids)))
    return sum(map(len, ids)) / len(ids), shared


def compare(reused, fresh) -> tuple[int, float]:
    """Rows whose label differs, and the largest difference in label probabilities or logprobs."""
    differing, largest = 0, 0.0
    for (_, a), (_, b) in zip(reused.rows(), fresh.rows()):
        differing += a.label != b.label
        pairs = [(a.details["label_probs"][k], b.details["label_probs"][k]) for k in a.details["label_probs"]]
        pairs += list(zip(a.details["logprobs"], b.details["logprobs"]))
        largest = max([largest, *(abs(x - y) for x, y in pairs)])
    return differing, largest


def prefix_reuse_section(rows: int, workdir: Path) -> list[str]:
    data = DATA / "civil_comments" / "seed.csv"
    shots = fixed_shots(data, skip=rows)
    config = seed_config(
        "civil_comments", few_shot_examples=shots, few_shot_num=len(shots), few_shot_selection="fixed"
    )
    results = {}
    for reuse in (True, False):
        config["model"]["params"] = {"prefix_reuse": reuse}
        results[reuse] = label(config, data, rows, workdir / f"civil_reuse_{reuse}.sqlite")
        print(f"prefix_reuse={reuse}: {rows / results[reuse][2].seconds:.2f} rows/s", file=sys.stderr)
    agent, reused, with_reuse = results[True]
    _, fresh, without_reuse = results[False]
    prompt_tokens, shared = shared_prefix_tokens(agent, data)
    differing, largest = compare(reused, fresh)
    speedup = without_reuse.seconds / with_reuse.seconds
    return [
        f"civil_comments seed, first {rows} rows, {len(shots)} fixed shots: prompts of {prompt_tokens:.0f} tokens on average, "
        f"of which the first {shared} are the same for every row.",
        "",
        "| prefix_reuse | rows/s | s/row | tokens through the model per row | model forward share | target |",
        "|---|---:|---:|---:|---:|---|",
        f"| true | {rows / with_reuse.seconds:.2f} | {with_reuse.seconds / rows:.3f} | {with_reuse.tokens / rows:.0f} | {with_reuse.model_share:.0%} | ≥ {TARGET_SPEEDUP:.0f}× rows/s |",
        f"| false | {rows / without_reuse.seconds:.2f} | {without_reuse.seconds / rows:.3f} | {without_reuse.tokens / rows:.0f} | {without_reuse.model_share:.0%} | |",
        "",
        f"Speed-up: **{speedup:.2f}×**. Rows with a different label: {differing} of {rows}; "
        f"largest difference in label probabilities and logprobs: {largest:.1e} (tolerance {TOLERANCE:g}).",
    ]


def scoring_section(rows: int, workdir: Path) -> list[str]:
    lines = [
        "| config | labels K | rows | s/row (packed) | model forward share | one full prompt pass, s | K × full pass, s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("civil_comments", "banking"):
        config = seed_config(name, label_scoring="sum")
        data = DATA / name / "seed.csv"
        labels = len(config["prompt"]["labels"])
        _, _, timing = label(config, data, rows, workdir / f"{name}_scoring.sqlite")
        # One row without reuse: its first forward pass is the whole prompt from scratch.
        config["model"]["params"] = {"prefix_reuse": False}
        _, _, single = label(config, data, 1, workdir / f"{name}_full_pass.sqlite")
        full_pass = single.forward_passes[0][1]
        lines.append(
            f"| {name} | {labels} | {rows} | {timing.seconds / rows:.2f} | {timing.model_share:.0%} | {full_pass:.2f} | {labels * full_pass:.1f} |"
        )
        print(f"{name}: {timing.seconds / rows:.2f} s/row", file=sys.stderr)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40, help="civil_comments rows for the prefix-reuse comparison")
    parser.add_argument("--scoring-rows", type=int, default=4, help="rows per config for the K=2 vs K=77 comparison")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads (default: torch's, one per core); 1 keeps timings stable on a machine busy with other "
        "work, where two threads wait on each other at every operation",
    )
    parser.add_argument("--output", type=Path, help="also write the markdown here")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        sys.exit(f"error: benchmark seed sets not found at {DATA}")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="autolabel_local_") as tmp:
        reuse = prefix_reuse_section(args.rows, Path(tmp))
        scoring = scoring_section(args.scoring_rows, Path(tmp))
    body = "\n".join(["**Prefix reuse**", "", *reuse, "", "**Packed label scoring, K=2 vs K=77**", "", *scoring])
    publish("local_model.py", argv, body, args.output, machine=f", no GPU, torch threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
