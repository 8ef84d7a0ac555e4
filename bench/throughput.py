"""Throughput of the labeling pipeline against an OpenAI-compatible server on loopback.

For every latency × concurrency cell, the same rows are labeled twice against the fake
server (bench/fake_openai_server.py), which runs in its own process so its CPU does not
compete with the client's event loop:

* pipeline: ``LabelingAgent.run`` end to end (render, HTTP through the ``openai`` SDK,
  parse, cache write) with a fresh cache;
* bare client: ``AsyncOpenAI`` alone firing the very same chat requests with the same
  concurrency; the SDK's own CPU cost per request makes this the ceiling.

Reported: rows/s of both, the ideal ``concurrency / latency``, and the pipeline's share of
``min(ideal, bare client)``. Row counts are sized for about ``--seconds`` per
measurement; each cell is measured ``--repeats`` times, alternating, and the best of each
side counts (other work on the machine can only slow a run down).

    python bench/throughput.py

prints the markdown quoted in bench/RESULTS.md (``--output FILE`` also writes it to FILE).

This is a benchmark, run by hand; the tests never run it.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from report import publish  # noqa: E402  (bench/ is not a package)

BENCH = Path(__file__).resolve().parent
LABELS = ["positive", "negative"]
# A rough per-request ceiling of the SDK on these machines, only used to size row counts.
EXPECTED_CEILING_ROWS_PER_SECOND = 400
MIN_ROWS, MAX_ROWS = 20, 3000
# Autolabel 0.0.16 (sequential, openai 0.28) on these machines: 1.97 ms/row at latency 0, 9.4 rows/s at 100 ms.
AUTOLABEL_0_0_16 = {0.0: 500.0, 0.1: 9.4}


class ServerProcess:
    """bench/fake_openai_server.py in a child process, on a free loopback port."""

    def __init__(self, latency: float = 0.0, *extra: str) -> None:
        command = [sys.executable, str(BENCH / "fake_openai_server.py"), "--port", "0", "--latency", str(latency), *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        banner = self.process.stdout.readline()  # "fake OpenAI server at http://127.0.0.1:PORT/v1 (...)"
        if " at " not in banner:
            self.process.kill()
            raise RuntimeError(f"the fake server did not start: {banner!r}")
        self.base_url = banner.split(" at ", 1)[1].split()[0]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_reviews(path: Path, rows: int) -> Path:
    """``rows`` distinct one-line reviews (so no two rows share a cache entry), each naming its label."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "gold"])
        for index in range(rows):
            label = LABELS[index % 2]
            writer.writerow([f"Review {index}: a {label} experience with this product overall.", label])
    return path


def task_config(base_url: str, concurrency: int) -> dict:
    """A two-label classification config for the ``openai`` provider, in the shape users write."""
    return {
        "task_name": "sentiment",
        "task_type": "classification",
        "dataset": {"input_columns": ["review"], "label_column": "gold"},
        "model": {"provider": "openai", "name": "fake-model", "base_url": base_url, "concurrency": concurrency},
        "prompt": {
            "task_guidelines": "You are an expert at understanding product reviews. Classify the sentiment of the review.",
            "output_guidelines": "Answer with the label only.",
            "labels": list(LABELS),
        },
    }


@dataclass
class Cell:
    latency: float
    concurrency: int
    rows: int
    pipeline: float  # rows/s
    bare: float  # requests/s

    @property
    def ideal(self) -> float:
        return math.inf if self.latency == 0 else self.concurrency / self.latency

    @property
    def bound(self) -> float:
        return min(self.ideal, self.bare)


def rows_for(latency: float, concurrency: int, seconds: float) -> int:
    expected = min(concurrency / latency if latency else math.inf, EXPECTED_CEILING_ROWS_PER_SECOND)
    return int(min(max(expected * seconds, MIN_ROWS), MAX_ROWS))


