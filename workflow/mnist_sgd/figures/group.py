"""The figures of a group of runs (a sweep or a comparison): curves overlaid, final accuracy, accuracy
against learning rate, and the wall time of every run.
"""

import matplotlib.pyplot as plt
import numpy as np

from ..study.datasets import dataset_title
from ..study.runs import LOSS_SCALE, configurations, parse_training_set
from .common import (
    DIVERGED_COLOR,
    OPTIMUM_STYLE,
    SMOOTHING_WINDOW,
    add_legend,
    as_written,
    curve_axes,
    diverged_at,
    draw_optimum,
    save,
    seed_curves,
    smoothed_losses,
)


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
    fig, loss_ax, acc_ax = curve_axes(f"{title}: loss ({smoothed_by}) and test accuracy{bands}")
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
        x, loss, low, high = seed_curves(smoothed, "loss")
        (line,) = loss_ax.plot(x, loss, linewidth=1, label=label)
        color = line.get_color()
        accuracy = [m.dropna(subset=["test_accuracy"]) for m in config.metrics]
        ax_x, acc, acc_low, acc_high = seed_curves(accuracy, "test_accuracy")
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
            draw_optimum(loss_ax, acc_ax, optimum, impl, label=f"least-squares optimum{mean}")
        else:
            label = f"optimum, {dataset}{optimum.train_size} images{mean}"
            draw_optimum(loss_ax, acc_ax, optimum, impl, color, label)
    add_legend(loss_ax, "upper right")
    add_legend(acc_ax, "best")
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
    add_legend(ax, "lower right")
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
    """Horizontal bar chart of the training wall time: a bar per run, or, where a configuration has
    several seeds, a bar per configuration (their mean, a line from the fastest to the slowest, each
    seed a dot), so that a grid of hundreds of runs is a chart of its few configurations."""
    groups = configurations(summary["run"])
    seconds = summary.set_index("run")["wall_seconds"]
    devices = summary.set_index("run")["device"]
    runs = list(groups.values())
    seeded = any(len(members) > 1 for members in runs)
    names = list(groups) if seeded else [members[0] for members in runs]
    times = [seconds.loc[members].to_numpy(dtype=float) for members in runs]
    means = [t.mean() for t in times]
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.4 * len(names)))
    bars = ax.barh(names, means, alpha=0.7)
    labels = []
    for members, t, mean in zip(runs, times, means):
        on = ", ".join(dict.fromkeys(devices.loc[members]))
        labels.append(f"{mean:.2f} s on {on}" if len(t) == 1 else f"mean {mean:.2f} s ({len(t)} seeds) on {on}")
    if seeded:
        spans = np.array([[mean - t.min(), t.max() - mean] for t, mean in zip(times, means)]).T
        ax.errorbar(means, range(len(names)), xerr=spans, fmt="none", ecolor="black", capsize=3)
        for i, (t, label) in enumerate(zip(times, labels)):
            ax.scatter(t, np.full(len(t), i), s=8, color="black", zorder=3, label=None if i else "each seed")
            ax.annotate(label, (t.max(), i), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.bar_label(bars, labels=labels, fontsize=8, padding=2)
    ax.invert_yaxis()
    what = "per configuration: mean over seeds, lines from the fastest to the slowest" if seeded else "per run"
    ax.set(title=as_written(f"Training wall time {what} (data loading excluded)", 9), xlabel="seconds")
    ax.margins(x=0.3)
    if seeded:  # room for the labels beyond the slowest seed, which autoscaling does not see
        ax.set_xlim(right=max(ax.get_xlim()[1], 1.5 * max(t.max() for t in times)))
    save(fig, paths, dpi)
