"""Rule plot_run: loss and accuracy curves of one run, with the optimum of its training set."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mnist_sgd.plots import plot_run, read_metrics  # noqa: E402
from mnist_sgd.records import Optimum, RunInfo  # noqa: E402

plot_run(
    read_metrics(snakemake.input.metrics),
    RunInfo.read(snakemake.input.info),
    snakemake.output,
    snakemake.params.dpi,
    optimum=Optimum.read(snakemake.input.optimum),
)
