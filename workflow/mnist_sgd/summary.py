"""One row per run: parameters, outcome, final and best accuracy, cost and provenance."""

from pathlib import Path

import pandas as pd

from .files import atomic_path
from .records import RunInfo

COLUMNS = [
    "run",
    "sweeps",
    "status",
    "impl",
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
    "wall_seconds",
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


def run_name(info_path):
    """The run's folder under results/runs/, e.g. scratch/train100_batch100_lr0.001_it6000_seed0."""
    path = Path(info_path)
    return f"{path.parent.parent.name}/{path.parent.name}"


def summary_row(info, run, sweeps=()):
    """Flatten one run's RunInfo into a summary row (the COLUMNS it has): its parameters, as resolved
    where they ran (`train_size` a number, `device` the one used), and its outcome, cost and provenance."""
    fields = {name: value for name, value in vars(info).items() if name not in ("params", "resolved")}
    return {"run": run, "sweeps": ";".join(sweeps), **vars(info.params), **vars(info.resolved), **fields}


def summarize(info_paths, sweeps_by_run=None, log_paths=None):
    """The summary table of the runs whose info JSON files are `info_paths`.

    A run without its info file gets a row that says so: status `failed` when its log (in
    `log_paths`, same order) exists, naming the log, else `missing` (it never started).
    """
    sweeps_by_run = sweeps_by_run or {}
    rows = []
    for i, path in enumerate(info_paths):
        run = run_name(path)
        sweeps = sweeps_by_run.get(run, ())
        if Path(path).exists():
            rows.append(summary_row(RunInfo.read(path), run, sweeps))
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
    return pd.DataFrame(rows, columns=COLUMNS)


def write_summary(table, csv_path, html_path=None):
    """Write the summary CSV (and an HTML rendering of it) atomically."""
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    if html_path:
        with atomic_path(html_path) as tmp:
            tmp.write_text(table.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.6g}"))
