"""The summary of a workflow run that failed: every planned run with its status (stage 2 of the house
restructure keeps it apart from mnist_sgd.summary, so that moving it out of common.smk changes no
summary job's code digest; stage 3 joins them)."""

from .layout import optimum_file, run_files, train_logs
from .summary import summarize, write_summary


def write_partial_summary(runs, sweeps_by_run, path="results/summary_partial.csv", log=print):
    """After a failed workflow run (e.g. with --keep-going): the summary table of every planned run, with
    its status (ok, diverged, damaged, failed with its log, or missing), written to `path`; `log` says
    which runs have no result and why. The next complete summary removes the file (scripts/summarize.py).
    Return the table."""
    table = summarize(
        run_files(runs, "run.json"),
        sweeps_by_run,
        train_logs(runs),
        [optimum_file(run) for run in runs],
        damaged_ok=True,
    )
    write_summary(table, path)
    incomplete = table[table["status"].isin(["failed", "missing", "damaged"])]
    log(f"{len(incomplete)} of {len(table)} runs have no result; every run's status is in {path}")
    for row in incomplete.itertuples():
        where = {"failed": f" (log: {row.log})", "damaged": f" ({row.log})"}.get(row.status, "")
        log(f"  {row.status}: {row.run}{where}")
    return table
