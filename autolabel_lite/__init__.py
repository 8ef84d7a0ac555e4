"""autolabel_lite: label text datasets with language models, with confidence you can trust.

The public names are imported on first use (PEP 562), so ``autolabel-lite --help`` and
the API path start without loading the labeling pipeline's libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agent import LabelingAgent
    from .config import TaskConfig, load_config
    from .errors import AutolabelError, ConfigError, DataError, ProviderError
    from .result import LabelingResult

_HOMES = {
    "AutolabelError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
    "ProviderError": "errors",
    "LabelingAgent": "agent",
    "LabelingResult": "result",
    "TaskConfig": "config",
    "load_config": "config",
}
__all__ = sorted(_HOMES)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this hook
    return value
