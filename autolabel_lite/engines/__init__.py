"""Executors of the labeling stages. Both run the same per-row code (``label_row``: label,
digest) with the same worker pools (``label_each``: one pool per cascade stage, a row passed
on to the next stage when its stage does not keep its label); they differ in where rows run
and how results are saved:

- ``local``: an asyncio worker pool in this process, each row committed as it finishes;
- ``ray``: Ray Data actor pools, one or many machines, each batch committed in one transaction.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..cache import RowResult
from ..dataset import row_digest
from ..errors import ConfigError
from ..labeler import Labeler

ENGINES = ("local", "ray")


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a row's ``_error`` column (never an API key: the SDK errors carry none)."""
    from ..providers.openai_api import describe_api_error

    return describe_api_error(exc)


async def label_row(labeler: Labeler, index: int, row: Mapping[str, Any]) -> RowResult:
    """One row's result, with the digest of the input it was made for; a failure is the row's error, not the run's."""
    try:
        result = await labeler.label(index, row)
    except ConfigError:
        raise
    except Exception as exc:  # one row's failure must not end the run
        result = RowResult(index, error=describe_error(exc), final=False)
    result.input_digest = row_digest(row, labeler.task.input_columns)
    return result


@dataclass
class StageRun:
    """A cascade stage as an engine runs it: its labeler, and whether its label of a row is kept
    (the last stage keeps every row; a row it does not accept is rejected there)."""

    name: str
    labeler: Labeler
    keeps: Callable[[RowResult], bool]


# Rows queued for a stage, per request it has in flight: a fast stage runs ahead of a slow
# one by this much and then waits, so rows waiting for a later stage stay few.
QUEUED_PER_REQUEST = 4


async def label_each(stages: Sequence[StageRun], rows: Iterable[tuple[int, Mapping[str, Any]]], finished: Callable[[RowResult], None]) -> None:
    """Label ``rows`` (index, row) through ``stages``, each with as many rows in flight as its
    provider's concurrency, handing each row's final result to ``finished`` as it arrives.
    Streaming: a row the first stage passes on starts on the next at once. In a cascade of
    several stages a result names the stage that labeled it (``details["stage"]``)."""
    pending = iter(rows)
    cascade = len(stages) > 1
    queues = [asyncio.Queue(QUEUED_PER_REQUEST * stage.labeler.provider.concurrency) for stage in stages[1:]]

    async def worker(number: int) -> None:
        # Each worker pulls the next row when it is free: as many rows in flight as the
        # provider's concurrency, and no per-row task or wait-set bookkeeping (at 128 in
        # flight, asyncio.wait over a window of tasks cost a third of the client's CPU).
        stage = stages[number]
        while (item := next(pending, None) if number == 0 else await queues[number - 1].get()) is not None:
            result = await label_row(stage.labeler, *item)
            if number + 1 < len(stages) and not stage.keeps(result):
                await queues[number].put(item)
                continue
            if cascade:
                result.details["stage"] = stage.name
            finished(result)

    async def pool(number: int) -> None:
        await asyncio.gather(*(worker(number) for _ in range(stages[number].labeler.provider.concurrency)))
        if number + 1 < len(stages):  # this stage is done: so is the next one once its queue is empty
            for _ in range(stages[number + 1].labeler.provider.concurrency):
                await queues[number].put(None)

    pools = [asyncio.ensure_future(pool(number)) for number in range(len(stages))]
    try:
        await asyncio.gather(*pools)
    finally:
        for task in pools:
            task.cancel()
        await asyncio.gather(*pools, return_exceptions=True)
