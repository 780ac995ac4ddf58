"""Rule summarize: one row per run in results/summary.csv (and results/summary.html)."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mnist_sgd.summary import summarize, write_summary  # noqa: E402

table = summarize(snakemake.input.infos, snakemake.params.sweeps)
write_summary(table, snakemake.output.csv, snakemake.output.html)
# A complete summary supersedes what a failed run (onerror in the Snakefile) left.
Path(snakemake.output.csv).with_name("summary_partial.csv").unlink(missing_ok=True)
print(f"{len(table)} runs: {table['status'].value_counts().to_dict()}", file=sys.stderr)
