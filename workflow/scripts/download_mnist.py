"""Rule download_mnist: fetch one verified MNIST IDX file."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mnist_sgd.data import fetch_idx  # noqa: E402

source = fetch_idx(
    snakemake.wildcards.idx_file, snakemake.params.mirrors, snakemake.params.sha256, snakemake.output[0]
)
print(f"{snakemake.output[0]}: verified copy from {source}", file=sys.stderr)
