"""Rule plot_steps_to_target: a group's steps and examples to each target accuracy against batch size,
with the critical batch size fitted (mnist_sgd.figures.scaling), from a summary of its runs."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

from mnist_sgd.analysis.scaling import batch_scaling, critical_batch  # noqa: E402
from mnist_sgd.analysis.summary import summarize  # noqa: E402
from mnist_sgd.figures.common import titled_with_datasets  # noqa: E402
from mnist_sgd.figures.scaling import plot_steps_to_target  # noqa: E402
from mnist_sgd.study.plan import group_title  # noqa: E402
from mnist_sgd.study.records import RunInfo  # noqa: E402

inputs, params = snakemake.input, snakemake.params
infos = [RunInfo.read(path) for path in inputs.infos]
title = titled_with_datasets(group_title(snakemake.config, snakemake.wildcards.group), infos)


def targets_of(dataset):
    return params.targets.get(dataset, [])


table = summarize(inputs.infos, metrics_paths=inputs.metrics, targets_of=targets_of, window=params.window)
scaling = batch_scaling(table, targets_of)
plot_steps_to_target(scaling, critical_batch(scaling, table), title, snakemake.output, params.dpi)
