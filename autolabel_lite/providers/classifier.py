"""``classifier``: labels with no language model — the embedding view and the fitted head of
the learned labeler (learned.py) alone. Hundreds of rows a second on two cores, for
classification and entity matching, and a cheap first stage for rows it is sure of."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ProviderError
from . import PROVIDERS
from .base import Provider

if TYPE_CHECKING:
    from ..prompt import Prompt


@PROVIDERS.register("classifier")
class ClassifierProvider(Provider):
    is_local = True
    language_model = False
    known_params = frozenset()

    @property
    def model_name(self) -> str:
        # The embedding model is part of the config (``embedding``), so of every cache key.
        return self.config.name or "embedding head"

    async def generate(self, prompt: "Prompt", **params: Any):
        raise ProviderError("the classifier provider chooses among labels; it cannot write text")
