"""Rule summarize: one row per run in results/summary.csv, one per configuration (its runs differ only
in their seed) in results/summary_by_config.csv, each with an HTML twin for the report; the best
learning rate's steps to each target per batch size in results/batch_scaling.csv, and the fit of the
critical batch size in results/critical_batch.csv (mnist_sgd.analysis.scaling)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

from mnist_sgd.analysis.scaling import batch_scaling, critical_batch  # noqa: E402
from mnist_sgd.analysis.summary import by_config, summarize, write_summary  # noqa: E402

output, params, inputs = snakemake.output, snakemake.params, snakemake.input


def targets_of(dataset):
    return params.targets.get(dataset, [])


table = summarize(inputs.infos, params.sweeps, None, inputs.optima, inputs.metrics, targets_of, params.window)
write_summary(table, output.csv, output.html)
configurations = by_config(table)
write_summary(configurations, output.by_config_csv, output.by_config_html)
scaling = batch_scaling(table, targets_of)
write_summary(scaling, output.batch_scaling)
write_summary(critical_batch(scaling, table), output.critical_batch)
# A complete summary supersedes what a failed run (onerror in the Snakefile) left.
Path(output.csv).with_name("summary_partial.csv").unlink(missing_ok=True)
print(
    f"{len(table)} runs: {table['status'].value_counts().to_dict()}; {len(configurations)} configurations",
    file=sys.stderr,
)
