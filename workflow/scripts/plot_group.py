"""Rule plot_group: overlaid curves and final test accuracy of every configuration of a sweep or a
comparison (the runs of a configuration differ only in their seed, and are aggregated)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

from mnist_sgd.figures.common import Configuration, titled_with_datasets
from mnist_sgd.figures.grid import grid_panels, plot_accuracy_heatmap, plot_grid_curves  # noqa: E402
from mnist_sgd.figures.group import plot_final_accuracy, plot_overlay  # noqa: E402
from mnist_sgd.study.plan import group_title
from mnist_sgd.study.records import Optimum, RunInfo, read_metrics, run_name  # noqa: E402
from mnist_sgd.study.runs import configurations  # noqa: E402

params = snakemake.params
title = group_title(snakemake.config, snakemake.wildcards.group)
runs = [run_name(path) for path in snakemake.input.infos]
# The inputs are in the order of `runs`, one per run.
metrics = dict(zip(runs, map(read_metrics, snakemake.input.metrics)))
infos = dict(zip(runs, map(RunInfo.read, snakemake.input.infos)))
optima = dict(zip(runs, map(Optimum.read, snakemake.input.optima)))
groups = [
    Configuration(label, [metrics[r] for r in members], [infos[r] for r in members], [optima[r] for r in members])
    for label, members in zip(params.labels, configurations(runs).values())
]
title = titled_with_datasets(title, infos.values())
panels = grid_panels(groups)  # a grid of batch sizes and learning rates: figures that read at its size
if panels is None:
    plot_overlay(groups, title, snakemake.output.curves, params.dpi, params.smoothing)
    plot_final_accuracy(groups, title, snakemake.output.final_accuracy, params.dpi)
else:
    plot_grid_curves(panels, title, snakemake.output.curves, params.dpi, params.smoothing)
    plot_accuracy_heatmap(panels, title, snakemake.output.final_accuracy, params.dpi)
