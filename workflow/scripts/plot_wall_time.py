"""Rule plot_wall_time: training wall time of every run."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mnist_sgd.worker import delegate  # noqa: E402

if delegate(sys.argv[0], snakemake.log[0], snakemake.config["worker"]):
    sys.exit(0)  # the worker's child ran this script

import pandas as pd  # noqa: E402

from mnist_sgd.plots import plot_wall_time  # noqa: E402

plot_wall_time(pd.read_csv(snakemake.input.summary), snakemake.output, snakemake.params.dpi)
