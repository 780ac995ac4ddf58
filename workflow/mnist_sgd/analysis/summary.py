"""One row per run: parameters, outcome, final and best accuracy, cost and provenance."""

import math
from pathlib import Path

import pandas as pd

from ..study.files import atomic_path
from ..study.layout import optimum_file, run_files, train_logs
from ..study.records import DamagedRecord, Optimum, RunInfo, read_metrics, run_name
from ..study.runs import LOSS_SCALE, configuration
from .scaling import run_steps

# summary_by_config.csv: a configuration's parameters (all but the seed) and statistics over its seeds.
CONFIG_COLUMNS = [
    "configuration",
    "sweeps",
    "dataset",
    "impl",
    "sampling",
    "train_size",
    "batch_size",
    "lr",
    "iterations",
    "eval_every",
]
AGGREGATED = ["final_test_accuracy", "best_test_accuracy", "final_train_loss", "wall_seconds"]
STATISTICS = ["mean", "std", "min", "max"]

COLUMNS = [
    "run",
    "sweeps",
    "status",
    "dataset",
    "impl",
    "sampling",
    "train_size",
    "batch_size",
    "seed",
    "iterations",
    "lr",
    "eval_every",
    "iterations_done",
    "final_train_loss",
    "final_test_accuracy",
    "best_test_accuracy",
    "optimum_train_loss",
    "optimum_test_accuracy",
    "optimum_accuracy_gap",
    "optimum_rank",
    "optimum_min_singular_value",
    "b_simple_start",
    "b_noise_start",
    "b_simple_end",
    "b_noise_end",
    "wall_seconds",
    "noise_seconds",
    "seconds_per_iteration",
    "peak_rss_mb",
    "gpu_peak_allocated_mb",
    "device",
    "device_name",
    "threads",
    "host",
    "slurm_job_id",
    "git_commit",
    "git_dirty",
    "log",
]


def summary_row(info, run, sweeps=(), optimum=None):
    """Flatten one run's RunInfo into a summary row (the COLUMNS it has): its parameters, as resolved
    where they ran (`train_size` a number, `device` the one used), and its outcome, cost and provenance;
    its gradient noise scales at the start and the end of training; with the Optimum of its training
    set, the optimum's loss (on the run's loss scale), test accuracy, rank and smallest singular value,
    and how far below that accuracy the run ended."""
    fields = {name: value for name, value in vars(info).items() if name not in ("params", "resolved")}
    row = {"run": run, "sweeps": ";".join(sweeps), **vars(info.params), **vars(info.resolved), **fields}
    row.update(sampling=info.params.batch_sampling)
    if optimum is not None:
        row["optimum_train_loss"] = optimum.train_loss * LOSS_SCALE[info.params.impl]
        row["optimum_test_accuracy"] = optimum.test_accuracy
        row["optimum_accuracy_gap"] = optimum.test_accuracy - info.final_test_accuracy
        row["optimum_rank"] = optimum.rank
        row["optimum_min_singular_value"] = optimum.min_singular_value
    if info.noise_scale and info.noise_scale["iteration"]:
        for when, index in (("start", 0), ("end", -1)):
            for scale in ("b_simple", "b_noise"):
                value = info.noise_scale[scale][index]
                row[f"{scale}_{when}"] = math.nan if value is None else value
    return row


