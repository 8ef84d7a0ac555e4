"""NER on the embedded model (SmolLM2-135M-Instruct, CPU): free text vs structured output (issue 11).

The first N rows of the conll2003 seed set are labeled with ``task_configs/conll2003.json``
(provider ``embedded``) three times, each with a fresh SQLite cache and a freshly loaded
model (loaded and warmed up before the clock starts):

1. before: ``prompt.structured_output = false``; the model writes free text, which is parsed;
2. schema only: constrained decoding to the task's JSON schema, but entity strings are not
   required to come from the text (the task's ``copy_source`` is patched to return None);
3. schema + copy: the default, entity strings constrained to substrings of the input.

For each: rows, share of parseable rows (the output is a JSON object of entity lists and
the label is non-empty), strict and partial micro F1 (``result.metrics``), and wall
seconds per row. The seed set is read in place from ../shared/data (never copied).

    HF_HUB_OFFLINE=1 python bench/ner_structured.py --rows 40

prints the markdown quoted in bench/RESULTS.md. A benchmark, run by hand; the tests never run it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from report import publish  # noqa: E402  (bench/ is not a package)

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "conll2003" / "seed.csv"
NOT_PARSEABLE = "is not a JSON object of entity lists"
VARIANTS = {  # name: (structured_output, entities copied from the text)
    "before: free text, parsed": (False, False),
    "after: schema only": (True, False),
    "after: schema + entities copied from the text": (True, True),
}


def run_variant(structured: bool, copy: bool, rows: int, cache: Path) -> dict[str, float]:
    from autolabel_lite import LabelingAgent
    from autolabel_lite.prompt import Prompt

    config = json.loads((REPO / "task_configs" / "conll2003.json").read_text(encoding="utf-8"))
    config["prompt"]["structured_output"] = structured
    agent = LabelingAgent(config, cache=cache)
    if not copy:
        agent.task.copy_source = lambda row: None
    asyncio.run(agent.provider.score(Prompt(user="Warm up."), ["ok"]))  # load the model off the clock
    started = time.perf_counter()
    result = agent.run(DATA, max_rows=rows, progress=False)
    seconds = time.perf_counter() - started
    labeled = [res for _, res in result.rows()]
    parseable = sum(bool(res.label) and NOT_PARSEABLE not in (res.error or "") for res in labeled)
    metrics = result.metrics
    return {
        "rows": len(labeled),
        "parseable": parseable / len(labeled),
        "strict_f1": metrics["strict_f1"],
        "partial_f1": metrics["partial_f1"],
        "s_per_row": seconds / len(labeled),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=40, help="label the first ROWS rows (default 40)")
    args = parser.parse_args(argv)
    if not DATA.is_file():
        sys.exit(f"conll2003 seed set not found at {DATA}: this benchmark reads it in place")
    lines = [
        f"conll2003 seed, first {args.rows} rows, `task_configs/conll2003.json` (embedded SmolLM2-135M-Instruct, 2 few-shot examples).",
        "",
        "| variant | rows | parseable | strict micro F1 | partial micro F1 | s/row | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    with tempfile.TemporaryDirectory() as workdir:
        for i, (name, (structured, copy)) in enumerate(VARIANTS.items()):
            m = run_variant(structured, copy, args.rows, Path(workdir) / f"variant{i}.sqlite")
            print(f"{name}: {m}", file=sys.stderr)
            target = "≥ 95% parseable" if structured and copy else ""
            lines.append(
                f"| {name} | {m['rows']} | {m['parseable']:.0%} | {m['strict_f1']:.3f} | {m['partial_f1']:.3f} "
                f"| {m['s_per_row']:.2f} | {target} |"
            )
    publish("ner_structured.py", argv, "\n".join(lines), None)


if __name__ == "__main__":
    main()
