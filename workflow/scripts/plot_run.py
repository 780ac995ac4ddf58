"""Rule plot_run: one run's figures: loss and accuracy curves with the optimum of its training set, its final
weight as ten images, and its test-set confusion matrix."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

import numpy as np  # noqa: E402

from mnist_sgd.figures.common import describe_run
from mnist_sgd.figures.run import plot_confusion, plot_run, plot_weights  # noqa: E402
from mnist_sgd.study.datasets import class_names  # noqa: E402
from mnist_sgd.study.records import Optimum, RunInfo, read_metrics  # noqa: E402

inputs, output, dpi = snakemake.input, snakemake.output, snakemake.params.dpi
info = RunInfo.read(inputs.info)
plot_run(read_metrics(inputs.metrics), info, output.curves, dpi, optimum=Optimum.read(inputs.optimum))
title = describe_run(info) + (f" (diverged at iteration {info.diverged_at_iteration})" if info.diverged else "")
names = class_names(info.params.dataset)
plot_weights(np.load(inputs.weights, allow_pickle=False), title, output.weights, dpi, class_names=names)
plot_confusion(info.confusion, title, output.confusion, dpi, class_names=names)
