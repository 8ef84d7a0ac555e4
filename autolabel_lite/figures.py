"""Figures drawn with matplotlib (the ``plot`` extra): plan saves one as a PNG file, the
HTML report embeds them all as PNG data.

Every function returns a matplotlib Figure, or None when matplotlib is not installed;
``save`` and ``png_bytes`` turn a figure into a file or bytes and close it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .files import replaced_when_done

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .metrics import ReliabilityBins
    from .policy import OperatingPoint

DPI = 120
# One colour per role, the same in every figure.
RIGHT, WRONG, ALL, MARKS = "tab:blue", "tab:orange", "tab:grey", ("crimson", "black", "tab:green", "tab:purple", "tab:brown", "tab:olive")
# Above this many labels a confusion matrix's cells are too small to carry their counts.
ANNOTATED_LABELS = 15


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def available() -> bool:
    return _pyplot() is not None


def completion_figure(
    curve: Sequence["OperatingPoint"], marks: Sequence[tuple[str, "OperatingPoint"]], target_accuracy: float | None, title: str
) -> "Figure | None":
    """Label quality against completion rate, one point per threshold, with the operating points marked."""
    plt = _pyplot()
    if plt is None or not curve:
        return None
    figure, axes = plt.subplots(figsize=(6, 4.5))
    axes.plot([p.completion for p in curve], [p.accuracy for p in curve], ".-", markersize=3, label="accepted labels, one point per threshold")
    if target_accuracy is not None:
        axes.axhline(target_accuracy, color="grey", linestyle=":", label=f"target accuracy {target_accuracy:g}")
    for (name, point), colour in zip(marks, MARKS):
        axes.plot([point.completion], [point.accuracy], "o", color=colour, label=name)
    axes.set_xlabel("completion rate (share of rows accepted)")
    axes.set_ylabel("label quality (accuracy of accepted rows)")
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    axes.set_title(title)
    return figure


def histogram_figure(groups: Sequence[tuple[str, np.ndarray]], threshold: float | None, xlabel: str) -> "Figure | None":
    """Overlaid confidence histograms (right and wrong labels, or all labels), threshold marked."""
    plt = _pyplot()
    if plt is None or not any(values.size for _, values in groups):
        return None
    figure, axes = plt.subplots(figsize=(6, 3.6))
    edges = np.linspace(0.0, 1.0, 21)
    colours = (RIGHT, WRONG) if len(groups) == 2 else (ALL,)
    for (name, values), colour in zip(groups, colours):
        axes.hist(values, bins=edges, alpha=0.6, color=colour, label=f"{name} ({values.size})")
    if threshold is not None and np.isfinite(threshold):
        axes.axvline(threshold, color=MARKS[0], linestyle="--", label=f"threshold {threshold:.4g}")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("rows")
    axes.set_xlim(0, 1)
    axes.legend(loc="best")
    axes.grid(alpha=0.3)
    return figure


def reliability_figure(series: Sequence[tuple[str, "ReliabilityBins"]]) -> "Figure | None":
    """Accuracy against mean confidence per bin; the diagonal is perfect calibration."""
    plt = _pyplot()
    if plt is None or not any(bins.labels for _, bins in series):
        return None
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for (name, bins), colour in zip(series, (RIGHT, WRONG)):
        filled = bins.counts > 0
        axes.plot(bins.mean_confidence[filled], bins.accuracy[filled], "o-", color=colour, label=name)
    axes.set_xlabel("mean confidence in the bin")
    axes.set_ylabel("accuracy in the bin")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    return figure


def confusion_figure(gold_labels: Sequence[str], predicted_labels: Sequence[str], counts: np.ndarray) -> "Figure | None":
    """Rows: ground truth; columns: the label given (counts, darker is more)."""
    plt = _pyplot()
    if plt is None or not counts.size:
        return None
    side = min(12.0, 2.5 + 0.45 * max(len(gold_labels), len(predicted_labels)))
    figure, axes = plt.subplots(figsize=(side, side * 0.9))
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set_xticks(range(len(predicted_labels)), [_short(label) for label in predicted_labels], rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(gold_labels)), [_short(label) for label in gold_labels], fontsize=8)
    axes.set_xlabel("label given")
    axes.set_ylabel("ground truth")
    if max(len(gold_labels), len(predicted_labels)) <= ANNOTATED_LABELS:
        dark = counts.max() / 2 if counts.max() else 1
        for (row, column), count in np.ndenumerate(counts):
            if count:
                axes.text(column, row, str(count), ha="center", va="center", fontsize=8, color="white" if count > dark else "black")
    return figure


def _short(label: str, limit: int = 24) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def save(figure: "Figure", path: str | os.PathLike) -> None:
    """Write the figure to ``path`` in the format its suffix names (PNG without one),
    complete or not at all, and close it."""
    try:
        with replaced_when_done(path) as staging:
            figure.savefig(staging, dpi=DPI, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    finally:
        _close(figure)


def png_bytes(figure: "Figure") -> bytes:
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, dpi=DPI, bbox_inches="tight", format="png")
    finally:
        _close(figure)
    return buffer.getvalue()


def _close(figure: "Figure") -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)
