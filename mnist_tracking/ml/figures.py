"""Figures: a run's learning curves, misclassified digits and confusion matrix; a sweep's curves of every job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure  # pyplot-free: no global figure state, no display needed

# A run's own figures are laid out by hand: Matplotlib's constrained layout measured every label again at each draw,
# 0.76 s against 0.47 s for the three of them, most of a run's end (the sweep's figures keep it, for their legends).

# More curves than this get no legend: 200 labels hide the axes and took seconds to lay out (a 200-job sweep).
MAX_LEGEND = 20


def _per_epoch(ax: Axes, curves: Mapping[str, Sequence[float]], metric: str, title: str, **legend: Any) -> None:
    """One line per labeled curve against epochs 1, 2, ...; empty curves are left out."""
    for label, values in curves.items():
        if len(values):
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    ax.set(title=title, xlabel="epoch", ylabel=metric)
    ax.grid(alpha=0.3)
    if len(ax.lines) > MAX_LEGEND:
        ax.set_title(
            f"{title}\n{len(ax.lines)} curves, unlabeled: the sweep's summary table names each job", fontsize="medium"
        )
    elif ax.lines:
        ax.legend(**legend)


def learning_curves(history: Mapping[str, Sequence[float]]) -> Figure:
    """Accuracy and loss per epoch, train against validation, side by side."""
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2, gridspec_kw=dict(left=0.07, right=0.98, bottom=0.13, top=0.92, wspace=0.22))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        curves = {
            label: history[key] for key, label in ((metric, "train"), (f"val_{metric}", "validation")) if key in history
        }
        _per_epoch(ax, curves, metric, metric)
    return fig


def sweep_curves(curves: Mapping[str, Sequence[float]], metric: str, title: str) -> Figure:
    """Every job's per-epoch curve of `metric` on one axes, labeled by its swept values."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    _per_epoch(fig.subplots(), curves, metric, title, fontsize=8)
    return fig


