"""LabelingAgent: the public entry point that runs config → dataset → prompt → model →
parse → confidence → policy and hands back a LabelingResult for export.

The agent composes the config's stages (stage.py; one, unless the config has a ``cascade``)
and hands plan, the engines and the result the stages and data they need."""

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
from .engines import ENGINES, StageRun
from .errors import ConfigError
from .labeler import Labeler
from .plan import Plan, build_plan
from .policy import SavedThreshold, ThresholdDecision, accepts, check_applicable, decision_for_run, saved_threshold_path
from .result import LabelingResult
from .stage import Stage

# A file path, a pandas DataFrame, a datasets.Dataset, a list of dicts, or an opened Dataset.
DataSource = Any


class LabelingAgent:
    """Label datasets with a task config.

    ``config`` is a path to a JSON file, a dict or a TaskConfig. ``provider``, ``model``
    and ``base_url`` override the config's model (in a cascade, the last stage's); ``cache``
    is a SQLite path or a SQLAlchemy URL (default ``.autolabel_lite/cache.sqlite``).
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
        self.stages = [Stage(name, stage_config) for name, stage_config in self.config.stages()]
        # The last stage is the one the command line overrides, and the one a plain config has.
        last = self.stages[-1]
        self.task, self.prompt_builder, self.examples, self.selector = last.task, last.prompt_builder, last.examples, last.selector
        self.cache_location = cache

    @property
    def provider(self):
        """The last stage's model (the only one without a cascade)."""
        return self.stages[-1].provider

    @property
    def verifier(self):
        return self.stages[-1].verifier

    def open_dataset(self, dataset: "DataSource") -> Dataset:
        """The rows to label (a path, a pandas DataFrame, a datasets.Dataset, a list of dicts, or a Dataset), checked."""
        data = dataset if isinstance(dataset, Dataset) else Dataset(dataset, delimiter=self.config.dataset.delimiter)
        data.require_columns(self.task.required_columns())
        return data

    def run_key(self, data: Dataset, routes: "list[ThresholdDecision | None]" = ()) -> str:
        """Identifies a run for resuming: same labels config, same models, same data (file, or rows
        in memory) and, in a cascade, the thresholds of the stages before the last (``routes``):
        they decide which stage labels a row."""
        return run_key(self.stages, routes, data)

    def tuning_key(self) -> str:
        """What a tuned threshold depends on (in a cascade, every stage: a stage sees the rows the earlier ones pass on)."""
        fingerprints = [stage.fingerprint(with_threshold=True) for stage in self.stages]
        return stable_hash(fingerprints[0] if len(fingerprints) == 1 else {"stages": fingerprints})

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
        seed_data = seed if seed is None or isinstance(seed, int) else self.open_dataset(seed)

        def label_seed(stage: Stage, rows: Dataset, seed_rows: int | None) -> LabelingResult:
            return self._label([stage], [], rows, seed_rows, progress)

        saving = (self.saved_threshold_path(), self.tuning_key())
        return build_plan(self.stages, data, seed_data, max_rows, Path(plot), label_seed, Cache(self.cache_location), saving)

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

        In a cascade a row goes to the first stage, then on to the next while its stage's
        confidence is below that stage's threshold; the last stage's label stays on a row no
        stage accepts. Rows already labeled by an interrupted run of the same job are not labeled again.
        ``engine="ray"`` labels on Ray Data: ``workers`` actors (default 1), each with
        ``gpus_per_worker`` GPUs, on the cluster at ``ray_address`` (default: a local one).
        """
        threshold = self.config.threshold
        saved = SavedThreshold.load(self.saved_threshold_path(), self.tuning_key()) if threshold else None
        check_applicable(threshold, saved)  # before any labeling
        # The earlier stages' thresholds route rows, so they are known before labeling (config checks their policy).
        routes = [decision_for_run(threshold, saved, None, stage=number) for number in range(len(self.stages) - 1)]
        ray = {"engine": engine, "ray_address": ray_address, "workers": workers, "gpus_per_worker": gpus_per_worker}
        result = self._label(self.stages, routes, dataset, max_rows, progress, **ray)
        result.apply_thresholds([*routes, decision_for_run(threshold, saved, result.acceptable_confidences)])
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
        """Label the rows without applying the threshold policy (plan labels seed rows so, a stage at a time)."""
        if len(self.stages) > 1:
            raise ConfigError("label: a cascade passes rows on by its stages' thresholds; use run() (plan labels seed rows with each stage)")
        ray = {"engine": engine, "ray_address": ray_address, "workers": workers, "gpus_per_worker": gpus_per_worker}
        return self._label(self.stages, [], dataset, max_rows, progress, **ray)

    def _label(
        self,
        stages: list[Stage],
        routes: "list[ThresholdDecision | None]",
        dataset: "DataSource",
        max_rows: int | None,
        progress: bool | None,
        *,
        engine: str = "local",
        ray_address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float | None = None,
    ) -> LabelingResult:
        """Label rows through ``stages``, each but the last keeping the labels its decision in ``routes`` accepts."""
        ray_options = _ray_options(engine, ray_address, workers, gpus_per_worker)
        if engine == "ray":
            if len(stages) > 1:
                raise ConfigError(f"--engine ray: runs one stage for now; this cascade of {len(stages)} stages runs on the local engine (--engine local)")
            from .engines.ray_data import import_ray

            import_ray()  # a missing extra is reported before anything else
        data = self.open_dataset(dataset)
        cache = Cache(self.cache_location)  # a bad cache location is reported before any model loads
        key = run_key(stages, routes, data)
        show = sys.stderr.isatty() if progress is None else progress
        # Built before labeling: a bad setting fails here in one line (not in every Ray actor's
        # traceback), and the result learns which confidence method each stage resolved to.
        labelers = [stage.labeler(cache) for stage in stages]
        started = time.perf_counter()
        if engine == "ray":
            from .engines.ray_data import label_on_ray

            # Each actor builds its own labeler from the config: models and connections do not travel.
            make_labeler = functools.partial(build_labeler, self.config, cache.url)
            concurrency = stages[0].provider.concurrency
            stats = label_on_ray(make_labeler, data, max_rows, cache, key, show, concurrency=concurrency, **ray_options)
        else:
            from .engines.local import label_locally

            keeps = [functools.partial(accepts, decision) for decision in routes] + [lambda result: True]
            runs = [StageRun(stage.name, labeler, keep) for stage, labeler, keep in zip(stages, labelers, keeps)]
            stats = label_locally(runs, data, max_rows, cache, key, show)
        stats.seconds = time.perf_counter() - started
        scores_parts = any(labeler.confidence is not None and labeler.confidence.scores_parts for labeler in labelers)
        return LabelingResult(self.config, stages[-1].task, stages, data, cache, key, max_rows, stats, scores_parts)

    def labeler(self, cache: Cache) -> Labeler:
        """The labeling of this agent's one-stage config, its model calls cached in ``cache``."""
        return self.stages[-1].labeler(cache)


def run_key(stages: list[Stage], routes: "list[ThresholdDecision | None]", data: Dataset) -> str:
    """A one-stage run is keyed by its stage; a cascade by its stages and the thresholds that route rows."""
    if len(stages) == 1:
        return stages[0].run_key(data)
    # What routes a row: each threshold, and the calibration it applies to (not how it was chosen).
    decisions = [(decision.threshold, decision.calibration) if decision else None for decision in routes]
    return stable_hash({"stages": [stage.run_key(data) for stage in stages], "routes": decisions})


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
