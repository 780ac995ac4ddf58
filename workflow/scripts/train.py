"""Rule train: one run of the shared training program with the run's wildcards as parameters."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mnist_sgd.study import RUN_PATTERN, run_config  # noqa: E402
from mnist_sgd.train import run  # noqa: E402

config = run_config(
    RUN_PATTERN.format(**snakemake.wildcards), eval_every=snakemake.params.eval_every, device=snakemake.params.device
)
run(
    snakemake.input.data,
    snakemake.output.metrics,
    snakemake.output.info,
    config,
    threads=snakemake.threads,
    log=lambda message: print(message, file=sys.stderr),
)
