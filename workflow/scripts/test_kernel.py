"""Rule test_kernel: the data set's kernel table (mnist_sgd.data.kernel), from its verified cache."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

import torch  # noqa: E402

from mnist_sgd.data.cache import load_cache  # noqa: E402
from mnist_sgd.data.kernel import write_table  # noqa: E402
from mnist_sgd.study.datasets import dataset_sha256  # noqa: E402

log = lambda message: print(message, file=sys.stderr)  # noqa: E731
torch.set_num_threads(snakemake.threads)
sources = dataset_sha256(snakemake.config, snakemake.wildcards.dataset)
data = load_cache(snakemake.input.data, sources=sources, rebuild_from=snakemake.params.idx_files, log=log)
write_table(data, snakemake.output.table, log=log)
