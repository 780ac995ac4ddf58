"""The study's figures. Every function takes plain data and the output paths (one per format)."""

import dataclasses
import math
import sys
import textwrap
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .files import atomic_path  # noqa: E402
from .study import DEFAULT_DATASET, DIGITS, LOSS_SCALE, dataset_title, parse_training_set  # noqa: E402

# Loss curves of small batches are noisy; overlays draw a rolling mean (config figures.smoothing).
SMOOTHING_WINDOW = 50
DIVERGED_COLOR = "tab:red"
OPTIMUM_STYLE = {"linestyle": "--", "linewidth": 1.0}
# An optimum's loss below this is 0 up to float64 rounding (every run starts at 0.5, from W = 0).
ZERO_LOSS = 1e-9


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
        f"{impl} on {dataset_title(params.dataset)}: batch size {params.batch_size}, {params.iterations} iterations, "
        f"learning rate {params.lr:g}, {info.resolved.train_size} training images, seed {params.seed}"
    )


def titled_with_datasets(title, infos):
    """A figure title naming the data sets of the runs (RunInfos) it draws, unless they are all MNIST."""
    names = list(dict.fromkeys(info.params.dataset for info in infos))
    return title if names == [DEFAULT_DATASET] else f"{title} ({', '.join(map(dataset_title, names))})"


# The most pixels a figure is drawn with: its memory (about 10 bytes a pixel while a PNG is written) stays
# near 0.25 GB whatever the dpi and the number of runs it shows. A larger figure is drawn at a lower dpi.
MAX_FIGURE_PIXELS = 25_000_000


def save(fig, paths, dpi, log=lambda message: print(message, file=sys.stderr)):
    """Write `fig` to every path (format from the suffix), atomically, and close it. Drawn at `dpi`, or
    at the largest dpi within MAX_FIGURE_PIXELS, saying so in `log`."""
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])
    fitting = math.floor(math.sqrt(MAX_FIGURE_PIXELS / (box.width * box.height)))  # box: what "tight" writes
    if fitting < dpi:
        log(
            f"{', '.join(map(str, paths))}: {box.width:.1f} x {box.height:.1f} inches at dpi {dpi} would be "
            f"{box.width * box.height * dpi**2 / 1e6:.0f} million pixels; drawn at dpi {fitting}, the most within "
            f"{MAX_FIGURE_PIXELS / 1e6:.0f} million (figures.dpi sets the dpi)"
        )
        dpi = fitting
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