def seed_bands(bands: Mapping[str, tuple[Sequence[float], Sequence[float]]], metric: str, title: str) -> Figure:
    """Each seed group's mean curve of `metric` per epoch, with a band of ± one std across its seeds."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    _per_epoch(
        ax, {label: mean for label, (mean, _) in bands.items()}, f"{metric} (mean ± std over seeds)", title, fontsize=8
    )
    for line, (band_mean, band_std) in zip(ax.lines, (band for band in bands.values() if len(band[0]))):
        epochs, mean, std = np.arange(1, len(band_mean) + 1), np.asarray(band_mean), np.asarray(band_std)
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    return fig


def parallel_coordinates(
    axes: Mapping[str, Sequence[float] | Sequence[str]],
    scores: Sequence[float],
    metric: str,
    title: str,
    minimize: bool,
) -> Figure:
    """One line per job across a vertical axis per key (numbers or categories) and a last one for its `metric`
    score, colored by that score (the last axis reads as the color's scale), the best on top in the brightest color."""
    fig = Figure(figsize=(max(6.0, 2.0 * (len(axes) + 1)), 4.5), layout="constrained")
    ax = fig.subplots()
    columns = [_axis_positions(values) for values in axes.values()]
    columns.append(_axis_positions([float(score) for score in scores], ticks=5))
    points = np.stack([positions for positions, _ in columns], axis=1)  # job x axis
    order = np.argsort(scores)[::-1] if minimize else np.argsort(scores)  # the best last, on top
    cmap = colormaps["viridis_r" if minimize else "viridis"]
    norm = Normalize(min(scores), max(scores))
    lines = LineCollection([np.column_stack([np.arange(len(columns)), points[i]]) for i in order], cmap=cmap, norm=norm)
    lines.set_array(np.asarray(scores, dtype=float)[order])
    ax.add_collection(lines)
    for x, (_, ticks) in enumerate(columns):
        ax.axvline(x, color="0.5", linewidth=1)
        for y, label in ticks:
            ax.text(x + 0.03, y, label, va="center", fontsize=8, bbox=dict(facecolor="white", alpha=0.7, linewidth=0))
    ax.set(xlim=(-0.1, len(columns) - 0.6), ylim=(-0.05, 1.05), yticks=[], title=title)
    ax.set_xticks(range(len(columns)), [*axes, metric])
    for spine in ax.spines.values():
        spine.set_visible(False)
    return fig


def _axis_positions(
    values: Sequence[float] | Sequence[str], ticks: int = 8
) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Each value's height (0 to 1) on its axis, and the axis's labeled ticks as (height, label).

    Numbers sit by value (by log where they span two decades or more, as learning rates do), each distinct one
    labeled when there are at most `ticks`; categories are spread evenly, in sorted order.
    """
    if not all(isinstance(value, float) for value in values):
        categories = sorted(set(map(str, values)))
        spread = np.linspace(0, 1, len(categories)) if len(categories) > 1 else np.array([0.5])
        height = dict(zip(categories, spread))
        return np.array([height[str(value)] for value in values]), [(height[c], c) for c in categories]
    numbers = np.asarray(values, dtype=float)
    log = numbers.min() > 0 and numbers.max() >= 100 * numbers.min()
    scaled = np.log10(numbers) if log else numbers
    low, high = scaled.min(), scaled.max()
    if high == low:
        return np.full(len(numbers), 0.5), [(0.5, f"{numbers[0]:.4g}")]
    distinct = np.unique(scaled)
    marks = distinct if len(distinct) <= ticks else np.linspace(low, high, 5)
    labels = [f"{10**mark if log else mark:.4g}" for mark in marks]
    return (scaled - low) / (high - low), [
        (float((mark - low) / (high - low)), label) for mark, label in zip(marks, labels)
    ]


def misclassified(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, max_digits: int = 25) -> Figure:
    """A grid of the first misclassified digits, each captioned true -> predicted (probability).

    Drawn as one tiled image on one axes: 25 axes of their own took ~0.5 s more to lay out and render.
    """
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)[:max_digits]
    cols, size, gap = 5, images.shape[1], 14  # gap: room for each caption, in pixels
    rows = max(1, -(-len(wrong) // cols))
    tiles = np.full((rows * (size + gap), cols * (size + 4)), np.nan)
    fig = Figure(figsize=(2 * cols, 2.3 * rows + 0.4))
    ax = fig.add_axes((0, 0, 1, 1 - 0.4 / fig.get_figheight()))  # the digits fill it; 0.4 in on top for the title
    for n, i in enumerate(wrong):
        top, left = (n // cols) * (size + gap) + gap, (n % cols) * (size + 4) + 2
        tiles[top : top + size, left : left + size] = images[i]
        ax.text(
            left + size / 2,
            top - 1,
            f"true {labels[i]} → pred {predicted[i]}\np={probabilities[i, predicted[i]]:.2f}",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    ax.imshow(tiles, cmap="gray_r", interpolation="nearest")
    ax.axis("off")
    fig.suptitle(
        f"{np.count_nonzero(predicted != labels)} of {len(labels)} test digits misclassified (first {len(wrong)} shown)"
    )
    return fig


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int | None = None) -> Figure:
    """Counts of true (rows) against predicted (columns) classes (`num_classes`; None: as many as the labels show)."""
    num_classes = num_classes or int(max(labels.max(), predicted.max())) + 1
    counts = np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)
    fig = Figure(figsize=(6, 5.5))
    ax = fig.subplots(gridspec_kw=dict(left=0.1, right=0.98, bottom=0.1, top=0.94))
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    for (row, col), n in np.ndenumerate(counts):
        ax.text(
            col, row, str(n), ha="center", va="center", fontsize=7, color="white" if n > counts.max() / 2 else "black"
        )
    ax.set(
        xlabel="predicted",
        ylabel="true",
        xticks=range(num_classes),
        yticks=range(num_classes),
        title=f"Confusion matrix (accuracy {np.trace(counts) / counts.sum():.4f})",
    )
    return fig
