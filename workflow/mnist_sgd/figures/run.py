"""A run's own figures: its loss and accuracy curves, its final weights as images, its confusion matrix."""

import matplotlib.pyplot as plt
import numpy as np

from ..study.datasets import DIGITS
from .common import (
    accuracy_points,
    add_legend,
    as_written,
    curve_axes,
    describe_run,
    diverged_at,
    draw_optimum,
    finite_loss,
    mark_divergence,
    save,
)


def plot_run(metrics, info, paths, dpi=150, optimum=None):
    """The original study's side-by-side figure: loss and test accuracy vs. iteration for one run (`info`: its
    RunInfo), with the least-squares optimum of its training set (`optimum`, an Optimum) dashed."""
    fig, loss_ax, acc_ax = curve_axes(describe_run(info))
    if optimum is not None:  # the legends name the optimum's lines only
        draw_optimum(loss_ax, acc_ax, optimum, info.params.impl)
        add_legend(loss_ax, "upper right")
        add_legend(acc_ax, "lower right")
    loss_ax.plot(metrics["iteration"], finite_loss(metrics), linewidth=0.6)
    acc_ax.plot(*accuracy_points(metrics), linewidth=0.8)
    end = diverged_at(metrics)
    if end:
        mark_divergence((loss_ax, acc_ax), end)
    final = info.final_test_accuracy
    acc_ax.axhline(final, color="grey", linestyle=":", linewidth=0.8)
    acc_ax.annotate(
        f"final {final:.4f}", (1.0, final), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=9
    )
    save(fig, paths, dpi)


def plot_weights(weight, title, paths, dpi=150, class_names=DIGITS):
    """The ten columns of a (784, 10) weight as 28 x 28 images, one panel per class, on one symmetric
    diverging colour scale (red: the pixel raises the class's score, blue: lowers it)."""
    weight = np.asarray(weight, dtype=np.float64)
    finite = np.abs(weight[np.isfinite(weight)])
    scale = finite.max() if finite.size and finite.max() > 0 else 1.0
    fig, axes = plt.subplots(2, 5, figsize=(12, 4.8))
    for k, ax in enumerate(axes.flat):
        image = ax.imshow(weight[:, k].reshape(28, 28), cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.set_title(class_names[k])
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(image, ax=axes, shrink=0.8, label="weight")
    fig.suptitle(as_written(f"{title}: final weight of each class", fig.get_figwidth()), y=0.96, va="bottom")
    save(fig, paths, dpi)


def plot_confusion(confusion, title, paths, dpi=150, class_names=DIGITS):
    """A (10, 10) confusion matrix of counts: rows the true class, columns the predicted one."""
    confusion = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(confusion, cmap="Blues")
    brightest = confusion.max() or 1
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(
            j, i, str(count), ha="center", va="center", fontsize=8, color="white" if count > brightest / 2 else "black"
        )
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45 if max(map(len, class_names)) > 2 else 0, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set(xlabel="predicted class", ylabel="true class")
    fig.colorbar(image, ax=ax, label="test images")
    accuracy = np.trace(confusion) / max(confusion.sum(), 1)
    ax.set_title(
        as_written(f"{title}: test-set confusion of the final weights (accuracy {accuracy:.4f})", fig.get_figwidth())
    )
    save(fig, paths, dpi)
