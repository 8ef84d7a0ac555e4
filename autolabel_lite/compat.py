"""Read Refuel Autolabel configs: translate their keys into ours at load time."""

from __future__ import annotations

from typing import Any


def translate_autolabel_config(data: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` with Autolabel-only keys mapped onto this project's keys."""
    data = dict(data)
    dataset = data.get("dataset")
    # A section of the wrong type is left for validation to report by its key path.
    if isinstance(dataset, dict) and "text_column" in dataset and "input_columns" not in dataset:
        dataset = dict(dataset)
        dataset["input_columns"] = [dataset.pop("text_column")]
        data["dataset"] = dataset
    return data
