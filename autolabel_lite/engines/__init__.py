"""Executors of the labeling stage. Both run the same per-row code (``label_row``: label,
digest) with the same worker pool (``label_each``); they differ in where rows run and how
results are saved:

- ``local``: an asyncio worker pool in this process, each row committed as it finishes;
- ``ray``: Ray Data actor pools, one or many machines, each batch committed in one transaction.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterable, Mapping

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


async def label_each(labeler: Labeler, rows: Iterable[tuple[int, Mapping[str, Any]]], finished: Callable[[RowResult], None]) -> None:
    """Label ``rows`` (index, row) with as many in flight as the provider's concurrency,
    handing each result to ``finished`` as it arrives."""
    pending = iter(rows)

    async def worker() -> None:
        # Each worker pulls the next row when it is free: as many rows in flight as the
        # provider's concurrency, and no per-row task or wait-set bookkeeping (at 128 in
        # flight, asyncio.wait over a window of tasks cost a third of the client's CPU).
        for index, row in pending:
            finished(await label_row(labeler, index, row))

    workers = [asyncio.ensure_future(worker()) for _ in range(labeler.provider.concurrency)]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
