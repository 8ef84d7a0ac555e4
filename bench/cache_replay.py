"""Cache replay: a 10,000-row job labeled once against the fake server, then again.

Three timings after the first (cold) run:

* rerun: the same job again, answered from the cache's per-row results (what a user
  gets re-running a finished or interrupted command): zero model calls;
* export: writing the labeled CSV of that rerun;
* replay: the same rows in another job (a copy of the file, so every row is labeled
  afresh) answered from the cache's model calls: zero model calls again.

    python bench/cache_replay.py

prints the markdown quoted in bench/RESULTS.md (``--output FILE`` also writes it to FILE).

This is a benchmark, run by hand; the tests never run it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from report import publish  # noqa: E402  (bench/ is not a package)
from throughput import ServerProcess, task_config, write_reviews  # noqa: E402

TARGET_ROWS_PER_SECOND = 5000


def timed_run(config: dict, data: Path, cache: Path):
    from autolabel_lite import LabelingAgent

    started = time.perf_counter()
    result = LabelingAgent(config, cache=cache).run(data, progress=False)
    return result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight during the cold run")
    parser.add_argument("--output", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="autolabel_replay_") as tmp, ServerProcess() as server:
        workdir = Path(tmp)
        data = write_reviews(workdir / "reviews.csv", args.rows)
        cache = workdir / "cache.sqlite"
        config = task_config(server.base_url, args.concurrency)

        cold, cold_seconds = timed_run(config, data, cache)
        rerun, rerun_seconds = timed_run(config, data, cache)
        started = time.perf_counter()
        written = rerun.to_csv(workdir / "labeled.csv")
        export_seconds = time.perf_counter() - started
        copy = shutil.copyfile(data, workdir / "reviews_copy.csv")
        replay, replay_seconds = timed_run(config, copy, cache)

    for result in (cold, rerun, replay):
        if result.stats.labeled != args.rows and result.stats.resumed != args.rows:
            raise RuntimeError(f"not every row was labeled: {result.summary()}")
    if written != args.rows:
        raise RuntimeError(f"exported {written} of {args.rows} rows")
    lines = [
        "| run | rows | model calls | seconds | rows/s | target |",
        "|---|---:|---:|---:|---:|---|",
        f"| cold (fake server, latency 0, concurrency {args.concurrency}) | {args.rows} | {cold.stats.model_calls} | {cold_seconds:.2f} | {args.rows / cold_seconds:,.0f} | |",
        f"| rerun of the same job (row results) | {args.rows} | {rerun.stats.model_calls} | {rerun_seconds:.2f} | {args.rows / rerun_seconds:,.0f} | zero calls, ≥ {TARGET_ROWS_PER_SECOND:,} rows/s |",
        f"| export of the rerun to CSV | {written} | 0 | {export_seconds:.2f} | {written / export_seconds:,.0f} | |",
        f"| same rows, new job (model-call cache) | {args.rows} | {replay.stats.model_calls} | {replay_seconds:.2f} | {args.rows / replay_seconds:,.0f} | zero calls, ≥ {TARGET_ROWS_PER_SECOND:,} rows/s |",
    ]
    publish("cache_replay.py", argv, "\n".join(lines), args.output)


if __name__ == "__main__":
    main()
