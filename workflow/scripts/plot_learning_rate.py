"""Rule plot_learning_rate: final test accuracy against the learning rate, for a sweep or comparison
with several learning rates (one line per configuration but for its learning rate; seeds aggregated)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

from mnist_sgd.figures.common import Configuration, titled_with_datasets
from mnist_sgd.figures.group import plot_learning_rates  # noqa: E402
from mnist_sgd.study.plan import group_title
from mnist_sgd.study.records import RunInfo, run_name  # noqa: E402
from mnist_sgd.study.targets import learning_rate_lines  # noqa: E402

params = snakemake.params
infos = {run_name(path): RunInfo.read(path) for path in snakemake.input.infos}
lines = [
    (label, {lr: Configuration(label, [], [infos[r] for r in members]) for lr, members in line.items()})
    for label, line in zip(params.labels, learning_rate_lines(list(infos)))
]
title = titled_with_datasets(group_title(snakemake.config, snakemake.wildcards.group), infos.values())
plot_learning_rates(lines, title, snakemake.output, params.dpi)
