"""Rule plot_noise_scale: the gradient noise scales a group's runs measured, per configuration
(mnist_sgd.figures.scaling)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

from mnist_sgd.figures.common import titled_with_datasets  # noqa: E402
from mnist_sgd.figures.scaling import plot_noise_scales  # noqa: E402
from mnist_sgd.study.plan import group_title  # noqa: E402
from mnist_sgd.study.records import RunInfo, run_name  # noqa: E402
from mnist_sgd.study.runs import configuration  # noqa: E402

inputs, params = snakemake.input, snakemake.params
infos = [RunInfo.read(path) for path in inputs.infos]
title = titled_with_datasets(group_title(snakemake.config, snakemake.wildcards.group), infos)
measured = {}
for path, info in zip(inputs.infos, infos):
    if info.noise_scale and info.noise_scale["iteration"]:
        key = configuration(run_name(path))
        measured.setdefault(key, (info.params.batch_size, info.params.lr, []))[2].append(info.noise_scale)
plot_noise_scales(list(measured.values()), title, snakemake.output, params.dpi)
