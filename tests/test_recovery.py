"""Lost, deleted or damaged files of the small study (tests/small_study.py): the next run makes them again,
or planning names them with the fix, and nothing else retrains. Each test changes its own copy."""

import shutil

import pandas as pd
import pytest
import yaml
from small_study import RUNS, changed_config

from conftest import copy_of, job_stats, snakemake


def test_deleted_records_are_made_again_by_the_next_run_and_nothing_else_retrains(completed, tmp_path):
    """Each of a run's records, and an optimum, deleted by hand (or lost to a full quota): the next `all`
    makes them again, equal to what was lost, although the figures and summary drawn from them are there."""
    workdir = copy_of(completed[0], tmp_path / "copy")
    results = workdir / "results"
    deleted = [results / "runs" / run / name for run, name in zip(RUNS, ("metrics.csv", "run.json", "weights.npy"))]
    deleted.append(results / "optimum" / "train100_seed0.json")
    before = {p: p.read_bytes() for p in results.glob("runs/**/*") if p.is_file()}
    for path in deleted:
        path.unlink()
    plan = job_stats(snakemake(workdir, "-n", "all").stdout)
    assert plan["train"] == 3 and plan["optimum"] == 1, plan
    result = snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stdout
    assert all(path.exists() for path in deleted)
    after = {p: p.read_bytes() for p in results.glob("runs/**/*") if p.is_file()}
    assert after.keys() == before.keys()
    # Remade records equal the lost ones (a run.json also records its timings), the others are untouched.
    assert all(after[p] == content or p.suffix == ".json" for p, content in before.items())
    assert pd.read_csv(results / "summary.csv")["status"].eq("ok").sum() == len(RUNS)
    assert "Nothing to be done" in snakemake(workdir, "-n", "all").stdout


@pytest.mark.parametrize("deleted", ["results/data/mnist.pt", "results/data"])
def test_deleting_the_data_retrains_only_what_is_new_in_one_invocation(completed, tmp_path, deleted):
    """The cache (or all the data) rebuilt from checksum-pinned files is the same data: the finished runs
    stay finished; a run added meanwhile trains on it (snakemake#946 would retrain them all)."""
    workdir = copy_of(completed[0], tmp_path / "copy")
    runs = workdir / "results" / "runs"
    before = {p: p.read_bytes() for p in runs.glob("**/metrics.csv")}
    shutil.rmtree(workdir / deleted) if deleted == "results/data" else (workdir / deleted).unlink()
    config = changed_config(workdir, lambda c: c["sweeps"]["batch_size"]["batch_sizes"].append(20))
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stdout
    stats = job_stats(result.stdout)
    assert stats["train"] == 1 and stats["format_mnist"] == 1 and "optimum" not in stats, result.stdout
    assert stats.get("download_mnist", 0) == (1 if deleted == "results/data" else 0)
    assert {p: p.read_bytes() for p in before} == before
    assert (runs / "scratch/trainall_batch20_lr0.01_it40_seed0/metrics.csv").exists()
    assert "Nothing to be done" in snakemake(workdir, "-n", "all").stdout


def test_a_code_edit_with_the_cache_gone_retrains_on_a_cache_the_jobs_rebuild(completed, tmp_path):
    workdir = copy_of(completed[0], tmp_path / "copy")
    (workdir / "results" / "data" / "mnist.pt").unlink()
    with open(workdir / "workflow" / "mnist_sgd" / "training" / "sgd.py", "a") as source:
        source.write("\n# an edit\n")
    result = snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stdout
    # Planning sets the outdated records aside (their inputs name the old code), so the training jobs
    # wait for the cache, which is rebuilt; the optima (their subsets are drawn by the
    # edited module) rerun too.
    stats = job_stats(result.stdout)
    assert stats["train"] == len(RUNS) and stats["format_mnist"] == 1, result.stdout
    # Which jobs rebuild it first is a race (format_mnist, an optimum, a run): the runs' bytes below are the check.
    for run in RUNS:
        original = completed[0] / "results" / "runs" / run / "metrics.csv"
        assert (workdir / "results" / "runs" / run / "metrics.csv").read_bytes() == original.read_bytes()


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda b: b[:4], "not an IDX images file (its header is 00000803)"),
        (
            lambda b: b[:4] + (256).to_bytes(4, "big") + b[8:],
            "its header says 256 images of 28x28 pixels (200720 bytes), but it holds 235216 bytes: truncated or damaged",
        ),
    ],
    ids=["truncated", "count"],
)
def test_a_damaged_raw_file_is_named_with_the_fix_by_every_planning_call(completed, tmp_path, damage, problem):
    workdir = copy_of(completed[0], tmp_path / "copy")
    raw = workdir / "results" / "data" / "raw" / "train-images-idx3-ubyte"
    raw.write_bytes(damage(raw.read_bytes()))
    for args in (["-n"], ["--cores", "1", "all"]):
        result = snakemake(workdir, *args)
        assert result.returncode != 0 and "Job stats" not in result.stdout
        assert f"results/data/raw/train-images-idx3-ubyte: {problem}; delete it, and the workflow fetches" in (
            result.stdout
        ), result.stdout
    raw.unlink()  # the fix the message gives
    assert "Nothing to be done" in snakemake(workdir, "-n", "all").stdout
