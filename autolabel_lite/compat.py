"""Read Refuel Autolabel configs: translate their keys into ours at load time."""

from __future__ import annotations

from typing import Any


def translate_autolabel_config(data: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` with Autolabel-only keys mapped onto this project's keys."""
    data = dict(data)
    dataset = dict(data.get("dataset") or {})
    if "text_column" in dataset and "input_columns" not in dataset:
        dataset["input_columns"] = [dataset.pop("text_column")]
    if dataset:
        data["dataset"] = dataset
    return data
