"""The HTML report of a run: time, size and memory of ``result.write_report`` against the CSV export.

A job of ``--rows`` rows (two labels, ground truth in the data, confidence on, a
target_completion threshold) is labeled once against the fake server; then the CSV is
written, then the report twice (timed; the first imports matplotlib), then once more under tracemalloc for its peak
Python allocation (numpy's arrays included).

    python bench/html_report.py --rows 20000

prints the markdown quoted in bench/RESULTS.md (``--output FILE`` also writes it to FILE).

This is a benchmark, run by hand; the tests never run it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from report import publish  # noqa: E402  (bench/ is not a package)
from throughput import ServerProcess, task_config, write_reviews  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    from autolabel_lite import LabelingAgent

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--output", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="autolabel_report_") as tmp, ServerProcess() as server:
        workdir = Path(tmp)
        data = write_reviews(workdir / "reviews.csv", args.rows)
        config = task_config(server.base_url, args.concurrency)
        config["model"]["compute_confidence"] = True
        config["threshold"] = {"policy": "target_completion", "target": 0.8}
        started = time.perf_counter()
        result = LabelingAgent(config, cache=workdir / "cache.sqlite").run(data, progress=False)
        label_seconds = time.perf_counter() - started

        started = time.perf_counter()
        result.to_csv(workdir / "labeled.csv")
        csv_seconds = time.perf_counter() - started
        timings = []
        for name in ("run.html", "warm.html"):  # the first also imports matplotlib
            started = time.perf_counter()
            report = result.write_report(workdir / name)
            timings.append(time.perf_counter() - started)
        tracemalloc.start()
        result.write_report(workdir / "again.html")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        body = f"""
| rows | labeling | CSV export | report (first, with matplotlib's import) | report again | report size | report peak Python allocation |
|---:|---:|---:|---:|---:|---:|---:|
| {args.rows:,} | {label_seconds:.1f} s | {csv_seconds:.2f} s | {timings[0]:.2f} s | {timings[1]:.2f} s | {report.stat().st_size / 1000:.0f} kB | {peak / 1e6:.1f} MB |
"""
    publish("html_report.py", argv, body, args.output)


if __name__ == "__main__":
    main()
