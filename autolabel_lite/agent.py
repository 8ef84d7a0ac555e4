"""LabelingAgent: the public entry point that runs config → dataset → prompt → model →
parse → confidence → policy and hands back a LabelingResult for export."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

from .cache import Cache, RowResult, stable_hash
from .config import TaskConfig, load_config
from .dataset import Dataset, row_digest
from .errors import ConfigError
from .fewshot import ExampleSelector, load_examples
from .labeler import Labeler
from .plan import Plan, build_plan
from .policy import SavedThreshold, check_applicable, decision_for_run, saved_threshold_path
from .prompt import PromptBuilder
from .providers import Provider, create_provider
from .result import LabelingResult, RunStats
from .tasks import get_task_class

# A file path, a pandas DataFrame, a datasets.Dataset, a list of dicts, or an opened Dataset.
DataSource = Any


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
        self.task = get_task_class(self.config.task_type)(self.config)
        self.prompt_builder = PromptBuilder(self.task)
        self.examples = load_examples(self.config, self.task.input_columns)
        self.selector = ExampleSelector(self.config, self.examples)
        # Surface template errors now, not mid-run: render every example and a whole prompt.
        examples = [self.prompt_builder.render_example(example) for example in self.examples]
        self.prompt_builder.render(self.prompt_builder.content_free_rows[0], examples)
        self.cache_location = cache
        self._provider: Provider | None = None
        self._verifier: Provider | None = None

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            provider = create_provider(self.config.model)
            provider.check()
            self._provider = provider
        return self._provider

    @property
    def verifier(self) -> Provider:
        """The model that scores labels' confidence: ``confidence.verifier``, else the labeling model."""
        if self._verifier is None:
            verifier_config = self.config.confidence.verifier
            verifier = create_provider(verifier_config) if verifier_config is not None else self.provider
            if verifier.identity() == self.provider.identity():
                verifier = self.provider  # one model in memory, and its labeling logprobs are reusable
            verifier.check()
            self._verifier = verifier
        return self._verifier

    def open_dataset(self, dataset: "DataSource") -> Dataset:
        """The rows to label (a path, a pandas DataFrame, a datasets.Dataset, a list of dicts, or a Dataset), checked."""
        data = dataset if isinstance(dataset, Dataset) else Dataset(dataset, delimiter=self.config.dataset.delimiter)
        data.require_columns(self.task.required_columns())
        return data

    def _fingerprint(self, with_threshold: bool) -> dict:
        """The config and model, minus settings that change speed or cost but not labels or confidences."""
        exclude: dict = {"model": {"api_key", "concurrency", "batch_size", "max_retries", "timeout", "pricing"}}
        if not with_threshold:
            exclude["threshold"] = True
        return {"config": self.config.model_dump(mode="json", exclude=exclude), "provider": self.provider.identity()}

    def run_key(self, data: Dataset) -> str:
        """Identifies a run for resuming: same labels config, same model, same data (file, or rows in memory)."""
        # The threshold decides acceptance, not labels: changing it must not relabel rows.
        fingerprint = self._fingerprint(with_threshold=False)
        return stable_hash({**fingerprint, "data": data.identity()})

    def tuning_key(self) -> str:
        """What a tuned threshold depends on."""
        return stable_hash(self._fingerprint(with_threshold=True))

    def saved_threshold_path(self) -> Path:
        return saved_threshold_path(Cache(self.cache_location).url, self.config.task_name, self.tuning_key())

    def plan(
        self,
        dataset: "DataSource",
        seed: "DataSource | int | None" = None,
        max_rows: int | None = None,
        *,
        plot: str | os.PathLike | None = None,
        progress: bool | None = None,
    ) -> Plan:
        """Estimate the run on ``dataset`` (first ``max_rows``) and, given labeled seed rows
        (a file or rows in memory, or ``N`` for the first N rows of ``dataset``), tune and save the threshold.

        The quality-vs-completion plot goes to ``plot`` (default: next to the dataset file;
        in the working directory for data in memory).
        """
        if isinstance(seed, int) and seed < 1:
            raise ConfigError("seed: the number of seed rows must be at least 1")
        data = self.open_dataset(dataset)
        if plot is None:
            stem = f"{data.path.stem}_" if data.path is not None else ""
            plot = (data.path.parent if data.path is not None else Path()) / f"{stem}{self.config.task_name}_plan.png"
        return build_plan(self, data, seed, max_rows, Path(plot), progress)

    def run(self, dataset: "DataSource", max_rows: int | None = None, *, progress: bool | None = None) -> LabelingResult:
        """Label every row (or the first ``max_rows``), apply the threshold policy and return the result.

        ``dataset`` is a path (CSV, JSONL, Parquet), a pandas DataFrame, a datasets.Dataset or a list of dicts.

        Rows already labeled by an interrupted run of the same job are not labeled again.
        """
        saved = SavedThreshold.load(self.saved_threshold_path(), self.tuning_key()) if self.config.threshold else None
        check_applicable(self.config.threshold, saved)  # before any labeling
        result = self.label(dataset, max_rows, progress=progress)
        result.apply_threshold(decision_for_run(self.config.threshold, saved, result.acceptable_confidences))
        return result

    def label(self, dataset: "DataSource", max_rows: int | None = None, *, progress: bool | None = None) -> LabelingResult:
        """Label the rows without applying the threshold policy (plan() uses this on seed rows)."""
        data = self.open_dataset(dataset)
        cache = Cache(self.cache_location)  # a bad cache location is reported before any model loads
        provider = self.provider
        run_key = self.run_key(data)
        verifier = self.verifier if self.config.model.compute_confidence else None
        labeler = Labeler(self.task, provider, self.prompt_builder, self.selector, cache, verifier)
        show = sys.stderr.isatty() if progress is None else progress
        started = time.perf_counter()
        # The collector skips what was alive before the run (the imported libraries, ~400k
        # objects once datasets has imported torch): every full collection walked them all,
        # ~170 ms of CPU each, 100-240 us per row at latency 0.
        gc.freeze()
        try:
            stats = asyncio.run(self._label_all(data, max_rows, labeler, cache, run_key, show))
        finally:
            gc.unfreeze()
        stats.seconds = time.perf_counter() - started
        return LabelingResult(self, data, cache, run_key, max_rows, stats)

    async def _label_all(self, data, max_rows, labeler: Labeler, cache: Cache, run_key: str, show: bool) -> RunStats:
        from tqdm import tqdm

        await labeler.prepare(progress=show)
        done = cache.done_rows(run_key)
        stats = RunStats(resumed=0)
        bar = tqdm(total=max_rows, disable=not show, unit="row", desc=self.config.task_name)
        rows = enumerate(self.selector.ahead(data.rows(max_rows)))

        async def worker() -> None:
            # Each worker pulls the next row when it is free: as many rows in flight as the
            # provider's concurrency, and no per-row task or wait-set bookkeeping (at 128 in
            # flight, asyncio.wait over a window of tasks cost a third of the client's CPU).
            for index, row in rows:
                stats.rows += 1
                if index in done:
                    stats.resumed += 1
                    bar.update(1)
                    continue
                try:
                    result = await labeler.label(index, row)
                except ConfigError:
                    raise
                except Exception as exc:  # one row's failure must not end the run
                    result = RowResult(index, error=describe_error(exc), final=False)
                result.input_digest = row_digest(row, self.task.input_columns)
                # Committed before it counts: after kill -9 a resumed run redoes only the rows in flight,
                # and their answered calls come from the cache (each was stored as it arrived).
                cache.save_row(run_key, result)
                stats.add(result)
                bar.update(1)

        workers = [asyncio.ensure_future(worker()) for _ in range(labeler.provider.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            bar.close()
            stats.model_calls = labeler.model_calls
            await labeler.aclose()
        return stats
