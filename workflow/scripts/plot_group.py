"""Rule plot_group: overlaid curves and final test accuracy of every run of a sweep or a comparison."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mnist_sgd.plots import plot_final_accuracy, plot_overlay, read_metrics  # noqa: E402
from mnist_sgd.records import RunInfo  # noqa: E402
from mnist_sgd.study import group_title  # noqa: E402

params = snakemake.params
title = group_title(snakemake.config, snakemake.wildcards.group)
metrics = [read_metrics(path) for path in snakemake.input.metrics]
infos = [RunInfo.read(path) for path in snakemake.input.infos]
plot_overlay(list(zip(params.labels, metrics)), title, snakemake.output.curves, params.dpi, params.smoothing)
plot_final_accuracy(
    params.labels,
    [info.final_test_accuracy for info in infos],
    title,
    snakemake.output.final_accuracy,
    params.dpi,
    diverged=[info.diverged for info in infos],
)
