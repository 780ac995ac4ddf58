"""Figures of the batch-size and training-set-size analysis (mnist_sgd.analysis.scaling, mnist_sgd.training.noise): steps
and examples to a target against batch size, the gradient noise scales along training, and test
accuracy against training-set size. Each reads a summary table of its group's runs
(mnist_sgd.analysis.summary.summarize), so it draws at 4 runs as at 200."""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import FuncFormatter

from ..study.datasets import dataset_title
from ..study.runs import PROBLEM, training_set_name
from .common import OPTIMUM_STYLE, as_written, save

PLAIN = FuncFormatter(lambda value, _: f"{value:g}")  # 1, 10, 1000 rather than 10^0, 10^1, 10^3


def problem_label(problem, several_datasets=True):
    """How a legend names a training problem (mnist_sgd.study.runs.PROBLEM values)."""
    dataset, impl, sampling, train_size = problem
    parts = [dataset_title(dataset)] if several_datasets else []
    parts += [f"{int(train_size)} images", impl]
    if sampling != "with_replacement":
        parts.append(sampling)
    return ", ".join(parts)


def _message(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)


def plot_steps_to_target(scaling, fits, title, paths, dpi=150):
    """Steps (left) and examples (right) to each target against batch size, log-log: for each training
    problem and target, the best learning rate's mean over seeds with a min-max band, the fit of
    S = S_min (1 + B_crit / B) (dashed), perfect scaling from the smallest batch size (dotted, slope -1
    on the left, flat on the right), and the measured B_noise at the start and at the end of training
    (vertical lines), beside B_crit in the legend."""
    fig, (steps_ax, examples_ax) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
    curves = scaling.dropna(subset=["steps_mean"])
    fits = fits.set_index(PROBLEM + ["target"]) if len(fits) else fits
    several = curves["dataset"].nunique() > 1
    handles, noise_drawn = [], set()
    for color, (key, curve) in zip(plt.get_cmap("tab10").colors, curves.groupby(PROBLEM + ["target"], sort=True)):
        b = curve["batch_size"].to_numpy(float)
        steps, low, high = (curve[c].to_numpy(float) for c in ("steps_mean", "steps_min", "steps_max"))
        label = f"{problem_label(key[:-1], several)}: target {key[-1]:g}"
        fit = fits.loc[key] if key in fits.index else None
        fitted = fit is not None and np.isfinite(fit["b_crit"])
        if fitted:
            spread = f" ± {fit['b_crit_std']:.2g}" if np.isfinite(fit["b_crit_std"]) else ""
            label += f"; B_crit = {fit['b_crit']:.3g}{spread}"
        if fit is not None and np.isfinite(fit["b_noise_end"]):
            # At the end of the runs drawn (the best learning rate's, per batch size): a curve's own.
            label += f"; B_noise at the end {fit['b_noise_end']:.3g}"
            for ax in (steps_ax, examples_ax):
                ax.axvline(fit["b_noise_end"], color=color, linestyle=(0, (1, 3)), linewidth=1)
        perfect = steps[0] * b[0] / b  # steps halve as the batch doubles: examples stay those of the smallest
        for ax, scale in ((steps_ax, 1), (examples_ax, b)):
            ax.plot(b, steps * scale, "o-", color=color, linewidth=1.2, markersize=4)
            if (high > low).any():
                ax.fill_between(b, low * scale, high * scale, color=color, alpha=0.2, linewidth=0)
            ax.plot(b, perfect * scale, ":", color="grey", linewidth=1)
        handles.append(plt.Line2D([], [], color=color, marker="o", label=label))
        if fitted:
            dense = np.geomspace(b.min(), b.max(), 100)
            fitted = fit["s_min"] * (1 + fit["b_crit"] / dense)
            steps_ax.plot(dense, fitted, "--", color=color, linewidth=1)
            examples_ax.plot(dense, fitted * dense, "--", color=color, linewidth=1)
        start = fit["b_noise_start"] if fit is not None else np.nan
        if np.isfinite(start) and key[:-1] not in noise_drawn:  # at W = 0: the same for every target
            noise_drawn.add(key[:-1])
            for ax in (steps_ax, examples_ax):
                ax.axvline(start, color=color, linestyle="-.", linewidth=1)
            name = f"{problem_label(key[:-1], several)}: " if len(curves.groupby(PROBLEM)) > 1 else ""
            handles.append(
                plt.Line2D([], [], color=color, linestyle="-.", label=f"{name}B_noise at the start {start:.3g}")
            )
    steps_ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="steps to the target (best learning rate)")
    examples_ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="examples to the target (steps x batch)")
    for ax in (steps_ax, examples_ax):
        ax.xaxis.set_major_formatter(PLAIN)
    if len(curves):  # the perfect-scaling lines fall far below the data at large batches: not to scale
        steps_ax.set_ylim(bottom=curves["steps_min"].min() / 3)
    if not handles:
        for ax in (steps_ax, examples_ax):
            _message(ax, "no batch size reached a target with every seed")
    handles += [
        plt.Line2D([], [], color="grey", linestyle=":", label="perfect scaling from the smallest batch"),
        plt.Line2D([], [], color="black", linestyle="--", label="fit S = S_min (1 + B_crit / B)"),
        plt.Line2D([], [], color="black", linestyle="-.", label="B_noise at the start (W = 0)"),
        plt.Line2D([], [], color="black", linestyle=(0, (1, 3)), label="B_noise at the end (median of the runs drawn)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    what = "steps and examples to a target test accuracy; lines: mean over seeds, bands: min to max"
    fig.suptitle(as_written(f"{title}: {what}", fig.get_figwidth()))
    save(fig, paths, dpi)


SCALES = {"b_simple": "B_simple = tr(Σ) / |G|²", "b_noise": "B_noise = tr(HΣ) / GᵀHG"}


def plot_noise_scales(records, title, paths, dpi=150):
    """B_simple and B_noise against iteration (log, 0 the start), one line per configuration (the
    median over its seeds that measured to the end: a diverged seed's stop early), coloured by batch
    size; with several learning rates, a column of the two per learning rate, so that each panel holds
    one line per batch size. `records`: (batch size, learning rate, [noise_scale record of each seed])."""
    rates = sorted({lr for _, lr, _ in records})
    shape, size = ((1, 2), (13, 4.8)) if len(rates) == 1 else ((2, len(rates)), (3.3 * len(rates) + 1.5, 7.5))
    fig, grid = plt.subplots(
        *shape, figsize=size, layout="constrained", sharex=True, sharey="row" if len(rates) > 1 else False
    )
    axes = {
        (scale, lr): grid.flat[i] if len(rates) == 1 else grid[i, j]
        for j, lr in enumerate(rates)
        for i, scale in enumerate(SCALES)
    }
    batch_sizes = sorted({b for b, _, _ in records})
    norm = LogNorm(min(batch_sizes), max(batch_sizes)) if len(batch_sizes) > 1 else None
    cmap = plt.get_cmap("viridis")
    for batch_size, lr, seeds in records:
        color = cmap(0.9 * norm(batch_size)) if norm else "tab:blue"
        iterations = max((seed["iteration"] for seed in seeds), key=len)  # a diverged seed's are fewer
        for scale in SCALES:
            values = np.array(
                [[np.nan if v is None else v for v in seed[scale]] for seed in seeds if seed["iteration"] == iterations]
            )
            with warnings.catch_warnings():  # an iteration where no seed's value was finite stays a gap
                warnings.simplefilter("ignore", RuntimeWarning)
                median = np.nanmedian(values, axis=0)
            axes[scale, lr].plot(iterations, median, color=color, linewidth=1)
    for (scale, lr), ax in axes.items():
        name = SCALES[scale] if len(rates) == 1 else f"{SCALES[scale].split(' =')[0]}, lr {lr:g}"
        ax.set(xscale="symlog", yscale="log", title=name)
        ax.set_xlim(left=0)
        ax.xaxis.set_major_formatter(PLAIN)
    for ax in grid.flat:
        if ax.get_subplotspec().is_last_row():
            ax.set_xlabel("iteration (0: the start, W = 0)")
        if ax.get_subplotspec().is_first_col() or len(rates) == 1:
            ax.set_ylabel("examples")
    if norm:
        mappable = plt.cm.ScalarMappable(norm=LogNorm(min(batch_sizes), max(batch_sizes) / 0.9), cmap=cmap)
        fig.colorbar(mappable, ax=grid, label="batch size", shrink=0.9)
    names = "" if len(rates) == 1 else f"; rows: {SCALES['b_simple']} and {SCALES['b_noise']}"
    fig.suptitle(as_written(f"{title}: gradient noise scales over the training set, median over seeds{names}", size[0]))
    save(fig, paths, dpi)


def plot_train_size_curve(table, title, paths, dpi=150):
    """Test accuracy against training-set size (log): SGD's final accuracy for each setting (mean over
    seeds and subsets, band min to max), the exact least-squares optimum's, and on the right axis the
    rank of each training set's images (how many independent pixel directions it spans)."""
    fig, ax = plt.subplots(figsize=(10, 5.5), layout="constrained")
    rank_ax = ax.twinx()
    finished = table[table["status"].isin(["ok", "diverged"])].copy()
    # A sweep whose batch is its training-set size (the original study's) is one line, "batch = size".
    finished["tied"] = finished["batch_size"] == finished["train_size"]
    tied = finished.groupby(["dataset", "impl", "sampling", "lr", "iterations"])["tied"].transform("all")
    finished["batch"] = np.where(tied, "= size", finished["batch_size"].astype(str))
    several = finished["dataset"].nunique() > 1
    settings = ["dataset", "impl", "sampling", "batch", "lr", "iterations"]
    colors = iter(plt.get_cmap("tab10").colors)
    for dataset, runs in finished.groupby("dataset", sort=True):
        for setting, line in runs.groupby(settings, sort=True):
            color = next(colors)
            stats = line.groupby("train_size")["final_test_accuracy"].agg(["mean", "min", "max"])
            label = f"SGD, batch {setting[3]}, lr {setting[4]:g}, {setting[5]} iterations, {setting[1]}"
            ax.plot(
                stats.index,
                stats["mean"],
                "o-",
                color=color,
                markersize=4,
                label=(f"{dataset_title(dataset)}: " if several else "") + label,
            )
            ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.2, linewidth=0)
        if runs["optimum_test_accuracy"].notna().any():
            sets = runs.assign(training_set=runs["run"].map(training_set_name)).drop_duplicates("training_set")
            optimum = sets.groupby("train_size")[["optimum_test_accuracy", "optimum_rank"]]
            best = optimum.agg(["mean", "min", "max"])
            sizes = best.index
            name = (f"{dataset_title(dataset)}: " if several else "") + "least-squares optimum (minimum norm)"
            ax.plot(
                sizes,
                best[("optimum_test_accuracy", "mean")],
                color="black",
                marker="s",
                markersize=3,
                label=name,
                **OPTIMUM_STYLE,
            )
            ax.fill_between(
                sizes,
                best[("optimum_test_accuracy", "min")],
                best[("optimum_test_accuracy", "max")],
                color="black",
                alpha=0.1,
                linewidth=0,
            )
            rank_ax.plot(
                sizes,
                best[("optimum_rank", "mean")],
                "^",
                color="tab:grey",
                markersize=5,
                label="rank of the training images",
            )
    ax.set(xscale="log", ylim=(0, 1), xlabel="training-set size (images)", ylabel="test accuracy")
    rank_ax.set(yscale="log", ylabel="rank (independent pixel directions)")
    ax.xaxis.set_major_formatter(PLAIN)
    rank_ax.yaxis.set_major_formatter(PLAIN)
    rank_ax.yaxis.set_minor_formatter(PLAIN)
    handles = ax.get_legend_handles_labels()[0] + rank_ax.get_legend_handles_labels()[0]
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=8)
    fig.suptitle(
        as_written(f"{title}: test accuracy against training-set size; bands: min to max over seeds and subsets", 10)
    )
    save(fig, paths, dpi)