def summarize(
    info_paths,
    sweeps_by_run=None,
    log_paths=None,
    optimum_paths=None,
    metrics_paths=None,
    targets_of=None,
    window=1,
    damaged_ok=False,
):
    """The summary table of the runs whose info JSON files are `info_paths`; `optimum_paths` (same
    order) are the Optimum files of their training sets, where they exist. Given `metrics_paths` (same
    order) and `targets_of` (a data set's name -> its target accuracies), each run's steps and examples
    to each target (mnist_sgd.analysis.scaling.run_steps, with the median `window`) follow its columns.

    A run without its info file gets a row that says so: status `failed` when its log (in
    `log_paths`, same order) exists, naming the log, else `missing` (it never started). Every record is
    checked (RunInfo.read): a damaged one raises DamagedRecord, naming it, or with `damaged_ok` gets the
    status `damaged` and the reason in `log`. The final and best accuracy come from the metrics, where
    given, not from run.json.
    """
    sweeps_by_run = sweeps_by_run or {}
    rows = []
    for i, path in enumerate(info_paths):
        run = run_name(path)
        sweeps = sweeps_by_run.get(run, ())
        if Path(path).exists():
            optimum = optimum_paths[i] if optimum_paths else None
            optimum = Optimum.read(optimum) if optimum and Path(optimum).exists() else None
            try:
                info = RunInfo.read(path)
            except DamagedRecord as error:
                if not damaged_ok:
                    raise
                rows.append({"run": run, "sweeps": ";".join(sweeps), "status": "damaged", "log": str(error)})
                continue
            row = summary_row(info, run, sweeps, optimum)
            if metrics_paths:
                metrics = read_metrics(metrics_paths[i])
                accuracy = metrics["test_accuracy"].dropna()
                if len(accuracy):
                    row.update(final_test_accuracy=accuracy.iloc[-1], best_test_accuracy=accuracy.max())
                if targets_of:
                    targets = targets_of(info.params.dataset)
                    row.update(run_steps(metrics, info.params.batch_size, targets, window))
            rows.append(row)
            continue
        log = log_paths[i] if log_paths else None
        failed = log is not None and Path(log).exists()
        rows.append(
            {
                "run": run,
                "sweeps": ";".join(sweeps),
                "status": "failed" if failed else "missing",
                "log": log if failed else None,
            }
        )
    extra = [c for row in rows for c in row if c.startswith(("steps_to_", "examples_to_"))]
    return pd.DataFrame(rows, columns=COLUMNS + sorted(dict.fromkeys(extra), key=_target_order))


def _target_order(column):
    """Steps and examples columns by target, then steps first."""
    kind, _, target = column.rpartition("_to_")
    return float(target), kind != "steps"


def by_config(table):
    """summary_by_config: one row per configuration of the runs in `table` (a summarize() table) that
    finished: its parameters (CONFIG_COLUMNS), `n_seeds`, `n_diverged`, and the mean, standard deviation
    (over seeds, n - 1 in the denominator; empty for one seed), minimum and maximum of each AGGREGATED
    metric and of the steps to each target, over the seeds that reached it (`n_reached_<target>` of
    them) (a diverged run has no final loss: its loss statistics are over the others)."""
    finished = table[table["status"].isin(["ok", "diverged"])].assign(
        configuration=lambda t: t["run"].map(configuration)
    )
    steps = [column for column in table.columns if column.startswith("steps_to_")]
    rows = []
    for _, runs in finished.groupby("configuration", sort=False):
        row = {column: runs[column].iloc[0] for column in CONFIG_COLUMNS}
        row.update(n_seeds=len(runs), n_diverged=int((runs["status"] == "diverged").sum()))
        for metric in AGGREGATED + steps:
            values = runs[metric].astype(float)
            row.update({f"{metric}_{name}": getattr(values, name)() for name in STATISTICS})
        for column in steps:
            row[f"n_reached_{column.removeprefix('steps_to_')}"] = int(runs[column].notna().sum())
        rows.append(row)
    columns = CONFIG_COLUMNS + ["n_seeds", "n_diverged"]
    columns += [f"{metric}_{name}" for metric in AGGREGATED + steps for name in STATISTICS]
    columns += [f"n_reached_{column.removeprefix('steps_to_')}" for column in steps]
    return pd.DataFrame(rows, columns=columns)


def write_summary(table, csv_path, html_path=None):
    """Write the summary CSV (and an HTML rendering of it) atomically."""
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    if html_path:
        with atomic_path(html_path) as tmp:
            tmp.write_text(table.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.6g}"))


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