def label_with_pipeline(base_url: str, concurrency: int, data: Path, cache: Path) -> tuple[float, list[dict]]:
    """Seconds for ``LabelingAgent.run`` over ``data``, and the chat request it sends per row
    (its messages and, with structured output, its ``response_format``)."""
    from autolabel_lite import LabelingAgent
    from autolabel_lite.structured import response_format

    agent = LabelingAgent(task_config(base_url, concurrency), cache=cache)
    started = time.perf_counter()
    result = agent.run(data, progress=False)
    seconds = time.perf_counter() - started
    if result.stats.labeled != result.stats.rows or result.stats.errors:
        raise RuntimeError(f"the pipeline did not label every row: {result.summary()}")
    schema = agent.task.output_schema() if agent.config.prompt.structured_output else None
    shape = {"response_format": response_format(schema, "answer")} if schema else {}
    requests = [{"messages": agent.prompt_builder.render(row).messages, **shape} for row in agent.open_dataset(data).rows()]
    return seconds, requests


async def fire_bare_client(base_url: str, concurrency: int, requests: list[dict]) -> float:
    """Seconds for the bare AsyncOpenAI client to send every request, ``concurrency`` at a time,
    with the parameters the pipeline's openai provider sends."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0)
    pending = iter(requests)

    async def worker() -> None:
        for request in pending:
            await client.chat.completions.create(
                model="fake-model", **request, temperature=0.0, max_tokens=64, logprobs=True, top_logprobs=5
            )

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    await client.close()
    return seconds


def measure(latency: float, concurrency: int, seconds: float, repeats: int, workdir: Path) -> Cell:
    """Best of ``repeats`` alternating measurements of each (other work on the machine only slows runs down)."""
    rows = rows_for(latency, concurrency, seconds)
    data = write_reviews(workdir / f"reviews_{latency}_{concurrency}.csv", rows)
    pipeline, bare = [], []
    with ServerProcess(latency) as server:
        for repeat in range(repeats):
            cache = workdir / f"cache_{latency}_{concurrency}_{repeat}.sqlite"
            pipeline_seconds, requests = label_with_pipeline(server.base_url, concurrency, data, cache)
            pipeline.append(pipeline_seconds)
            bare.append(asyncio.run(fire_bare_client(server.base_url, concurrency, requests)))
    return Cell(latency, concurrency, rows, rows / min(pipeline), rows / min(bare))


def warm_up(workdir: Path) -> None:
    """One small run first, so imports and first-use costs stay out of the first cell."""
    data = write_reviews(workdir / "warm_up.csv", 50)
    with ServerProcess() as server:
        _, requests = label_with_pipeline(server.base_url, 8, data, workdir / "warm_up.sqlite")
        asyncio.run(fire_bare_client(server.base_url, 8, requests))


def report(cells: list[Cell]) -> str:
    lines = [
        "| latency | concurrency | rows | pipeline rows/s | bare client req/s | ideal c/latency | pipeline / ideal | pipeline / min(ideal, bare) | Autolabel 0.0.16 rows/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        ideal = "∞" if math.isinf(cell.ideal) else f"{cell.ideal:.0f}"
        of_ideal = "—" if math.isinf(cell.ideal) else f"{cell.pipeline / cell.ideal:.0%}"
        reference = AUTOLABEL_0_0_16.get(cell.latency)
        lines.append(
            f"| {cell.latency * 1000:.0f} ms | {cell.concurrency} | {cell.rows} | {cell.pipeline:.1f} | {cell.bare:.1f} | "
            f"{ideal} | {of_ideal} | {cell.pipeline / cell.bound:.0%} | {'' if reference is None else reference} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latencies", default="0,0.05,0.1,0.2", help="server latencies in seconds, comma-separated")
    parser.add_argument("--concurrency", default="1,8,32,128", help="concurrency limits, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="rough duration of each measurement")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per cell, alternating pipeline and bare client; the best counts")
    parser.add_argument("--output", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)
    latencies = [float(v) for v in args.latencies.split(",")]
    concurrencies = [int(v) for v in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="autolabel_throughput_") as tmp:
        workdir = Path(tmp)
        warm_up(workdir)
        cells = []
        for latency in latencies:
            for concurrency in concurrencies:
                cell = measure(latency, concurrency, args.seconds, args.repeats, workdir)
                print(f"latency {latency:g}s concurrency {concurrency}: pipeline {cell.pipeline:.1f} rows/s, bare client {cell.bare:.1f} req/s", file=sys.stderr)
                cells.append(cell)
    publish("throughput.py", argv, report(cells), args.output)


if __name__ == "__main__":
    main()
