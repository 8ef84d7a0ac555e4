"""Rows/s of the Ray engine with 1, 2 and 4 actors next to the local engine with as many
requests in flight, against the fake OpenAI server (its own process) at 100 ms and 0 ms.

Each setting labels a small and a large file with a fresh cache; the start-up of a run
(Ray's actor pool: each actor imports the library and builds its labeler) is the small
run's time, and the steady rate is the extra rows over the extra seconds of the large
run. Ray is started once (``ray.init(num_cpus=2)``, as on the CI machine) and not counted.

    python bench/ray_throughput.py                      # SQLite cache
    python bench/ray_throughput.py --cache postgresql+psycopg://…  # a new database per run, dropped after

prints the markdown quoted in bench/RESULTS.md. A benchmark, run by hand; tests never run it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from report import publish  # noqa: E402  (bench/ is not a package)
from throughput import ServerProcess, task_config, write_reviews  # noqa: E402

from autolabel_lite.engines.ray_data import ROWS_PER_BATCH_PER_REQUEST  # noqa: E402


@contextlib.contextmanager
def fresh_cache(template: str | None, workdir: Path) -> Iterator[str]:
    """A new SQLite file, or a new database on the PostgreSQL server of ``template`` (dropped after)."""
    if template is None:
        yield str(workdir / f"cache_{uuid.uuid4().hex}.sqlite")
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"autolabel_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(template, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(template).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def timed_run(base_url: str, concurrency: int, data: Path, cache: str, workers: int | None) -> float:
    from autolabel_lite import LabelingAgent

    agent = LabelingAgent(task_config(base_url, concurrency), cache=cache)
    engine = {"engine": "ray", "workers": workers} if workers else {}
    started = time.perf_counter()
    result = agent.run(data, progress=False, **engine)
    seconds = time.perf_counter() - started
    if result.stats.labeled != result.stats.rows or result.stats.model_calls != result.stats.rows:
        raise RuntimeError(f"not every row labeled once: {result.summary()}")
    return seconds


def measure(base_url: str, latency: float, engine: str, actors: int, args, workdir: Path) -> str:
    """One table line: ``actors`` Ray actors of ``args.concurrency`` requests each, or the
    local engine with the same requests in flight."""
    in_flight = actors * args.concurrency
    ideal = in_flight / latency if latency else None
    # At latency 0 the machine is the limit: sized by a rough 300 rows/s.
    large = int(min(ideal or 300, 400) * args.seconds)
    small = ROWS_PER_BATCH_PER_REQUEST * in_flight  # one batch per actor
    concurrency, workers = (args.concurrency, actors) if engine == "ray" else (in_flight, None)
    times = {}
    for rows in (small, large):
        data = write_reviews(workdir / f"reviews_{uuid.uuid4().hex}.csv", rows)
        with fresh_cache(args.cache, workdir) as cache:
            times[rows] = timed_run(base_url, concurrency, data, cache, workers)
    steady = (large - small) / max(times[large] - times[small], 1e-9)
    name = f"ray, {actors} actor{'s' if actors > 1 else ''} × {args.concurrency}" if engine == "ray" else f"local, concurrency {in_flight}"
    print(f"latency {latency:g}s {name}: steady {steady:.1f} rows/s, start-up {times[small]:.1f}s", file=sys.stderr)
    return (
        f"| {latency * 1000:.0f} ms | {name} | {in_flight} | {'∞' if ideal is None else f'{ideal:.0f}'} | {small}, {large} | "
        f"{times[small]:.1f} | {steady:.1f} | {'—' if ideal is None else f'{steady / ideal:.0%}'} | {large / times[large]:.1f} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latencies", default="0.1,0", help="server latencies in seconds, comma-separated")
    parser.add_argument("--workers", default="1,2,4", help="Ray actor counts, comma-separated")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight per actor (the local engine gets actors × this)")
    parser.add_argument("--seconds", type=float, default=15.0, help="rough labeling time of a large run at the ideal rate")
    parser.add_argument("--cache", help="a PostgreSQL URL to create each run's database on (default: SQLite files)")
    parser.add_argument("--output", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    lines = [
        "| latency | engine | requests in flight | ideal rows/s | rows (small, large) | start-up s | steady rows/s | steady / ideal | end-to-end rows/s (large) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="autolabel_ray_bench_") as tmp:
        workdir = Path(tmp)
        for latency in [float(v) for v in args.latencies.split(",")]:
            with ServerProcess(latency) as server:
                # For each actor count: the local engine with as many requests in flight, then Ray.
                for actors in [int(v) for v in args.workers.split(",")]:
                    for engine in ("local", "ray"):
                        lines.append(measure(server.base_url, latency, engine, actors, args, workdir))
    ray.shutdown()
    cache = "PostgreSQL" if args.cache else "SQLite"
    publish("ray_throughput.py", argv, "\n".join(lines), args.output, machine=f", cache: {cache}")


if __name__ == "__main__":
    main()
