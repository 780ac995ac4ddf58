"""Rule tensorboard: results/tensorboard/, the runs' curves, noise scales and hyperparameters for
`tensorboard --logdir results/tensorboard`, from their records (mnist_sgd.analysis.tensorboard)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

import pandas as pd  # noqa: E402

from mnist_sgd.analysis.tensorboard import TensorBoardMissing, write_logdir  # noqa: E402

logdir = Path(snakemake.output.manifest).parent
try:
    write_logdir(
        pd.read_csv(snakemake.input.summary), "results/runs", logdir, log=lambda line: print(line, file=sys.stderr)
    )
except TensorBoardMissing as error:
    sys.exit(f"error: {error}")
