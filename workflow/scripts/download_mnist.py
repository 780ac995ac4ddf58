"""Rule download_mnist: fetch one verified MNIST IDX file."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mnist_sgd.data import fetch_idx  # noqa: E402

# Mirrors are read here, not passed as params: where a verified file came from does not change it,
# so pointing the workflow at another mirror must not trigger a download.
config = snakemake.config
mirrors = ([config["data_mirror"]] if config["data_mirror"] else []) + config["mirrors"]
source = fetch_idx(snakemake.wildcards.idx_file, mirrors, snakemake.params.sha256, snakemake.output[0])
print(f"{snakemake.output[0]}: verified copy from {source}", file=sys.stderr)
