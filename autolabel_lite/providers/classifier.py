"""``classifier``: labels with no language model — the embedding view and the fitted head of
the learned labeler (learned.py) alone. Hundreds of rows a second on two cores, for
classification and entity matching, and a cheap first stage for rows it is sure of."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import ProviderError
from . import PROVIDERS
from .base import Provider

if TYPE_CHECKING:
    from ..config import ModelConfig
    from ..prompt import Prompt


@PROVIDERS.register("classifier")
class ClassifierProvider(Provider):
    is_local = True
    language_model = False
    known_params = frozenset()

    def __init__(self, config: "ModelConfig") -> None:
        super().__init__(config)
        # This provider's work is MiniLM's forward passes, on OpenMP threads whose default is to
        # spin while they wait: on cores shared with other processes the spinning thread takes the
        # core the working one needs (banking embedded at 62-101 rows/s spinning, 141-163 passive;
        # 2 cores, 2 threads, load ~7). OpenMP reads this when torch loads it, so it must come
        # before torch's first import (the classifier path has none before this); the user's value wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    @property
    def model_name(self) -> str:
        # The embedding model is part of the config (``embedding``), so of every cache key.
        return self.config.name or "embedding head"

    async def generate(self, prompt: "Prompt", **params: Any):
        raise ProviderError("the classifier provider chooses among labels; it cannot write text")
