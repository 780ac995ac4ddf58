"""Figures of a grid of batch sizes and learning rates: read at 100 configurations as at 4.

A sweep or comparison is a grid when, for each of its panels (the configurations that share every
parameter but the batch size and the learning rate: data set, training set, update rule, sampling,
iterations), it has at least two batch sizes and two learning rates. Then, instead of one overlay and a
bar per configuration (mnist_sgd.figures.group), its curves are small multiples (a column per batch size, a line
per learning rate in a sequential colour map, seeds as bands, one legend outside the data) and its final
accuracy a heatmap per panel (batch size x learning rate).
"""

import math

import matplotlib.pyplot as plt
import numpy as np

from ..study.datasets import dataset_title
from .common import DIVERGED_COLOR, OPTIMUM_STYLE, as_written, diverged_at, save, seed_curves, smoothed_losses


def grid_panels(configurations):
    """{panel title: {(batch size, learning rate): Configuration}} if `configurations` form a grid in
    each panel, else None."""
    panels = {}
    for config in configurations:
        params, resolved = config.infos[0].params, config.infos[0].resolved
        subset = f"{resolved.train_size} training images" if params.train_size else "all training images"
        title = f"{dataset_title(params.dataset)}, {subset}, {params.impl}, {params.iterations} iterations"
        if params.batch_sampling != "with_replacement":
            title += f", {params.batch_sampling}"
        panels.setdefault(title, {})[(params.batch_size, params.lr)] = config
    for cells in panels.values():
        if len({b for b, _ in cells}) < 2 or len({lr for _, lr in cells}) < 2:
            return None
    return panels


def _lr_colors(rates):
    """A colour per learning rate, in order along a sequential map: neighbours differ, and the order shows."""
    cmap = plt.get_cmap("viridis")
    return {lr: cmap(0.9 * i / max(1, len(rates) - 1)) for i, lr in enumerate(rates)}


def plot_grid_curves(panels, title, paths, dpi=150, smoothing=50):
    """Small multiples: for each panel, a row of loss and a row of accuracy, a column per batch size, a
    line per learning rate (the mean over seeds, a min-max band), diverged seeds marked, the panel's
    least-squares optimum dashed; one legend of learning rates, outside the axes."""
    batch_sizes = sorted({b for cells in panels.values() for b, _ in cells})
    rates = sorted({lr for cells in panels.values() for _, lr in cells})
    colors = _lr_colors(rates)
    rows, columns = 2 * len(panels), len(batch_sizes)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3.2 * columns + 2, 2.6 * rows + 0.8), squeeze=False, sharex="col", layout="constrained"
    )
    for p, (panel, cells) in enumerate(panels.items()):
        for c, batch_size in enumerate(batch_sizes):
            loss_ax, acc_ax = axes[2 * p, c], axes[2 * p + 1, c]
            loss_ax.set(yscale="log", title=f"{panel}\nbatch {batch_size}" if c == 0 else f"batch {batch_size}")
            acc_ax.set(ylim=(0, 1), xlabel="iteration")
            for lr in rates:
                config = cells.get((batch_size, lr))
                if config is None:
                    continue
                smoothed = smoothed_losses(config.metrics, smoothing)
                x, loss, low, high = seed_curves(smoothed, "loss")
                loss_ax.plot(x, loss, color=colors[lr], linewidth=1)
                accuracy = [m.dropna(subset=["test_accuracy"]) for m in config.metrics]
                ax_x, acc, acc_low, acc_high = seed_curves(accuracy, "test_accuracy")
                acc_ax.plot(ax_x, acc, color=colors[lr], linewidth=0.8)
                if len(config.metrics) > 1:
                    loss_ax.fill_between(x, low, high, color=colors[lr], alpha=0.2, linewidth=0)
                    acc_ax.fill_between(ax_x, acc_low, acc_high, color=colors[lr], alpha=0.2, linewidth=0)
                for frame, end in zip(smoothed, map(diverged_at, config.metrics)):
                    if end:  # where that seed's curve ends
                        loss_ax.plot(end, frame["loss"].dropna().iloc[-1], "x", color=DIVERGED_COLOR, markersize=7)
            optimum = next(iter(cells.values())).optimum()
            if optimum is not None:
                acc_ax.axhline(optimum.test_accuracy, color="black", **OPTIMUM_STYLE)
        axes[2 * p, 0].set_ylabel("training loss")
        axes[2 * p + 1, 0].set_ylabel("test accuracy")
    handles = [plt.Line2D([], [], color=colors[lr], label=f"lr {lr:g}") for lr in rates]
    configs = [config for cells in panels.values() for config in cells.values()]
    if any(config.optima for config in configs):
        handles.append(plt.Line2D([], [], color="black", label="least-squares optimum", **OPTIMUM_STYLE))
    if any(any(config.diverged) for config in configs):
        handles.append(plt.Line2D([], [], marker="x", linestyle="", color=DIVERGED_COLOR, label="diverged seed"))
    fig.legend(handles=handles, loc="outside right center", fontsize=9, title="learning rate")
    seeded = any(len(config.metrics) > 1 for cells in panels.values() for config in cells.values())
    bands = "; lines: mean over seeds, bands: min to max" if seeded else ""
    smoothed_by = f"rolling mean over {smoothing} iterations" if smoothing > 1 else "every iteration"
    fig.suptitle(as_written(f"{title}: loss ({smoothed_by}) and test accuracy{bands}", fig.get_figwidth()))
    save(fig, paths, dpi)


