"""Few-shot examples: load them from the config (a list, or a CSV path relative to it)
and choose what each row's prompt shows besides the row: which examples
(``prompt.few_shot_selection``) and, with ``prompt.label_selection``, which labels.

Similarity is cosine similarity of sentence embeddings (see embeddings.py). A row with
several input columns is embedded per column and the vectors averaged, so a long
context cannot crowd a short question out of the embedding model's window. Every
comparison is a matrix product over all examples (or labels) at once.
"""

from __future__ import annotations

import csv
import json
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .cache import Cache, stable_hash
from .config import TaskConfig
from .dataset import row_digest
from .embeddings import EmbeddingStore, create_embedder, normalise_rows
from .errors import ConfigError
from .tasks.classification import normalise

# Methods that compare the row with the examples.
SIMILARITY_METHODS = {"semantic_similarity", "max_marginal_relevance", "label_diversity"}
# Max marginal relevance re-ranks this many nearest examples per example wanted (at least MMR_MIN_POOL).
MMR_POOL_FACTOR = 4
MMR_MIN_POOL = 20
# Task types whose label set is a fixed list that label selection can shorten.
LABEL_SELECTION_TASKS = {"classification", "multilabel_classification"}
# Rows embedded per batch ahead of labeling. The embedder sorts them by length into forward passes
# of ``embedding.batch_size``: over 1024 rows those passes are padded 1.12x (banking, civil_comments:
# 1.10x) where 256 rows padded them 1.67x (1.45x), and the padding is computed like any token.
PREFETCH_ROWS = 1024


def _cell(value: Any) -> str:
    if value is None:
        return ""
    # Structured labels (NER's CategorizedLabels given inline in a JSON config) stay JSON.
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)


def load_examples(config: TaskConfig, required_columns: list[str]) -> list[dict[str, str]]:
    source = config.prompt.few_shot_examples
    if source is None:
        return []
    if isinstance(source, str):
        path = Path(source)
        path = path if path.is_absolute() else config.base_dir / path
        if not path.is_file():
            raise ConfigError(f"prompt.few_shot_examples: file not found: {path}")
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                examples = [dict(r) for r in csv.DictReader(handle, delimiter=config.dataset.delimiter)]
        except UnicodeDecodeError:
            raise ConfigError(f"prompt.few_shot_examples: {path} is not UTF-8 text") from None
    else:
        examples = [dict(e) for e in source]
    label_column = config.dataset.label_column or "label"
    for number, example in enumerate(examples):
        missing = [c for c in [*required_columns, label_column] if c not in example]
        if missing:
            raise ConfigError(f"prompt.few_shot_examples[{number}]: missing {', '.join(repr(m) for m in missing)}")
    return [{k: _cell(v) for k, v in e.items()} for e in examples]


def label_text(label: str, description: str | None) -> str:
    """What a label means, as text to embed: ``card_arrival`` reads as "card arrival"."""
    name = " ".join(label.replace("_", " ").split())
    return f"{name}: {description}" if description else name


