"""Rule train: one run of the shared training program with the run's wildcards as parameters."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mnist_sgd.train import TrainConfig, run  # noqa: E402

wildcards = snakemake.wildcards
config = TrainConfig(
    impl=wildcards.impl,
    train_size=None if wildcards.train_size == "all" else int(wildcards.train_size),
    batch_size=int(wildcards.batch_size),
    iterations=int(wildcards.iterations),
    lr=float(wildcards.lr),
    seed=int(wildcards.seed),
    eval_every=snakemake.params.eval_every,
    device=snakemake.params.device,
)
run(
    snakemake.input.data,
    snakemake.output.metrics,
    snakemake.output.info,
    config,
    threads=snakemake.threads,
    log=lambda message: print(message, file=sys.stderr),
)
