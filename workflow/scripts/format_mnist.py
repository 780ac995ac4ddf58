"""Rule format_mnist: parse the IDX files and cache the formatted tensors."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

from mnist_sgd.data.cache import build_cache  # noqa: E402

inputs = snakemake.input
build_cache(
    inputs.train_images,
    inputs.train_labels,
    inputs.test_images,
    inputs.test_labels,
    snakemake.output.cache,
    log=lambda message: print(message, file=sys.stderr),
)
