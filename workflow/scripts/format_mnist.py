"""Rule format_mnist: parse the IDX files and cache the formatted tensors."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mnist_sgd.worker import delegate  # noqa: E402

if delegate(sys.argv[0], snakemake.log[0], snakemake.config["worker"]):
    sys.exit(0)  # the worker's child ran this script

from mnist_sgd.data import build_cache  # noqa: E402

inputs = snakemake.input
build_cache(inputs.train_images, inputs.train_labels, inputs.test_images, inputs.test_labels, snakemake.output.cache)
