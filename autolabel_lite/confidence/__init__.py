"""Confidence step: how sure the verifier model is of each row's label, in [0, 1].

One small class per method, in one file each, registered by its ``confidence.method``
name: ``logprob``, ``p_true``, ``verbalized``, ``entropy``, ``semantic_entropy``.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Confidence, ConfidenceMethod, Labeled, Verifier

METHODS: Registry[ConfidenceMethod] = Registry(__name__, "confidence method")


def method_names() -> list[str]:
    return METHODS.names()


def get_method_class(name: str) -> type[ConfidenceMethod]:
    return METHODS.get(name)


__all__ = ["METHODS", "Confidence", "ConfidenceMethod", "Labeled", "Verifier", "get_method_class", "method_names"]
