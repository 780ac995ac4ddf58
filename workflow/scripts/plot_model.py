"""Rule plot_model: what one run learned: its final weight as ten images, and its test-set confusion matrix."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

import numpy as np  # noqa: E402

from mnist_sgd.plots import describe_run, plot_confusion, plot_weights  # noqa: E402
from mnist_sgd.records import RunInfo  # noqa: E402
from mnist_sgd.study import class_names  # noqa: E402

info = RunInfo.read(snakemake.input.info)
title = describe_run(info) + (f" (diverged at iteration {info.diverged_at_iteration})" if info.diverged else "")
params = snakemake.params
names = class_names(info.params.dataset)
weight = np.load(snakemake.input.weights, allow_pickle=False)
plot_weights(weight, title, snakemake.output.weights, params.dpi, class_names=names)
plot_confusion(info.confusion, title, snakemake.output.confusion, params.dpi, class_names=names)
