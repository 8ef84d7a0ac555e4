"""Task types: one small class per file, registered by its ``task_type`` name."""

from __future__ import annotations

from ..registry import TASKS
from .base import Parsed, Task


def get_task_class(task_type) -> type[Task]:
    return TASKS.get(getattr(task_type, "value", task_type))


__all__ = ["TASKS", "Parsed", "Task", "get_task_class"]
