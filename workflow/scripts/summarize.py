"""Rule summarize: one row per run in results/summary.csv."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mnist_sgd.summary import summarize, write_summary  # noqa: E402

write_summary(summarize(snakemake.input.infos, snakemake.params.sweeps), snakemake.output[0])
