"""LabelingAgent: the public entry point that runs config → dataset → prompt → model →
parse → confidence → policy and hands back a LabelingResult for export."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from .cache import Cache, RowResult, stable_hash
from .config import TaskConfig, load_config
from .dataset import Dataset
from .errors import ConfigError
from .fewshot import ExampleSelector, load_examples
from .labeler import Labeler
from .prompt import PromptBuilder
from .providers import Provider, create_provider
from .result import LabelingResult, RunStats
from .tasks import get_task_class

# Results are written to the cache at least this often, so a killed run loses little work.
FLUSH_EVERY_ROWS = 64
FLUSH_EVERY_SECONDS = 1.0


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a row's ``_error`` column (never an API key: the SDK errors carry none)."""
    from .providers.openai_api import describe_api_error

    return describe_api_error(exc)


class LabelingAgent:
    """Label datasets with a task config.

    ``config`` is a path to a JSON file, a dict or a TaskConfig. ``provider``, ``model``
    and ``base_url`` override the config's model; ``cache`` is a SQLite path or a
    SQLAlchemy URL (default ``.autolabel_lite/cache.sqlite``).
    """

    def __init__(
        self,
        config: str | os.PathLike | dict | TaskConfig,
        *,
        provider: str | None = None,
        model: str | None = None,
        base_url: str | None = None,
        cache: str | os.PathLike | None = None,
        concurrency: int | None = None,
    ) -> None:
        overrides: dict[str, Any] = {
            "model.provider": provider,
            "model.name": model,
            "model.base_url": base_url,
            "model.concurrency": concurrency,
        }
        self.config = load_config(config, **overrides)
        if provider is not None and model is None:
            # A new provider does not inherit the old model's name (load_config skips None overrides).
            self.config.model.name = None
        self.task = get_task_class(self.config.task_type)(self.config)
        self.prompt_builder = PromptBuilder(self.task)
        self.examples = load_examples(self.config, self.task.input_columns)
        self.selector = ExampleSelector(self.config, self.examples)
        # Surface template errors now, not mid-run: render every example and a whole prompt.
        examples = [self.prompt_builder.render_example(example) for example in self.examples]
        self.prompt_builder.render(self.prompt_builder.content_free_rows[0], examples)
        self.cache_location = cache
        self._provider: Provider | None = None

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            provider = create_provider(self.config.model)
            provider.check()
            self._provider = provider
        return self._provider

    def open_dataset(self, dataset: str | os.PathLike) -> Dataset:
        data = Dataset(dataset, delimiter=self.config.dataset.delimiter)
        data.require_columns(self.task.required_columns())
        return data

    def run_key(self, data: Dataset) -> str:
        stat = data.path.stat()
        return stable_hash(
            {
                "config": self.config.model_dump(mode="json", exclude={"model": {"api_key"}}),
                "provider": self.provider.identity(),
                "data": [str(data.path.resolve()), stat.st_size, stat.st_mtime_ns],
            }
        )

    def run(self, dataset: str | os.PathLike, max_rows: int | None = None, *, progress: bool | None = None) -> LabelingResult:
        """Label every row (or the first ``max_rows``) and return the result.

        Rows already labeled by an interrupted run of the same job are not labeled again.
        """
        data = self.open_dataset(dataset)
        provider = self.provider
        cache = Cache(self.cache_location)
        run_key = self.run_key(data)
        labeler = Labeler(self.task, provider, self.prompt_builder, self.selector, cache)
        show = sys.stderr.isatty() if progress is None else progress
        started = time.perf_counter()
        stats = asyncio.run(self._label_all(data, max_rows, labeler, cache, run_key, show))
        stats.seconds = time.perf_counter() - started
        return LabelingResult(self, data, cache, run_key, max_rows, stats)

    async def _label_all(self, data, max_rows, labeler: Labeler, cache: Cache, run_key: str, show: bool) -> RunStats:
        from tqdm import tqdm

        done = cache.done_rows(run_key)
        stats = RunStats(resumed=0)
        limit = asyncio.Semaphore(labeler.provider.concurrency)
        window = max(4 * labeler.provider.concurrency, 16)
        finished: list[RowResult] = []
        last_flush = time.monotonic()
        bar = tqdm(total=max_rows, disable=not show, unit="row", desc=self.config.task_name)

        async def label_one(index: int, row: dict) -> RowResult:
            async with limit:
                try:
                    return await labeler.label(index, row)
                except ConfigError:
                    raise
                except Exception as exc:  # one row's failure must not end the run
                    return RowResult(index, error=describe_error(exc), final=False)

        def flush() -> None:
            nonlocal last_flush
            cache.put_calls(labeler.take_writes())
            cache.save_rows(run_key, finished)
            finished.clear()
            last_flush = time.monotonic()

        def collect(tasks) -> None:
            for task in tasks:
                result = task.result()
                stats.add(result)
                finished.append(result)
            bar.update(len(tasks))
            if len(finished) >= FLUSH_EVERY_ROWS or time.monotonic() - last_flush > FLUSH_EVERY_SECONDS:
                flush()

        pending: set[asyncio.Task] = set()
        try:
            for index, row in enumerate(data.rows(max_rows)):
                stats.rows += 1
                if index in done:
                    stats.resumed += 1
                    bar.update(1)
                    continue
                pending.add(asyncio.create_task(label_one(index, row)))
                if len(pending) >= window:
                    completed, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    collect(completed)
            while pending:
                completed, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                collect(completed)
        finally:
            for task in pending:
                task.cancel()
            flush()
            bar.close()
            stats.model_calls = labeler.model_calls
            await labeler.provider.aclose()
        return stats