def plot_accuracy_heatmap(panels, title, paths, dpi=150):
    """Final test accuracy per batch size (rows) and learning rate (columns), a heatmap per panel: each
    cell the mean over seeds (and one standard deviation), a diverged run's cell marked, a missing
    combination blank."""
    count = len(panels)
    columns = min(count, 2)
    rows = math.ceil(count / columns)
    shapes = [(len({b for b, _ in cells}), len({lr for _, lr in cells})) for cells in panels.values()]
    width = max(1.0 + 0.9 * max(n for _, n in shapes), 4.5)
    height = max(1.4 + 0.45 * max(n for n, _ in shapes), 3.0)
    fig, axes = plt.subplots(
        rows, columns, figsize=(width * columns + 1.5, height * rows + 0.8), squeeze=False, layout="constrained"
    )
    # One colour scale for every panel, over the accuracies drawn: neighbouring cells that differ, differ.
    finals = [c.final_accuracies.mean() for cells in panels.values() for c in cells.values()]
    low, high = float(np.nanmin(finals)), float(np.nanmax(finals))
    low, high = (low, high) if high > low else (low - 0.01, high + 0.01)
    image = None
    for ax, (panel, cells) in zip(axes.flat, panels.items()):
        batch_sizes = sorted({b for b, _ in cells})
        rates = sorted({lr for _, lr in cells})
        means = np.full((len(batch_sizes), len(rates)), np.nan)
        for (batch_size, lr), config in cells.items():
            i, j = batch_sizes.index(batch_size), rates.index(lr)
            means[i, j] = config.final_accuracies.mean()
            text = f"{means[i, j]:.3f}"
            if len(config.infos) > 1:
                text += f"\n±{config.final_accuracy_std:.3f}"
            diverged = sum(config.diverged)
            if diverged:
                text += f"\n{diverged} div." if len(config.infos) > 1 else "\ndiverged"
            light = (means[i, j] - low) / (high - low) > 0.6  # viridis is light at the top
            color = DIVERGED_COLOR if diverged else ("black" if light else "white")
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
        image = ax.imshow(means, cmap="viridis", vmin=low, vmax=high, aspect="auto")
        ax.set_xticks(range(len(rates)), [f"{lr:g}" for lr in rates], rotation=45, ha="right")
        ax.set_yticks(range(len(batch_sizes)), [str(b) for b in batch_sizes])
        ax.set(xlabel="learning rate", ylabel="batch size", title=as_written(panel, width))
    for ax in list(axes.flat)[count:]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes, label="test accuracy at the last iteration (mean)", shrink=0.9)
    seeded = any(len(config.infos) > 1 for cells in panels.values() for config in cells.values())
    what = "mean over seeds ± one standard deviation" if seeded else "final test accuracy"
    fig.suptitle(as_written(f"{title}: {what}", fig.get_figwidth()))
    save(fig, paths, dpi)
