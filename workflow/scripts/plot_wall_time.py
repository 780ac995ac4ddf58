"""Rule plot_wall_time: training wall time of every run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

import pandas as pd  # noqa: E402

from mnist_sgd.figures.group import plot_wall_time  # noqa: E402

plot_wall_time(pd.read_csv(snakemake.input.summary), snakemake.output, snakemake.params.dpi)
