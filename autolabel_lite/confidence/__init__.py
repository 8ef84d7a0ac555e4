"""Confidence step: how sure the verifier model is of each row's label, in [0, 1].

One small class per method, in one file each, registered by its ``confidence.method``
name: ``logprob``, ``p_true``, ``verbalized``, ``entropy``, ``semantic_entropy``, ``learned``.
"""

from __future__ import annotations

from ..registry import CONFIDENCE_METHODS as METHODS
from .base import Confidence, ConfidenceMethod, Labeled, Verifier


def method_names() -> list[str]:
    return METHODS.names()


def get_method_class(name: str) -> type[ConfidenceMethod]:
    return METHODS.get(name)


def resolve_method(name: str, learned: bool) -> str:
    """``auto`` (the default): ``learned`` when the learned labeler labels, else ``logprob``."""
    if name == "auto":
        return "learned" if learned else "logprob"
    return name


__all__ = ["METHODS", "Confidence", "ConfidenceMethod", "Labeled", "Verifier", "get_method_class", "method_names", "resolve_method"]
