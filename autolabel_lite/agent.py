"""LabelingAgent: the public entry point that runs config → dataset → prompt → model →
parse → confidence → policy and hands back a LabelingResult for export."""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

from .cache import Cache, stable_hash
from .config import TaskConfig, load_config
from .dataset import Dataset
from .engines import ENGINES
from .errors import ConfigError
from .fewshot import ExampleSelector, load_examples
from .labeler import Labeler
from .plan import Plan, build_plan
from .policy import SavedThreshold, check_applicable, decision_for_run, saved_threshold_path
from .prompt import PromptBuilder
from .providers import Provider, create_provider
from .result import LabelingResult
from .tasks import get_task_class

# A file path, a pandas DataFrame, a datasets.Dataset, a list of dicts, or an opened Dataset.
DataSource = Any


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

    def run(
        self,
        dataset: "DataSource",
        max_rows: int | None = None,
        *,
        progress: bool | None = None,
        engine: str = "local",
        ray_address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float | None = None,
    ) -> LabelingResult:
        """Label every row (or the first ``max_rows``), apply the threshold policy and return the result.

        ``dataset`` is a path (CSV, JSONL, Parquet), a pandas DataFrame, a datasets.Dataset or a list of dicts.

        Rows already labeled by an interrupted run of the same job are not labeled again.
        ``engine="ray"`` labels on Ray Data: ``workers`` actors (default 1), each with
        ``gpus_per_worker`` GPUs, on the cluster at ``ray_address`` (default: a local one).
        """
        saved = SavedThreshold.load(self.saved_threshold_path(), self.tuning_key()) if self.config.threshold else None
        check_applicable(self.config.threshold, saved)  # before any labeling
        result = self.label(
            dataset, max_rows, progress=progress, engine=engine, ray_address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker
        )
        result.apply_threshold(decision_for_run(self.config.threshold, saved, result.acceptable_confidences))
        return result

    def label(
        self,
        dataset: "DataSource",
        max_rows: int | None = None,
        *,
        progress: bool | None = None,
        engine: str = "local",
        ray_address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float | None = None,
    ) -> LabelingResult:
        """Label the rows without applying the threshold policy (plan() uses this on seed rows)."""
        ray_options = _ray_options(engine, ray_address, workers, gpus_per_worker)
        if engine == "ray":
            from .engines.ray_data import import_ray

            import_ray()  # a missing extra is reported before anything else
        data = self.open_dataset(dataset)
        cache = Cache(self.cache_location)  # a bad cache location is reported before any model loads
        run_key = self.run_key(data)
        show = sys.stderr.isatty() if progress is None else progress
        started = time.perf_counter()
        if engine == "ray":
            from .engines.ray_data import label_on_ray

            # A bad setting fails here in one line, not in every actor's traceback.
            self.labeler(cache)
            # Each actor builds its own labeler from the config: models and connections do not travel.
            make_labeler = functools.partial(build_labeler, self.config, cache.url)
            concurrency = self.provider.concurrency
            stats = label_on_ray(make_labeler, data, max_rows, cache, run_key, show, concurrency=concurrency, **ray_options)
        else:
            from .engines.local import label_locally

            stats = label_locally(self.labeler(cache), data, max_rows, cache, run_key, show)
        stats.seconds = time.perf_counter() - started
        return LabelingResult(self, data, cache, run_key, max_rows, stats)

    def labeler(self, cache: Cache) -> Labeler:
        """The labeling stage of this agent's config, its model calls cached in ``cache``."""
        verifier = self.verifier if self.config.model.compute_confidence else None
        return Labeler(self.task, self.provider, self.prompt_builder, self.selector, cache, verifier)


def build_labeler(config: TaskConfig, cache_location: str) -> Labeler:
    """A labeler for ``config`` with its own cache connection (what a Ray actor builds once)."""
    return LabelingAgent(config, cache=cache_location).labeler(Cache(cache_location))


def _ray_options(engine: str, address: str | None, workers: int | None, gpus_per_worker: float | None) -> dict[str, Any]:
    if engine not in ENGINES:
        raise ConfigError(f"engine: unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    given = {"ray_address": address, "workers": workers, "gpus_per_worker": gpus_per_worker}
    if engine != "ray":
        named = [name for name, value in given.items() if value is not None]
        if named:
            raise ConfigError(f"{named[0]}: only the ray engine takes it (engine=\"ray\", --engine ray)")
        return {}
    if workers is not None and workers < 1:
        raise ConfigError("workers: the ray engine needs at least 1 worker")
    if gpus_per_worker is not None and gpus_per_worker < 0:
        raise ConfigError("gpus_per_worker: cannot be negative")
    return {"address": address, "workers": workers or 1, "gpus_per_worker": gpus_per_worker or 0}
