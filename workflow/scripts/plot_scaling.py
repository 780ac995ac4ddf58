"""Rules plot_steps_to_target, plot_noise_scale and plot_train_size: a group's batch-size and
training-set-size analysis (mnist_sgd.figures.scaling), from a summary of its runs."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

from mnist_sgd.analysis.scaling import batch_scaling, critical_batch  # noqa: E402
from mnist_sgd.analysis.summary import summarize  # noqa: E402
from mnist_sgd.figures.common import titled_with_datasets  # noqa: E402
from mnist_sgd.figures.scaling import plot_noise_scales, plot_steps_to_target, plot_train_size_curve  # noqa: E402
from mnist_sgd.study.plan import group_title
from mnist_sgd.study.records import RunInfo, run_name  # noqa: E402
from mnist_sgd.study.runs import configuration  # noqa: E402

inputs, params, rule = snakemake.input, snakemake.params, snakemake.rule
infos = [RunInfo.read(path) for path in inputs.infos]
title = titled_with_datasets(group_title(snakemake.config, snakemake.wildcards.group), infos)
if rule == "plot_steps_to_target":

    def targets_of(dataset):
        return params.targets.get(dataset, [])

    table = summarize(inputs.infos, metrics_paths=inputs.metrics, targets_of=targets_of, window=params.window)
    scaling = batch_scaling(table, targets_of)
    plot_steps_to_target(scaling, critical_batch(scaling, table), title, snakemake.output, params.dpi)
elif rule == "plot_noise_scale":
    measured = {}
    for path, info in zip(inputs.infos, infos):
        if info.noise_scale and info.noise_scale["iteration"]:
            key = configuration(run_name(path))
            measured.setdefault(key, (info.params.batch_size, info.params.lr, []))[2].append(info.noise_scale)
    plot_noise_scales(list(measured.values()), title, snakemake.output, params.dpi)
else:
    plot_train_size_curve(summarize(inputs.infos, optimum_paths=inputs.optima), title, snakemake.output, params.dpi)
