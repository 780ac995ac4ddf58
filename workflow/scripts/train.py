"""Rule train: one run of the shared training program with the run's wildcards as parameters, in a child
of the warm training worker (mnist_sgd.worker) or, on a cluster or with `training_worker: false`, here."""

import dataclasses
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mnist_sgd import worker  # noqa: E402
from mnist_sgd.study import RUN_PATTERN, dataset_sha256, run_config  # noqa: E402

# The run's name says what it computes; the device and CUDA graphs, read from the config rather than
# passed as rule parameters, say only how: changing them must not retrain (or delete) finished runs.
config = run_config(RUN_PATTERN.format(**snakemake.wildcards), device=snakemake.config["device"])
request = dict(
    data_path=snakemake.params.cache,
    metrics_path=snakemake.output.metrics,
    info_path=snakemake.output.info,
    config=dataclasses.asdict(config),
    weights_path=snakemake.output.weights,
    threads=1,  # always: the metrics must not depend on --cores (see rule train)
    cuda_graphs=snakemake.config["cuda_graphs"],
    data_sources=dataset_sha256(snakemake.config, config.dataset),
    rebuild_from=list(snakemake.params.idx_files),
)
status = None
if snakemake.config["training_worker"] and worker.usable():
    try:
        status = worker.train_run(request, snakemake.log[0])
    except worker.Unavailable as error:
        print(f"{error}; training in this job's own process", file=sys.stderr)
if status is None:
    from mnist_sgd.train import run_request

    run_request(request, log=lambda message: print(message, file=sys.stderr))
elif status != 0:
    sys.exit(f"training failed in the worker's child (exit status {status}); its log is {snakemake.log[0]}")