def _top(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` highest scores, highest first (ties: lower index first)."""
    count = min(count, len(scores))
    if count <= 0:
        return np.zeros(0, dtype=int)
    part = np.argpartition(-scores, count - 1)[:count] if count < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


class RowEmbedder:
    """Embeds rows and examples the same way: per input column, averaged."""

    def __init__(self, config: TaskConfig, corpus: Iterable[str]) -> None:
        self.columns = list(config.dataset.input_columns)
        self.store = EmbeddingStore(create_embedder(config.embedding, corpus))

    def texts(self, row: Mapping[str, Any]) -> list[str]:
        return [str(row.get(column) or "") for column in self.columns]

    def _combine(self, parts: list[list[str]], flat_vectors: np.ndarray) -> np.ndarray:
        vectors = flat_vectors.reshape(len(parts), len(self.columns), -1)
        present = np.array([[bool(text.strip()) for text in texts] for texts in parts], dtype=np.float32)
        return normalise_rows((vectors * present[:, :, None]).sum(axis=1))

    def rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        parts = [self.texts(row) for row in rows]
        return self._combine(parts, self.store.rows([text for texts in parts for text in texts]))

    def kept(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Like ``rows``, for examples: vectors are kept in the cache database."""
        parts = [self.texts(row) for row in rows]
        return self._combine(parts, self.store.persistent([text for texts in parts for text in texts]))

    def prefetch(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self.store.prefetch([text for row in rows for text in self.texts(row)])


class LabelSelector:
    """Keeps, per row, the ``label_selection_count`` labels nearest to it.

    A label's score is the best of the row's similarity to the label's own text (its
    name, plus description) and to each labeled example of that label.
    """

    def __init__(self, config: TaskConfig, examples: list[dict[str, str]], embedder: RowEmbedder) -> None:
        self.labels = config.prompt.label_names
        self.count = config.prompt.label_selection_count
        self.embedder = embedder
        descriptions = config.prompt.label_descriptions
        self.label_texts = [label_text(label, descriptions.get(label)) for label in self.labels]
        by_norm = {normalise(label): index for index, label in enumerate(self.labels)}
        label_column = config.dataset.label_column or "label"
        # Examples whose label is not in the label list cannot vote for one.
        self._voters = [(e, by_norm[normalise(e[label_column])]) for e in examples if normalise(e.get(label_column, "")) in by_norm]
        self._vectors: tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray] | None] | None = None

    def prepare(self) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
        """(label vectors, example groups), embedded or read back from the cache on first use."""
        if self._vectors is None:
            self._vectors = (self.embedder.store.persistent(self.label_texts), self._example_groups())
        return self._vectors

    def _example_groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(example vectors sorted by label, start of each label's run, label of each run)."""
        if not self._voters:
            return None
        label_ids = np.array([label for _, label in self._voters])
        order = np.argsort(label_ids, kind="stable")
        vectors = self.embedder.kept([self._voters[i][0] for i in order])
        sorted_ids = label_ids[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        return vectors, starts, sorted_ids[starts]

    def scores(self, row_vectors: np.ndarray) -> np.ndarray:
        """(rows × labels) similarity of each row to each label."""
        label_vectors, groups = self.prepare()
        scores = row_vectors @ label_vectors.T
        if groups is not None:
            vectors, starts, run_labels = groups
            best_example = np.maximum.reduceat(row_vectors @ vectors.T, starts, axis=1)
            scores[:, run_labels] = np.maximum(scores[:, run_labels], best_example)
        return scores

    def select(self, row: Mapping[str, Any]) -> list[str] | None:
        if self.count >= len(self.labels):
            return None
        keep = _top(self.scores(self.embedder.rows([row]))[0], self.count)
        return [self.labels[i] for i in sorted(keep)]  # the config's order, not the retriever's guess


class ExampleSelector:
    """Chooses the few-shot examples for a row and, with ``prompt.label_selection``, its labels.

    - ``fixed``: the first ``few_shot_num`` examples;
    - ``random``: a sample seeded by ``few_shot_seed`` and the row, so reruns show the same examples;
    - ``semantic_similarity``: the nearest examples, nearest first;
    - ``max_marginal_relevance``: nearest first, each next one traded off (``mmr_lambda``)
      against its similarity to the examples already chosen;
    - ``label_diversity`` / ``label_diversity_random``: the nearest (or a random) example
      of each label first, then the nearest of the rest.
    """

    def __init__(self, config: TaskConfig, examples: list[dict[str, str]]) -> None:
        prompt = config.prompt
        self.examples = examples
        self.method = prompt.few_shot_selection
        self.seed = prompt.few_shot_seed
        self.mmr_lambda = prompt.mmr_lambda
        wanted = prompt.few_shot_num
        self.count = len(examples) if wanted is None else min(wanted, len(examples))
        label_column = config.dataset.label_column or "label"
        _, self._label_ids = np.unique([normalise(e.get(label_column, "")) for e in examples], return_inverse=True)
        if prompt.label_selection and config.task_type.value not in LABEL_SELECTION_TASKS:
            raise ConfigError(f"prompt.label_selection: not available for task_type {config.task_type.value!r}")
        self.columns = list(config.dataset.input_columns)
        self._own: dict[str, list[int]] = {}
        for index, example in enumerate(examples):
            self._own.setdefault(row_digest(example, self.columns), []).append(index)
        self._vectors: np.ndarray | None = None
        self.config = config
        needs_similarity = self.count > 0 and self.method in SIMILARITY_METHODS
        self.embedder: RowEmbedder | None = None
        self.label_selector: LabelSelector | None = None
        if needs_similarity or prompt.label_selection:
            self.row_embedder()
        if prompt.label_selection:
            self.label_selector = LabelSelector(config, examples, self.embedder)

    def row_embedder(self) -> RowEmbedder:
        """The embedder of rows and examples, made on first use; once made, ``ahead`` embeds rows in batches."""
        if self.embedder is None:
            prompt = self.config.prompt
            # The TF-IDF fallback learns its vocabulary from the examples and the labels.
            corpus = [str(e.get(column) or "") for e in self.examples for column in self.columns]
            corpus += [label_text(label, prompt.label_descriptions.get(label)) for label in prompt.label_names]
            self.embedder = RowEmbedder(self.config, corpus)
        return self.embedder

    def attach(self, cache: Cache) -> None:
        """Keep example and label vectors in this cache database, and embed them now: a broken
        embedding setup then fails once, before the first row, not on every row."""
        if self.embedder is None:
            return
        self.embedder.store.cache = cache
        if self.count > 0 and self.method in SIMILARITY_METHODS:
            self._example_vectors()
        if self.label_selector is not None:
            self.label_selector.prepare()

    def ahead(self, rows: Iterable[dict[str, str]], then: Callable[[list[dict[str, str]]], None] | None = None) -> Iterator[dict[str, str]]:
        """Yield ``rows`` unchanged, embedding each batch (then handing it to ``then``) before its rows are labeled."""
        if self.embedder is None and then is None:
            yield from rows
            return
        iterator = iter(rows)
        while batch := list(islice(iterator, PREFETCH_ROWS)):
            if self.embedder is not None:
                self.embedder.prefetch(batch)
            if then is not None:
                then(batch)
            yield from batch

    def _example_vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = self.embedder.kept(self.examples)
        return self._vectors

    def labels_for(self, row: Mapping[str, Any]) -> list[str] | None:
        """The labels this row's prompt offers, or None for all of them."""
        return self.label_selector.select(row) if self.label_selector is not None else None

    def select(self, row: Mapping[str, Any]) -> list[dict[str, str]]:
        """The row's examples, never the row itself: a labeled row shown its own answer would
        be labeled (and scored for plan) by copying it."""
        own = self._own.get(row_digest(row, self.columns), ())
        count = min(self.count, len(self.examples) - len(own))
        if count <= 0:
            return []
        if self.method == "fixed":
            return [e for i, e in enumerate(self.examples) if i not in own][:count]
        if self.method == "random":
            allowed = np.setdiff1d(np.arange(len(self.examples)), list(own))
            return [self.examples[i] for i in self._rng(row).choice(allowed, count, replace=False)]
        if self.method == "label_diversity_random":
            scores = self._rng(row).random(len(self.examples))
        else:
            scores = self._example_vectors() @ self.embedder.rows([row])[0]
        scores[list(own)] = -np.inf
        if self.method == "semantic_similarity":
            chosen = _top(scores, count)
        elif self.method == "max_marginal_relevance":
            chosen = self._mmr(scores, count)
        else:
            chosen = self._label_diverse(scores, count)
        return [self.examples[i] for i in chosen]

    def _rng(self, row: Mapping[str, Any]) -> np.random.Generator:
        texts = [str(row.get(column) or "") for column in self.columns]
        return np.random.default_rng(int(stable_hash([self.seed, texts])[:16], 16))

    def _mmr(self, similarity: np.ndarray, count: int) -> list[int]:
        pool = _top(similarity, max(MMR_POOL_FACTOR * count, MMR_MIN_POOL))
        pool = pool[np.isfinite(similarity[pool])]  # the row's own example stays out
        vectors = self._example_vectors()[pool]
        # A small pool-by-pool product: einsum skips multithreaded sgemm, which measured ~30 ms
        # instead of ~0.5 ms per row here when the cores were busy.
        between = np.einsum("id,jd->ij", vectors, vectors)
        relevance = similarity[pool]
        chosen = [0]  # the pool is sorted: its first entry is the most relevant
        redundancy = between[0].copy()
        while len(chosen) < min(count, len(pool)):
            score = self.mmr_lambda * relevance - (1 - self.mmr_lambda) * redundancy
            score[chosen] = -np.inf
            pick = int(np.argmax(score))
            chosen.append(pick)
            redundancy = np.maximum(redundancy, between[pick])
        return [int(pool[i]) for i in chosen]

    def _label_diverse(self, scores: np.ndarray, count: int) -> list[int]:
        ranked = _top(scores, len(scores))
        ranked = ranked[np.isfinite(scores[ranked])]  # the row's own example stays out
        _, first = np.unique(self._label_ids[ranked], return_index=True)
        leaders = ranked[np.sort(first)]  # each label's best example, best labels first
        rest = ranked[~np.isin(ranked, leaders)]
        return [int(i) for i in np.concatenate([leaders, rest])[:count]]