def _legend(ax, loc):
    """A legend of the labelled artists of `ax`, if any."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc=loc, fontsize=8)


def _draw_optimum(loss_ax, acc_ax, optimum, impl, color="black", label="least-squares optimum"):
    """The optimum of a training set (an Optimum) as dashed lines: its loss on `impl`'s loss scale
    (study.LOSS_SCALE) and its test accuracy. An optimum that fits every training image (loss 0 up to
    rounding: fewer images than independent pixels) has no line on the log loss axis; its label says so."""
    loss = optimum.train_loss * LOSS_SCALE[impl]
    if optimum.train_loss > ZERO_LOSS:
        loss_ax.axhline(loss, color=color, **OPTIMUM_STYLE, label=f"{label}: loss {loss:.4g}")
    else:
        label += f" (fits the {optimum.train_size} images: loss 0)"
    acc_ax.axhline(
        optimum.test_accuracy, color=color, **OPTIMUM_STYLE, label=f"{label}: accuracy {optimum.test_accuracy:.4f}"
    )


def plot_run(metrics, info, paths, dpi=150, optimum=None):
    """The original study's side-by-side figure: loss and test accuracy vs. iteration for one run (`info`: its
    RunInfo), with the least-squares optimum of its training set (`optimum`, an Optimum) dashed."""
    fig, loss_ax, acc_ax = _curve_axes(describe_run(info))
    if optimum is not None:  # the legends name the optimum's lines only
        _draw_optimum(loss_ax, acc_ax, optimum, info.params.impl)
        _legend(loss_ax, "upper right")
        _legend(acc_ax, "lower right")
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


@dataclass
class Configuration:
    """The runs of one configuration (they differ only in their seed), for the figures that aggregate them."""

    label: str
    metrics: list  # each run's metrics DataFrame
    infos: list  # each run's RunInfo
    optima: list = field(default_factory=list)  # each run's Optimum (a subset's depends on the seed)

    @property
    def impl(self):
        return self.infos[0].params.impl

    @property
    def final_accuracies(self):
        return np.array([info.final_test_accuracy for info in self.infos])

    @property
    def final_accuracy_std(self):
        """The standard deviation over seeds (n - 1 in the denominator, as summary_by_config.csv); 0 for one."""
        return self.final_accuracies.std(ddof=1) if len(self.infos) > 1 else 0

    @property
    def diverged(self):
        return [info.diverged for info in self.infos]

    def optimum(self):
        """The Optimum of its training set; over several (subsets drawn by different seeds), their mean,
        named after all of them."""
        distinct = list({optimum.training_set: optimum for optimum in self.optima}.values())
        if len(distinct) <= 1:
            return distinct[0] if distinct else None
        return dataclasses.replace(
            distinct[0],
            training_set="|".join(optimum.training_set for optimum in distinct),
            train_loss=float(np.mean([optimum.train_loss for optimum in distinct])),
            test_accuracy=float(np.mean([optimum.test_accuracy for optimum in distinct])),
        )


def smoothed_losses(frames, smoothing):
    """Each run's (iteration, loss) with the loss a rolling mean over `smoothing` iterations, its
    non-finite values left out (a diverged run's last)."""
    return [
        pd.DataFrame({"iteration": m["iteration"], "loss": _finite_loss(m).rolling(smoothing, min_periods=1).mean()})
        for m in frames
    ]


def _seed_curves(frames, column):
    """(x, mean, low, high) of one column over the seeds' curves, aligned on the iteration (a diverged
    seed's curve ends early: the statistics go on over the others)."""
    table = pd.concat([frame.set_index("iteration")[column] for frame in frames], axis=1)
    return table.index, table.mean(axis=1), table.min(axis=1), table.max(axis=1)


def plot_overlay(configurations, title, paths, dpi=150, smoothing=SMOOTHING_WINDOW):
    """Loss and accuracy curves of several configurations (`Configuration`s) on shared axes.

    Loss curves are rolling means over `smoothing` iterations (1: raw). A configuration of one run is
    its curves; of several seeds, their mean with a band from their minimum to their maximum. A diverged
    run's curves end with a cross at the iteration it diverged. The least-squares optima of the training
    sets are drawn dashed, once per training set and loss scale, in the colour of the first
    configuration on it when there are several.
    """
    smoothed_by = f"rolling mean over {smoothing} iterations" if smoothing > 1 else "every iteration"
    seeded = any(len(c.metrics) > 1 for c in configurations)
    bands = "; lines: mean over seeds, bands: min to max" if seeded else ""
    fig, loss_ax, acc_ax = _curve_axes(f"{title}: loss ({smoothed_by}) and test accuracy{bands}")
    colors, tops = [], []  # tops: the highest loss of each configuration that did not diverge
    if len(configurations) > 10:  # more than the default cycle: 20 distinct colours
        for ax in (loss_ax, acc_ax):
            ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    for config in configurations:
        label = config.label
        ends = [end for end in map(diverged_at, config.metrics) if end]
        if len(config.metrics) > 1:
            label += f" ({len(config.metrics)} seeds" + (f", {len(ends)} diverged)" if ends else ")")
        elif ends:
            label += f" (diverged at {ends[0]})"
        smoothed = smoothed_losses(config.metrics, smoothing)
        x, loss, low, high = _seed_curves(smoothed, "loss")
        (line,) = loss_ax.plot(x, loss, linewidth=1, label=label)
        color = line.get_color()
        accuracy = [m.dropna(subset=["test_accuracy"]) for m in config.metrics]
        ax_x, acc, acc_low, acc_high = _seed_curves(accuracy, "test_accuracy")
        acc_ax.plot(ax_x, acc, linewidth=0.8, color=color, label=label)
        if len(config.metrics) > 1:
            loss_ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
            acc_ax.fill_between(ax_x, acc_low, acc_high, color=color, alpha=0.2, linewidth=0)
        for frame, end in zip(smoothed, map(diverged_at, config.metrics)):
            if end:
                loss_ax.plot(end, frame["loss"].dropna().iloc[-1], "x", color=DIVERGED_COLOR, markersize=8)
        colors.append(color)
        if not ends:
            tops.append(high.max())
    if tops and len(tops) < len(configurations):  # diverged curves run off the top, the others stay readable
        loss_ax.set_ylim(top=3 * max(tops))
    lines = {}  # (training set, loss scale) -> (Optimum, impl, colour)
    for config, color in zip(configurations, colors):
        optimum = config.optimum()
        if optimum is not None:
            lines.setdefault((optimum.training_set, LOSS_SCALE[config.impl]), (optimum, config.impl, color))
    # A mean optimum's name joins its training sets' names with "|" (Configuration.optimum).
    datasets = {key: parse_training_set(key[0].split("|")[0])[0] for key in lines}
    for key, (optimum, impl, color) in lines.items():
        subsets = optimum.training_set.count("|") + 1
        mean = f", mean of {subsets} subsets" if subsets > 1 else ""
        dataset = f"{dataset_title(datasets[key])}, " if len(set(datasets.values())) > 1 else ""
        if len(lines) == 1:
            _draw_optimum(loss_ax, acc_ax, optimum, impl, label=f"least-squares optimum{mean}")
        else:
            label = f"optimum, {dataset}{optimum.train_size} images{mean}"
            _draw_optimum(loss_ax, acc_ax, optimum, impl, color, label)
    _legend(loss_ax, "upper right")
    _legend(acc_ax, "best")
    save(fig, paths, dpi)


def plot_final_accuracy(configurations, title, paths, dpi=150):
    """Bar chart of each configuration's final test accuracy (`Configuration`s): one run's, or with
    several seeds their mean, an error bar of one standard deviation and each seed as a dot. Diverged
    runs in red, marked. Over each bar, the test accuracy of the least-squares optimum of its training set."""
    labels = [c.label for c in configurations]
    fig, ax = plt.subplots(figsize=(max(5, 0.6 + max(1.2, 0.09 * max(map(len, labels))) * len(labels)), 4.5))
    seeded = any(len(c.infos) > 1 for c in configurations)
    means = [c.final_accuracies.mean() for c in configurations]
    colors = [DIVERGED_COLOR if any(c.diverged) else "tab:blue" for c in configurations]
    errors = [c.final_accuracy_std for c in configurations]
    ax.bar(range(len(configurations)), means, alpha=0.7, color=colors, yerr=errors if seeded else None, capsize=4)
    for i, (config, mean, error) in enumerate(zip(configurations, means, errors)):
        text = f"{mean:.4f}" + (f"\n± {error:.4f}" if len(config.infos) > 1 else "")
        count = sum(config.diverged)
        text += "" if not count else "\ndiverged" if len(config.infos) == 1 else f"\n{count} diverged"
        # Inside a tall bar (the optimum's line is just above it), above a short one.
        tall = mean > 0.3
        ax.text(
            i,
            mean / 2 if tall else mean + error + 0.02,
            text,
            ha="center",
            va="center" if tall else "bottom",
            fontsize=9,
        )
    if seeded:
        for i, config in enumerate(configurations):
            dots = [DIVERGED_COLOR if d else "black" for d in config.diverged]
            ax.scatter(
                np.full(len(config.infos), i),
                config.final_accuracies,
                s=12,
                c=dots,
                zorder=3,
                label=None if i else "each seed",
            )
    for i, config in enumerate(configurations):
        optimum = config.optimum()
        if optimum is not None:
            ax.hlines(
                optimum.test_accuracy,
                i - 0.45,
                i + 0.45,
                color="black",
                **OPTIMUM_STYLE,
                label=None if i else "least-squares optimum of the training set",
            )
    _legend(ax, "lower right")
    ax.set_xticks(range(len(configurations)), labels)
    what = "mean over seeds, error bars: one standard deviation" if seeded else "final test accuracy"
    ax.set(
        title=as_written(f"{title}: {what}", fig.get_figwidth()),
        ylabel="test accuracy at the last iteration",
        ylim=(0, 1),
    )
    save(fig, paths, dpi)


def plot_learning_rates(lines, title, paths, dpi=150):
    """Final test accuracy against the learning rate (log axis), one line per `lines` entry: (label,
    {lr: Configuration}). Several seeds: the mean with an error bar of one standard deviation. A diverged
    run is drawn, not dropped: a red cross at its final accuracy, labelled with the iteration it diverged at."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for number, (label, by_lr) in enumerate(lines):
        rates = sorted(by_lr)
        means = [by_lr[lr].final_accuracies.mean() for lr in rates]
        errors = [by_lr[lr].final_accuracy_std for lr in rates]
        ax.errorbar(rates, means, yerr=errors, marker="o", markersize=4, capsize=3, label=label)
        for lr in rates:
            diverged = [info for info in by_lr[lr].infos if info.diverged]
            for info in diverged:
                ax.plot(lr, info.final_test_accuracy, "x", color=DIVERGED_COLOR, markersize=9)
            if diverged:
                at = ", ".join(sorted({str(info.diverged_at_iteration) for info in diverged}, key=int))
                ax.annotate(
                    f"{label}: {len(diverged)} of {len(by_lr[lr].infos)} diverged, at iteration {at}",
                    (lr, max(info.final_test_accuracy for info in diverged)),
                    textcoords="offset points",
                    xytext=(-6, 8 + 11 * number),
                    ha="right",
                    fontsize=8,
                    color=DIVERGED_COLOR,
                )
    ax.plot([], [], "x", color=DIVERGED_COLOR, label="diverged run (at its final accuracy)")
    ax.set_xscale("log")
    ax.set(
        title=as_written(f"{title}: final test accuracy vs. learning rate", fig.get_figwidth()),
        xlabel="learning rate",
        ylabel="test accuracy at the last iteration",
        ylim=(0, 1),
    )
    ax.legend(loc="lower left", fontsize=8)
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
