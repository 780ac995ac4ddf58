"""Rule optimum: the exact least-squares optimum of one training set (mnist_sgd.training.optimum)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

import torch  # noqa: E402

from mnist_sgd.data.cache import load_cache  # noqa: E402
from mnist_sgd.study.datasets import dataset_sha256
from mnist_sgd.study.runs import parse_training_set  # noqa: E402
from mnist_sgd.training.optimum import optimum  # noqa: E402

torch.set_num_threads(snakemake.threads)
data = load_cache(
    snakemake.params.cache,
    sources=dataset_sha256(snakemake.config, parse_training_set(snakemake.wildcards.training_set)[0]),
    rebuild_from=snakemake.params.idx_files,
    log=lambda message: print(message, file=sys.stderr),
)
result = optimum(data, snakemake.wildcards.training_set, snakemake.output.curvature)
result.write(snakemake.output.json)
print(
    f"{result.training_set}: {result.train_size} images, rank {result.rank} (smallest singular value "
    f"{result.min_singular_value:.4g}), largest Hessian eigenvalue {result.max_hessian_eigenvalue:.4g} "
    f"(SGD is stable for lr < {2 / result.max_hessian_eigenvalue:.4g}), training loss {result.train_loss:.6f}, "
    f"test accuracy {result.test_accuracy:.4f}, {result.seconds:.2f} s",
    file=sys.stderr,
)
