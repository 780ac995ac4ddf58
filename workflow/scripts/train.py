"""Rule train: one run of the shared training program with the run's wildcards as parameters."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

from mnist_sgd.execution.devices import pick_device  # noqa: E402
from mnist_sgd.study.datasets import dataset_sha256
from mnist_sgd.study.records import TrainingInputs  # noqa: E402
from mnist_sgd.study.runs import RUN_PATTERN, run_config  # noqa: E402
from mnist_sgd.training.train import run  # noqa: E402

# The run's name says what it computes; the device and CUDA graphs, read from the config rather than
# passed as rule parameters, say only how: changing them must not retrain (or delete) finished runs.
config = run_config(RUN_PATTERN.format(**snakemake.wildcards), device=snakemake.config["device"])
log = lambda message: print(message, file=sys.stderr)  # noqa: E731
run(
    snakemake.params.cache,
    snakemake.output.metrics,
    snakemake.output.info,
    config,
    pick_device(config.device, log, snakemake.config["jobs_per_gpu"]),
    weights_path=snakemake.output.weights,
    threads=1,  # always: the metrics must not depend on --cores (see rule train)
    cuda_graphs=snakemake.config["cuda_graphs"],
    noise_points=snakemake.params.inputs["noise_points"],
    curvature_path=snakemake.params.curvature,
    data_sources=dataset_sha256(snakemake.config, config.dataset),
    rebuild_from=snakemake.params.idx_files,
    inputs=TrainingInputs(**snakemake.params.inputs),
    log=log,
)
