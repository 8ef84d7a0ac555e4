"""Model providers: one small class per file behind the ``Provider`` interface."""

from __future__ import annotations

from ..registry import PROVIDERS
from .base import Generation, Provider, SequenceScore


def provider_names() -> list[str]:
    return PROVIDERS.names()


def create_provider(model_config) -> Provider:
    return PROVIDERS.get(model_config.provider)(model_config)


__all__ = ["PROVIDERS", "Generation", "Provider", "SequenceScore", "create_provider", "provider_names"]
