"""What every figure shares: its look, how it is saved (every format, bounded in pixels, atomically), how
a run is described and its curves drawn, and a configuration's seeds gathered for an overlay.
"""

import dataclasses
import math
import sys
import textwrap
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..study.datasets import DEFAULT_DATASET, dataset_title
from ..study.files import atomic_path
from ..study.runs import LOSS_SCALE

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


def finite_loss(metrics):
    return metrics["train_loss"].where(np.isfinite(metrics["train_loss"]))


def mark_divergence(axes, iteration):
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
    # The box "tight" would write, measured once, after the figure's layout engine (if any) has placed its
    # axes, as savefig's first draw would: given the box, savefig draws each format once, where "tight"
    # draws it twice. Measured at the dpi it is drawn at (the same box), unless that canvas would exceed
    # MAX_FIGURE_PIXELS (then at the figure's own dpi: within a pixel or two, in far less memory).
    if fig.get_size_inches().prod() * dpi**2 <= MAX_FIGURE_PIXELS:
        fig.set_dpi(dpi)
    if fig.get_layout_engine() is not None:
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
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
            fig.savefig(tmp, dpi=dpi, format=str(path).rsplit(".", 1)[1], bbox_inches=box)
    plt.close(fig)


def as_written(text, inches):
    """`text` drawn as written, in lines that fit `inches` of figure width: matplotlib would read text
    between two $ signs as math (and fail on bad math)."""
    return "\n".join(textwrap.wrap(text, width=max(30, int(inches * 9)))).replace("$", r"\$")


def curve_axes(title):
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


def accuracy_points(metrics):
    evaluated = metrics.dropna(subset=["test_accuracy"])
    return evaluated["iteration"], evaluated["test_accuracy"]


def add_legend(ax, loc):
    """A legend of the labelled artists of `ax`, if any."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc=loc, fontsize=8)


def draw_optimum(loss_ax, acc_ax, optimum, impl, color="black", label="least-squares optimum"):
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
        pd.DataFrame({"iteration": m["iteration"], "loss": finite_loss(m).rolling(smoothing, min_periods=1).mean()})
        for m in frames
    ]


def seed_curves(frames, column):
    """(x, mean, low, high) of one column over the seeds' curves, aligned on the iteration (a diverged
    seed's curve ends early: the statistics go on over the others)."""
    table = pd.concat([frame.set_index("iteration")[column] for frame in frames], axis=1)
    return table.index, table.mean(axis=1), table.min(axis=1), table.max(axis=1)
