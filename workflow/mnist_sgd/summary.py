"""One row per run: parameters, final and best accuracy, timings, device."""

import json
from pathlib import Path

import pandas as pd

from .files import atomic_path

COLUMNS = [
    "run", "sweeps", "impl", "train_size", "batch_size", "seed", "iterations", "lr", "eval_every",
    "final_train_loss", "final_test_accuracy", "best_test_accuracy",
    "wall_seconds", "seconds_per_iteration", "device", "device_name", "threads",
]


def run_name(info_path):
    """The run's folder under results/runs/, e.g. scratch/train100_batch100_lr0.001_it6000_seed0."""
    path = Path(info_path)
    return f"{path.parent.parent.name}/{path.parent.name}"


def summary_row(info, run, sweeps=()):
    """Flatten one run's info JSON into a summary row."""
    params, resolved = info["params"], info["resolved"]
    return {
        "run": run,
        "sweeps": ";".join(sweeps),
        "impl": params["impl"],
        "train_size": resolved["train_size"],
        "batch_size": params["batch_size"],
        "seed": params["seed"],
        "iterations": params["iterations"],
        "lr": params["lr"],
        "eval_every": params["eval_every"],
        "final_train_loss": info["final_train_loss"],
        "final_test_accuracy": info["final_test_accuracy"],
        "best_test_accuracy": info["best_test_accuracy"],
        "wall_seconds": info["wall_seconds"],
        "seconds_per_iteration": info["seconds_per_iteration"],
        "device": resolved["device"],
        "device_name": info["device_name"],
        "threads": resolved["threads"],
    }


def summarize(info_paths, sweeps_by_run=None):
    """Build the summary table from run info JSON files."""
    sweeps_by_run = sweeps_by_run or {}
    rows = []
    for path in info_paths:
        run = run_name(path)
        rows.append(summary_row(json.loads(Path(path).read_text()), run, sweeps_by_run.get(run, ())))
    return pd.DataFrame(rows, columns=COLUMNS)


def write_summary(table, path):
    """Write the summary CSV atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
