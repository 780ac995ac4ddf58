"""Rule summarize: one row per run in results/summary.csv, one per configuration (its runs differ only
in their seed) in results/summary_by_config.csv, each with an HTML twin for the report."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mnist_sgd.worker import delegate  # noqa: E402

if delegate(sys.argv[0], snakemake.log[0], snakemake.config["worker"]):
    sys.exit(0)  # the worker's child ran this script

from mnist_sgd.summary import by_config, summarize, write_summary  # noqa: E402

output = snakemake.output
table = summarize(snakemake.input.infos, snakemake.params.sweeps, optimum_paths=snakemake.input.optima)
write_summary(table, output.csv, output.html)
configurations = by_config(table)
write_summary(configurations, output.by_config_csv, output.by_config_html)
# A complete summary supersedes what a failed run (onerror in the Snakefile) left.
Path(output.csv).with_name("summary_partial.csv").unlink(missing_ok=True)
print(
    f"{len(table)} runs: {table['status'].value_counts().to_dict()}; {len(configurations)} configurations",
    file=sys.stderr,
)
