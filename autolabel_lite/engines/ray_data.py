"""The Ray engine: the labeling stage on Ray Data actor pools, on one machine or a cluster.

The input rows still to label become a Ray dataset; ``map_batches`` hands batches to an
actor pool of ``workers`` actors. Each actor builds its labeler (provider, prompt builder,
cache connection) once, labels each batch with the local engine's worker pool (so API
requests in flight = workers × concurrency) and saves the batch in one transaction.

Exactly once: Ray runs a task at least once (a dead actor's batch is retried, blocks lost
with a node are recomputed). Every answered model call is stored as it arrives and a
retried batch finds it in the cache; row results are written first-wins and a batch gets
back what is stored, so a row is labeled once and no call is paid for twice.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
from typing import Any, Callable

from ..cache import Cache
from ..dataset import Dataset
from ..errors import AutolabelError, ConfigError
from ..labeler import Labeler
from ..result import RunStats
from . import StageRun, label_each

# Fractions of a CPU: an actor mostly waits on its model server (API) or its GPU, and
# actors at a whole CPU each on a 2-core machine starved Ray's own tasks and hung silently.
ACTOR_CPUS = 0.25
# Rows per batch, per request in flight: a batch keeps the actor's requests in flight
# until its last few rows, and a retried batch redoes (from the cache) at most this many.
ROWS_PER_BATCH_PER_REQUEST = 8
# What a batch reports back to the driver, summed into the run's RunStats.
BATCH_STATS = ("labeled", "errors", "cache_hits", "model_calls", "unparsed_confidences")


def import_ray():
    """Ray, or a one-line error naming the extra that brings it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'autolabel-lite[ray]'") from None
    return ray


def label_on_ray(
    make_labeler: Callable[[], Labeler],
    data: Dataset,
    max_rows: int | None,
    cache: Cache,
    run_key: str,
    show: bool,
    *,
    concurrency: int,
    address: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0,
) -> RunStats:
    """Label ``data`` on Ray; ``make_labeler`` (picklable) builds each actor's labeler."""
    done = cache.done_rows(run_key)
    stats = RunStats(resumed=0, labelers=0)
    pending = []
    for index, row in enumerate(data.rows(max_rows)):
        stats.rows += 1
        if index in done:
            stats.resumed += 1
        else:  # JSON text: every value reaches the prompt as the exact string it was read as
            pending.append({"index": index, "row": json.dumps(row, ensure_ascii=False)})
    if not pending:
        return stats
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, logging_level=logging.INFO if show else logging.WARNING)
    try:
        nodes = [node for node in ray.nodes() if node["Alive"]]
        if len(nodes) > 1 and cache.engine.dialect.name == "sqlite":
            raise ConfigError(
                f"cache: a SQLite file cannot be shared by the {len(nodes)} nodes of a Ray cluster; "
                "use --cache postgresql+psycopg://…"
            )
        ray.data.DataContext.get_current().enable_progress_bars = show
        logging.getLogger("ray.data").setLevel(logging.INFO if show else logging.WARNING)
        labeled = ray.data.from_items(pending).map_batches(
            LabelBatches,
            fn_constructor_args=(make_labeler, run_key),
            compute=ray.data.ActorPoolStrategy(size=workers),
            batch_size=ROWS_PER_BATCH_PER_REQUEST * concurrency,
            batch_format="numpy",
            num_cpus=ACTOR_CPUS,
            num_gpus=gpus_per_worker or None,
        )
        labelers = set()
        for batch in labeled.iter_batches(batch_size=None, batch_format="numpy"):
            for name in BATCH_STATS:
                setattr(stats, name, getattr(stats, name) + int(batch[name].sum()))
            labelers.update(batch["labeler"].tolist())
        stats.labelers = len(labelers)
        return stats
    except Exception as exc:
        user_error = _user_error(exc)
        if user_error is not None:
            raise user_error from None
        if isinstance(exc, ray.exceptions.ActorDiedError) and "creation task" in str(exc):
            # Ray printed the actor's traceback; its message ends with the error that stopped it.
            reason = str(exc).strip().splitlines()[-1]
            raise ConfigError(f"ray: a labeling actor could not start: {reason}") from None
        raise
    finally:
        if started_here:
            ray.shutdown()


_LABELERS_BUILT = itertools.count()


class LabelBatches:
    """One Ray actor: builds its labeler once, then labels and saves a batch per call."""

    def __init__(self, make_labeler: Callable[[], Labeler], run_key: str) -> None:
        self.labeler = make_labeler()
        self.cache = self.labeler.cache
        self.run_key = run_key
        # One event loop for the actor's life: the provider's HTTP connections outlive a batch.
        self.loop = asyncio.new_event_loop()
        # The learned labeler fits on the examples once per actor (each actor computes the
        # examples' label scores or answers it finds no cached copy of; the first stored is kept).
        self.loop.run_until_complete(self.labeler.prepare())
        self.name = f"{socket.gethostname()}:{os.getpid()}:{next(_LABELERS_BUILT)}"  # counts labelers built

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        indices = [int(index) for index in batch["index"]]
        rows = self.labeler.ahead(json.loads(text) for text in batch["row"])
        results = []
        calls_before = self.labeler.model_calls
        stages = [StageRun(self.labeler.config.task_name, self.labeler, keeps=lambda result: True)]
        self.loop.run_until_complete(label_each(stages, zip(indices, rows), results.append))
        stored = self.cache.save_rows(self.run_key, results)  # a retried batch gets back its first results
        stats = RunStats(model_calls=self.labeler.model_calls - calls_before)
        for result in results:
            first = stored[result.index]
            first.cache_hit = result.cache_hit
            stats.add(first)
        # One summary row per batch: the results themselves are in the cache, read back at export.
        return {"labeler": [self.name], **{name: [getattr(stats, name)] for name in BATCH_STATS}}


def _user_error(exc: BaseException) -> AutolabelError | None:
    """The one-line error inside a Ray task's failure (a bad setting seen by an actor)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, AutolabelError):
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__
    return None
