"""Memory: peak RSS of ``autolabel-lite run`` on a 1,000,000-row CSV generated on the fly.

The CLI labels the file against the fake server (its own process, latency 0) and writes
the labeled rows (CSV, or ``--format parquet`` / ``jsonl``); this script samples the CLI's
resident set size as rows are saved, so the table shows whether memory stays flat as rows grow, and reads its peak RSS from the
kernel when it exits.

    python bench/memory.py

prints the markdown quoted in bench/RESULTS.md (``--output FILE`` also writes it to FILE).

Expect about an hour for a million rows on 2 cores (the run is CPU-bound in the client).
``--prefilled`` writes every row's result into the cache first (one bulk insert, labels as
the fake server gives them), so the CLI resumes all rows and only exports: the export's
memory in minutes, for comparing output formats.
This is a benchmark, run by hand; the tests never run it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from report import publish  # noqa: E402  (bench/ is not a package)
from throughput import ServerProcess, task_config, write_reviews  # noqa: E402

TARGET_MB = 1024
SAMPLE_SECONDS = 5.0
CHECKPOINTS = (0.01, 0.1, 0.25, 0.5, 0.75, 1.0)


def rss_mb(pid: int) -> float | None:
    """Current resident set size of ``pid`` from /proc (Linux), None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def saved_rows(cache: Path) -> int:
    try:
        with sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=30) as connection:
            return connection.execute("SELECT COUNT(*) FROM row_results").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def prefill(config: Path, data: Path, cache: Path) -> None:
    """Every row's result, as a finished run leaves it, stored under the key the CLI's run will use."""
    from autolabel_lite import LabelingAgent
    from autolabel_lite.cache import Cache
    from autolabel_lite.dataset import row_digest

    agent = LabelingAgent(config, cache=cache)
    rows = agent.open_dataset(data)
    run_key = agent.run_key(rows)
    Cache(cache).close()  # creates the tables
    records = (
        (run_key, index, row["gold"], 0.5 + (index % 50) / 100, "", "{}", True, row_digest(row, agent.task.input_columns))
        for index, row in enumerate(rows.rows())
    )
    with sqlite3.connect(cache) as connection:
        connection.executemany(
            "INSERT INTO row_results (run_key, row_index, label, confidence, error, details, final, input_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            records,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--format", choices=["csv", "parquet", "jsonl"], default="csv", help="the labeled output's type")
    parser.add_argument("--prefilled", action="store_true", help="store every row's result first: measure resume + export only")
    parser.add_argument("--output", type=Path, help="also write the markdown here")
    args = parser.parse_args(argv)
    samples: list[tuple[float, int, float]] = []  # (seconds, rows saved, RSS MB)
    with tempfile.TemporaryDirectory(prefix="autolabel_memory_") as tmp, ServerProcess() as server:
        workdir = Path(tmp)
        data = write_reviews(workdir / "reviews.csv", args.rows)
        cache = workdir / "cache.sqlite"
        config = workdir / "task.json"
        config.write_text(json.dumps(task_config(server.base_url, args.concurrency)), encoding="utf-8")
        if args.prefilled:
            prefill(config, data, cache)
        command = [sys.executable, "-m", "autolabel_lite.cli", "run", str(config), str(data), "--output", str(workdir / f"labeled.{args.format}")]
        command += ["--cache", str(cache), "--no-progress"]
        started = time.monotonic()
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        while process.poll() is None:
            rss = rss_mb(process.pid)
            if rss is not None:
                samples.append((time.monotonic() - started, saved_rows(cache), rss))
                print(f"{samples[-1][0]:7.0f}s  {samples[-1][1]:>9,} rows saved  RSS {rss:6.0f} MB", file=sys.stderr)
            time.sleep(SAMPLE_SECONDS)
        stderr = process.stderr.read()
        seconds = time.monotonic() - started
        # The kernel's high-water mark for the CLI (the largest child waited for; the server is still running).
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if process.returncode != 0 or f"wrote {args.rows} rows" not in stderr:
            raise RuntimeError(f"the run failed (status {process.returncode}):\n{stderr}")

    if args.prefilled:  # every row is saved from the start: RSS over time instead
        shown = samples[:: max(1, len(samples) // 12)]
        lines = ["| seconds | RSS, MB |", "|---:|---:|", *(f"| {at:.0f} | {rss:.0f} |" for at, _, rss in shown)]
    else:
        lines = ["| rows saved | RSS, MB |", "|---:|---:|"]
        for share in CHECKPOINTS:
            reached = next(((rows, rss) for _, rows, rss in samples if rows >= share * args.rows), samples[-1][1:])
            lines.append(f"| {reached[0]:,} | {reached[1]:.0f} |")
    body = "\n".join(
        [
            f"{args.rows:,} rows {'resumed from a prefilled cache' if args.prefilled else 'labeled'} and exported to {args.format} in {seconds / 60:.0f} min ({args.rows / seconds:.0f} rows/s, concurrency {args.concurrency}). "
            f"Peak RSS of the CLI: **{peak_mb:.0f} MB** (target < {TARGET_MB} MB).",
            "",
            *lines,
            f"| {'end (export and summary)' if args.prefilled else 'export (after labeling)'} | peak {peak_mb:.0f} |",
        ]
    )
    publish("memory.py", argv, body, args.output)


if __name__ == "__main__":
    main()
