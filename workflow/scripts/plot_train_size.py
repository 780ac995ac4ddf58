"""Rule plot_train_size: a group's final test accuracy against training-set size, with each training
set's least-squares optimum (mnist_sgd.figures.scaling), from a summary of its runs."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

from mnist_sgd.analysis.summary import summarize  # noqa: E402
from mnist_sgd.figures.common import titled_with_datasets  # noqa: E402
from mnist_sgd.figures.scaling import plot_train_size_curve  # noqa: E402
from mnist_sgd.study.plan import group_title  # noqa: E402
from mnist_sgd.study.records import RunInfo  # noqa: E402

inputs, params = snakemake.input, snakemake.params
infos = [RunInfo.read(path) for path in inputs.infos]
title = titled_with_datasets(group_title(snakemake.config, snakemake.wildcards.group), infos)
plot_train_size_curve(summarize(inputs.infos, optimum_paths=inputs.optima), title, snakemake.output, params.dpi)
