"""The study's figures. Every function takes plain data and the output paths (one per format)."""

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .files import atomic_path  # noqa: E402
from .records import METRIC_COLUMNS  # noqa: E402

# Loss curves of small batches are noisy; overlays draw a rolling mean (config figures.smoothing).
SMOOTHING_WINDOW = 50
DIVERGED_COLOR = "tab:red"


def read_metrics(path):
    """A run's metrics CSV (mnist_sgd.records.write_metrics) as a DataFrame; test_accuracy NaN where not evaluated."""
    return pd.read_csv(path, usecols=METRIC_COLUMNS)


def diverged_at(metrics):
    """The iteration at which a run's loss became NaN or infinite (its last row), or None."""
    last = metrics["train_loss"].iloc[-1]
    return None if np.isfinite(last) else int(metrics["iteration"].iloc[-1])


def _finite_loss(metrics):
    return metrics["train_loss"].where(np.isfinite(metrics["train_loss"]))


def _mark_divergence(axes, iteration):
    for ax in axes:
        ax.axvline(iteration, color=DIVERGED_COLOR, linestyle="--", linewidth=0.8)
    axes[0].annotate(
        f"diverged at iteration {iteration}",
        (iteration, 1.0),
        xycoords=("data", "axes fraction"),
        ha="right",
        va="top",
        color=DIVERGED_COLOR,
        fontsize=9,
    )


def describe_run(info):
    """One line naming a run's parameters (`info`, its RunInfo), for titles and captions."""
    params = info.params
    impl = "from-scratch SGD" if params.impl == "scratch" else "torch.optim SGD"
    return (
        f"{impl}: batch size {params.batch_size}, {params.iterations} iterations, "
        f"learning rate {params.lr:g}, {info.resolved.train_size} training images, seed {params.seed}"
    )


def save(fig, paths, dpi):
    """Write `fig` to every path (format from the suffix), atomically, and close it."""
    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=str(path).rsplit(".", 1)[1], bbox_inches="tight")
    plt.close(fig)


def as_written(text, inches):
    """`text` drawn as written, in lines that fit `inches` of figure width: matplotlib would read text
    between two $ signs as math (and fail on bad math)."""
    return "\n".join(textwrap.wrap(text, width=max(30, int(inches * 9)))).replace("$", r"\$")


def _curve_axes(title):
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(14, 4.5))
    loss_ax.set(
        title="Training loss of each batch vs. iteration",
        xlabel="iteration",
        ylabel="training loss (batch)",
        yscale="log",
    )
    acc_ax.set(title="Test accuracy vs. iteration", xlabel="iteration", ylabel="test accuracy (10000 images)")
    fig.suptitle(
        as_written(title, fig.get_figwidth()), y=0.96, va="bottom"
    )  # above the axes titles, however many lines
    return fig, loss_ax, acc_ax


def _accuracy_points(metrics):
    evaluated = metrics.dropna(subset=["test_accuracy"])
    return evaluated["iteration"], evaluated["test_accuracy"]


def plot_run(metrics, info, paths, dpi=150):
    """The original study's side-by-side figure: loss and test accuracy vs. iteration for one run (`info`: its RunInfo)."""
    fig, loss_ax, acc_ax = _curve_axes(describe_run(info))
    loss_ax.plot(metrics["iteration"], _finite_loss(metrics), linewidth=0.6)
    acc_ax.plot(*_accuracy_points(metrics), linewidth=0.8)
    end = diverged_at(metrics)
    if end:
        _mark_divergence((loss_ax, acc_ax), end)
    final = info.final_test_accuracy
    acc_ax.axhline(final, color="grey", linestyle=":", linewidth=0.8)
    acc_ax.annotate(
        f"final {final:.4f}", (1.0, final), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=9
    )
    save(fig, paths, dpi)


def plot_overlay(runs, title, paths, dpi=150, smoothing=SMOOTHING_WINDOW):
    """Loss and accuracy curves of several runs on shared axes; `runs` is a list of (label, metrics).

    Loss curves are rolling means over `smoothing` iterations (1: raw); a diverged run's curves end
    with a cross at the iteration it diverged.
    """
    smoothed_by = f"rolling mean over {smoothing} iterations" if smoothing > 1 else "every iteration"
    fig, loss_ax, acc_ax = _curve_axes(f"{title}: loss ({smoothed_by}) and test accuracy")
    for label, metrics in runs:
        smoothed = _finite_loss(metrics).rolling(smoothing, min_periods=1).mean()
        end = diverged_at(metrics)
        label = f"{label} (diverged at {end})" if end else label
        (line,) = loss_ax.plot(metrics["iteration"], smoothed, linewidth=1, label=label)
        acc_ax.plot(*_accuracy_points(metrics), linewidth=0.8, color=line.get_color(), label=label)
        if end:
            loss_ax.plot(end, smoothed.dropna().iloc[-1], "x", color=DIVERGED_COLOR, markersize=8)
    acc_ax.legend(loc="lower right")
    save(fig, paths, dpi)


def plot_final_accuracy(labels, accuracies, title, paths, dpi=150, diverged=None):
    """Bar chart of each run's final test accuracy; diverged runs (flags in `diverged`) in red, marked."""
    diverged = diverged or [False] * len(labels)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(labels)), 4.5))
    colors = [DIVERGED_COLOR if d else "tab:blue" for d in diverged]
    bars = ax.bar(range(len(labels)), accuracies, alpha=0.7, color=colors)
    ax.bar_label(
        bars, labels=[f"{a:.4f}" + ("\ndiverged" if d else "") for a, d in zip(accuracies, diverged)], fontsize=9
    )
    ax.set_xticks(range(len(labels)), labels)
    ax.set(
        title=as_written(f"{title}: final test accuracy", fig.get_figwidth()),
        ylabel="test accuracy at the last iteration",
        ylim=(0, 1),
    )
    save(fig, paths, dpi)


def plot_wall_time(summary, paths, dpi=150):
    """Horizontal bar chart of each run's training wall time."""
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.4 * len(summary)))
    bars = ax.barh(summary["run"], summary["wall_seconds"], alpha=0.7)
    ax.bar_label(
        bars,
        labels=[f"{s:.2f} s on {d}" for s, d in zip(summary["wall_seconds"], summary["device"])],
        fontsize=8,
        padding=2,
    )
    ax.invert_yaxis()
    ax.set(title="Training wall time per run (data loading excluded)", xlabel="seconds")
    ax.margins(x=0.3)
    save(fig, paths, dpi)
