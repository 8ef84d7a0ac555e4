"""A tiny name → class registry shared by tasks, providers and confidence methods.

Every module in the registry's package is imported on first use, so adding a task or
a provider means adding one file that decorates its class with ``@registry.register``.
The registries live here, below config: config checks names against them without
importing the packages, whose modules import config's types.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, package: str, kind: str) -> None:
        self._package = package
        self._kind = kind
        self._classes: dict[str, type[T]] = {}
        self._loaded = False

    def register(self, name: str):
        def decorator(cls: type[T]) -> type[T]:
            self._classes[name] = cls
            return cls

        return decorator

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self._package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self._package}.{module.name}")

    def names(self) -> list[str]:
        self._load()
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        self._load()
        try:
            return self._classes[name]
        except KeyError:
            raise KeyError(f"unknown {self._kind} {name!r}; expected one of {', '.join(self.names())}") from None


TASKS: Registry = Registry("autolabel_lite.tasks", "task_type")
PROVIDERS: Registry = Registry("autolabel_lite.providers", "provider")
CONFIDENCE_METHODS: Registry = Registry("autolabel_lite.confidence", "confidence method")
