"""The local engine: the labeling stages on asyncio worker pools in this process."""

from __future__ import annotations

import asyncio
import gc

from ..cache import Cache
from ..dataset import Dataset
from ..result import RunStats
from . import StageRun, label_each


def label_locally(stages: list[StageRun], data: Dataset, max_rows: int | None, cache: Cache, run_key: str, show: bool) -> RunStats:
    # The collector skips what was alive before the run (the imported libraries, ~400k
    # objects once datasets has imported torch): every full collection walked them all,
    # ~170 ms of CPU each, 100-240 us per row at latency 0.
    gc.freeze()
    try:
        return asyncio.run(_label_all(stages, data, max_rows, cache, run_key, show))
    finally:
        gc.unfreeze()


async def _label_all(stages: list[StageRun], data: Dataset, max_rows: int | None, cache: Cache, run_key: str, show: bool) -> RunStats:
    from tqdm import tqdm

    first = stages[0].labeler
    for stage in stages:
        await stage.labeler.prepare(progress=show)
    done = cache.done_rows(run_key)
    stats = RunStats(resumed=0)
    bar = tqdm(total=max_rows, disable=not show, unit="row", desc=first.config.task_name)

    def pending():
        for index, row in enumerate(first.ahead(data.rows(max_rows))):
            stats.rows += 1
            if index in done:
                stats.resumed += 1
                bar.update(1)
                continue
            yield index, row

    def finished(result) -> None:
        # Committed before it counts: after kill -9 a resumed run redoes only the rows in flight,
        # and their answered calls come from the cache (each was stored as it arrived).
        cache.save_row(run_key, result)
        stats.add(result)
        bar.update(1)

    try:
        await label_each(stages, pending(), finished)
    finally:
        bar.close()
        stats.stage_calls = {stage.name: stage.labeler.model_calls for stage in stages}
        stats.model_calls = sum(stats.stage_calls.values())
        for stage in stages:
            await stage.labeler.aclose()
    return stats
