"""Faults through the real CLI: a diverging run, a failing run, a killed job, a second invocation."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import job_stats, make_workdir, snakemake, sweep, train_directly, training_processes, wait_for

OK = "scratch/trainall_batch10_lr0.01_it40_seed0"
DIVERGED = "scratch/trainall_batch10_lr1000.0_it300_seed0"
FAILED = "scratch/train400_batch400_lr0.01_it40_seed0"  # more images than the 300 there are
NO_RUN_FIGURES = {"formats": ["png"], "dpi": 40, "run_figures": 0}
LONG = "scratch/trainall_batch10_lr0.01_it5000_seed0"


def test_keep_going_finishes_every_other_run_and_the_partial_summary_says_what_failed(tmp_path):
    # Before the download the workflow cannot know the mirror holds only 300 training images, so
    # the subset of 400 is refused by its training job, not at planning.
    workdir = make_workdir(
        tmp_path,
        {
            "good": sweep(),
            "diverging": sweep(lr=1000.0, iterations=300),
            "too_large": sweep(train_sizes=[400], batch_sizes=["train_size"]),
        },
    )
    result = snakemake(workdir, "--cores", "2", "--keep-going", "all")
    assert result.returncode != 0
    runs = workdir / "results" / "runs"
    log = f"results/logs/train/{FAILED}.log"
    assert "train_size=400: larger than the 300 training images" in (workdir / log).read_text()
    assert f"failed: {FAILED} (log: {log})" in result.stdout, result.stdout
    assert not (runs / FAILED).exists()  # nothing half-written

    # The diverged run is a result: recorded, summarized and drawn, marked as diverged.
    metrics = pd.read_csv(runs / DIVERGED / "metrics.csv")
    losses = metrics["train_loss"].to_numpy()
    assert len(metrics) < 300 and not np.isfinite(losses[-1]) and np.isfinite(losses[:-1]).all()
    partial = pd.read_csv(workdir / "results" / "summary_partial.csv").set_index("run")
    assert partial.loc[OK, "status"] == "ok" and partial.loc[DIVERGED, "status"] == "diverged"
    assert partial.loc[DIVERGED, "iterations_done"] == len(metrics)
    assert partial.loc[FAILED, "status"] == "failed" and partial.loc[FAILED, "log"] == log
    figures = workdir / "results" / "figures"
    for figure in (f"runs/{OK}", f"runs/{DIVERGED}", "good/curves", "diverging/curves", "diverging/final_accuracy"):
        assert (figures / f"{figure}.png").exists(), figure
    assert not (figures / "too_large").exists() and not (workdir / "results" / "summary.csv").exists()

    # Fixing the configuration trains only what is missing; the complete summary replaces the partial one.
    config = (workdir / "config" / "config.yaml").read_text().replace("- 400", "- 200")
    (workdir / "config" / "config.yaml").write_text(config)
    result = snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stdout
    assert job_stats(result.stdout)["train"] == 1, result.stdout
    summary = pd.read_csv(workdir / "results" / "summary.csv").set_index("run")
    assert summary["status"].to_dict() == {
        OK: "ok",
        DIVERGED: "diverged",
        "scratch/train200_batch200_lr0.01_it40_seed0": "ok",
    }
    assert not (workdir / "results" / "summary_partial.csv").exists()


@pytest.mark.parametrize("how", ["SIGTERM to the job", "SIGKILL to the job", "SIGKILL to every process"])
def test_a_killed_training_job_is_redone_alone_and_equals_an_uninterrupted_run(tmp_path, how):
    # No per-run figures: what is killed and redone here is training.
    workdir = make_workdir(tmp_path, {"quick": sweep(), "long": sweep(iterations=5000)}, NO_RUN_FIGURES)
    runs, logs = workdir / "results" / "runs", workdir / "results" / "logs" / "train"
    first = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2", "all"],
        cwd=workdir,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # The long job is frozen (SIGSTOP) as soon as it logs its first progress line, so it is
        # interrupted mid-run however fast this machine trains: the test never races its speed.
        long_log = logs / f"{LONG}.log"
        wait_for(
            lambda: long_log.exists() and "iteration 500/" in long_log.read_text(),
            "the long run's progress",
            poll=0.002,
        )
        job, trainer = training_processes(workdir, long_log)
        os.kill(trainer, signal.SIGSTOP)
        assert not (runs / LONG / "run.json").exists()
        wait_for(lambda: (runs / OK / "run.json").exists(), "the quick run")
        # A second invocation on the same directory is refused while the first holds it.
        second = snakemake(workdir, "--cores", "1", "all")
        assert second.returncode != 0 and "Directory cannot be locked" in second.stdout, second.stdout
        if how == "SIGKILL to every process":
            os.killpg(first.pid, signal.SIGKILL)
        else:
            if how == "SIGTERM to the job":
                os.kill(job, signal.SIGTERM)
                if trainer == job:  # a stopped process acts on SIGTERM once it runs again
                    os.kill(job, signal.SIGCONT)  # (a worker's trainer stays stopped: the job's end kills it)
            else:
                os.kill(job, signal.SIGKILL)
        output, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    # The trainer ends with its job, whatever killed it: nothing writes the run's files behind Snakemake's back.
    wait_for(lambda: not Path(f"/proc/{trainer}").exists(), "the trainer to end", timeout=10)
    if how != "SIGKILL to every process":
        assert first.returncode != 0 and "Error in rule train" in output, output
    assert not (runs / LONG / "run.json").exists() and not (runs / LONG / "metrics.csv").exists()

    if how == "SIGKILL to every process":  # Snakemake could not release its lock
        refused = snakemake(workdir, "--cores", "2", "all")
        assert refused.returncode != 0 and "--unlock" in refused.stdout, refused.stdout
        assert snakemake(workdir, "--unlock").returncode == 0
    result = snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stdout
    assert job_stats(result.stdout)["train"] == 1, result.stdout  # exactly the killed job
    assert not list((runs / LONG).glob(".*.tmp"))

    direct = tmp_path / "direct.csv"
    train_directly(workdir, direct, *"--batch-size 10 --iterations 5000 --lr 0.01".split())
    assert (runs / LONG / "metrics.csv").read_bytes() == direct.read_bytes()
