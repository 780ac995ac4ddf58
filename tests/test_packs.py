"""Packed training (mnist_sgd.study.packs): a training job trains several runs, and each run's files are
still its own: the same bytes whichever runs share its job, only the new runs train, and a killed pack
keeps the runs it had finished."""

import functools
import hashlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import job_stats, make_workdir, snakemake, sweep, trained_runs, training_processes, wait_for
from mnist_sgd.study.layout import run_records
from mnist_sgd.study.packs import (
    PACK_PREFIX,
    Pack,
    forget_finished,
    keep_finished,
    pack_key,
    plan_packs,
    read_plan,
    restore_finished,
    write_plan,
)

NO_FIGURES = {"formats": ["png"], "dpi": 40, "run_figures": 0}
NUM_TRAIN = {"mnist": 60000}
records = functools.partial(run_records, optima=False)  # each run's metrics.csv, run.json and weights.npy


def run_name(batch=10, lr=0.01, seed=0, iterations=40, train="all", impl="scratch"):
    return f"{impl}/train{train}_batch{batch}_lr{lr}_it{iterations}_seed{seed}"


def digests(workdir, runs):
    """{run: (sha256 of metrics.csv, of weights.npy)}."""
    folder = workdir / "results" / "runs"
    return {
        run: tuple(
            hashlib.sha256((folder / run / name).read_bytes()).hexdigest() for name in ("metrics.csv", "weights.npy")
        )
        for run in runs
    }


def test_runs_that_differ_only_in_lr_and_seed_share_a_pack_in_seed_then_lr_order():
    runs = [run_name(lr=lr, seed=seed) for lr in (0.1, 0.01) for seed in (1, 0)]
    other = [run_name(batch=100), run_name(iterations=80), run_name(train=100), run_name(impl="torch")]
    packs = plan_packs(dict.fromkeys(runs + other, "missing records"), NUM_TRAIN, seconds=1000)
    assert [pack.runs for pack in packs] == [
        (run_name(lr=0.01, seed=0), run_name(lr=0.1, seed=0), run_name(lr=0.01, seed=1), run_name(lr=0.1, seed=1)),
        *[(run,) for run in other],
    ]
    assert len({pack_key(run) for run in runs}) == 1 and len({pack_key(run) for run in other}) == 4
    # A pack's name follows from its runs: the same runs, the same rule; every name a training rule's.
    again = plan_packs(dict.fromkeys(reversed(runs), "missing records"), NUM_TRAIN, seconds=1000)
    assert again[0] == packs[0] and all(pack.name.startswith(PACK_PREFIX) for pack in packs)
    assert len({pack.name for pack in packs}) == len(packs)


def test_packs_are_as_few_and_as_even_as_their_estimated_seconds_allow_with_one_run_at_least():
    runs = dict.fromkeys((run_name(batch=1000, lr=lr, iterations=6000) for lr in (0.1, 0.01, 0.001)), "why")
    # Each run is estimated at about 9.4 s (6000 iterations of 1000 rows and an evaluation each).
    assert [len(pack.runs) for pack in plan_packs(runs, NUM_TRAIN, seconds=30)] == [3]
    assert [len(pack.runs) for pack in plan_packs(runs, NUM_TRAIN, seconds=20)] == [2, 1]
    assert [len(pack.runs) for pack in plan_packs(runs, NUM_TRAIN, seconds=1)] == [1, 1, 1]
    many = dict.fromkeys((run_name(seed=seed, iterations=1000) for seed in range(50)), "why")
    assert [len(pack.runs) for pack in plan_packs(many, NUM_TRAIN, seconds=30)] == [17, 17, 16]
    assert plan_packs({}, NUM_TRAIN, seconds=30) == []


def test_the_plan_keeps_an_earlier_plannings_packs_while_they_have_runs_to_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    finished, pending = run_name(seed=0), run_name(seed=1)
    (tmp_path / "results" / "runs" / finished).mkdir(parents=True)
    for path in records([finished]):
        Path(path).write_text("")
    earlier = [Pack("train-a", (finished,), ("missing records",)), Pack("train-b", (pending,), ("missing records",))]
    write_plan(earlier)
    now = Pack("train-c", (run_name(seed=2),), ("outdated",))
    write_plan([now])
    assert read_plan() == [earlier[1], now]


def test_a_run_has_the_same_bytes_alone_in_a_pack_of_3_and_in_a_pack_of_50(tmp_path):
    # Batch 1 trains in the dual form (with the kernel table), batch 40 densely: both paths, each in
    # packs of 1, 3 and 50.
    shapes = {
        "alone": {"lr": [0.01], "seeds": [3]},
        "three": {"lr": [0.001, 0.01, 0.1], "seeds": [3]},
        "fifty": {"lr": [0.0001, 0.001, 0.003, 0.01, 0.1], "seeds": list(range(10))},
    }
    found = {}
    for shape, values in shapes.items():
        workdir = make_workdir(tmp_path / shape, {"s": sweep(batch_sizes=[1, 40], **values)}, NO_FIGURES)
        runs = [run_name(batch, lr, seed) for batch in (1, 40) for lr in values["lr"] for seed in values["seeds"]]
        # Runs on the tests' small MNIST take milliseconds, whatever the cost model (fitted to MNIST) says.
        # The pack of fifty reads the kernel table, the others compute the dual form's products.
        table = "always" if shape == "fifty" else "never"
        result = snakemake(
            workdir, "--cores", "2", "--config", "pack_seconds=1000", f"kernel_table={table}", "--", *records(runs)
        )
        assert result.returncode == 0, result.stdout
        packs = read_plan(workdir / "results" / "packs" / "plan.json")
        assert sorted(len(pack.runs) for pack in packs) == [len(runs) // 2] * 2, packs
        assert sorted(pack.kernel for pack in packs) == [False, shape == "fifty"], packs
        found[shape] = digests(workdir, runs)
    for shape in ("three", "fifty"):
        for run, digest in found["alone"].items():
            assert found[shape][run] == digest, (shape, run)
    for run, digest in found["three"].items():
        assert found["fifty"][run] == digest, run


def test_the_kernel_table_is_made_once_for_the_packs_of_small_batches_and_removed_after_them(tmp_path):
    workdir = make_workdir(tmp_path, {"s": sweep(batch_sizes=[1, 40], lr=[0.01, 0.001])}, NO_FIGURES)
    # auto: for 80 iterations of small batches the table would cost more than it saves (cost.table_pays).
    assert "test_kernel" not in job_stats(snakemake(workdir, "-n", "all").stdout, kernel=True)
    always = ("--config", "kernel_table=always")
    result = snakemake(workdir, "--cores", "2", "all", *always)
    assert result.returncode == 0, result.stdout
    assert job_stats(result.stdout, kernel=True)["test_kernel"] == 1, result.stdout
    # Read by the pack of batch 1, not by the one of batch 40, and a temporary file of this workflow run.
    pattern = (
        rf"^(?:local)?rule {PACK_PREFIX}\w+:\n    input: (.*)\n    output: results/runs/scratch/trainall_batch(\d+)_"
    )
    inputs = re.findall(pattern, result.stdout, re.MULTILINE)
    assert sorted((batch, "mnist.kernel.bin" in files) for files, batch in inputs) == [("1", True), ("40", False)]
    assert "removing temporary output results/data/mnist.kernel.bin" in result.stdout.lower(), result.stdout
    assert not (workdir / "results" / "data" / "mnist.kernel.bin").exists()
    log = (workdir / "results" / "logs" / "test_kernel" / "mnist.log").read_text()
    assert "computed the (300, 100) kernel table" in log and "exact: True" in log, log
    # Nothing left to train: no table. A new batch of 40 needs none; a new batch of 1, one again.
    assert job_stats(snakemake(workdir, "-n", "all", *always).stdout, kernel=True) == {}
    more = "sweeps={s: {batch_sizes: [1, 40], lr: [0.01, 0.001, 0.1]}}"
    planned = job_stats(snakemake(workdir, "-n", "all", *always, more).stdout, kernel=True)
    assert planned["train"] == 2 and planned["test_kernel"] == 1, planned
    larger = "sweeps={s: {batch_sizes: [1, 40, 50], lr: [0.01, 0.001]}}"
    planned = job_stats(snakemake(workdir, "-n", "all", *always, larger).stdout, kernel=True)
    assert planned["train"] == 2 and "test_kernel" not in planned, planned


def test_new_seeds_lrs_and_batch_sizes_train_only_the_new_runs_and_a_deleted_run_alone(tmp_path):
    workdir = make_workdir(tmp_path, {"s": sweep(lr=[0.01, 0.001], seeds=[0, 1])}, NO_FIGURES)
    assert snakemake(workdir, "--cores", "2", "all").returncode == 0
    first = [run_name(lr=lr, seed=seed) for lr in (0.01, 0.001) for seed in (0, 1)]
    before = {path: os.stat(workdir / path).st_mtime_ns for path in records(first)}

    config = workdir / "config" / "config.yaml"
    text = config.read_text()
    grown = text.replace("- 0.001\n", "- 0.001\n    - 0.1\n").replace("- 1\n", "- 1\n    - 2\n")
    grown = grown.replace("batch_sizes:\n    - 10\n", "batch_sizes:\n    - 10\n    - 5\n")
    assert grown.count("- 0.1\n") == 1 and grown.count("- 2\n") == 1 and grown.count("- 5\n") == 1, grown
    config.write_text(grown)
    result = snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stdout
    every = [run_name(batch, lr, seed) for batch in (10, 5) for lr in (0.01, 0.001, 0.1) for seed in (0, 1, 2)]
    assert trained_runs(result.stdout) == set(every) - set(first), result.stdout
    assert {path: os.stat(workdir / path).st_mtime_ns for path in records(first)} == before

    (workdir / "results" / "runs" / first[1] / "weights.npy").unlink()
    result = snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stdout
    assert trained_runs(result.stdout) == {first[1]}, result.stdout
    assert job_stats(snakemake(workdir, "-n", "all").stdout) == {}

    # A finished run is a file no rule makes: asked for by name it has nothing to do, and forcing it
    # (by its files, or everything) trains it again.
    asked = snakemake(workdir, "--cores", "1", *records(first[:1]))
    assert asked.returncode == 0 and not trained_runs(asked.stdout), asked.stdout
    forced = snakemake(workdir, "-n", "--forcerun", f"results/runs/{first[0]}/run.json", "--", "all")
    assert trained_runs(forced.stdout) == {first[0]}, forced.stdout
    assert trained_runs(snakemake(workdir, "-n", "-F", "all").stdout) == set(every)


@pytest.mark.parametrize("how", ["SIGKILL to the pack's job", "SIGKILL to every process"])
def test_a_killed_pack_keeps_its_finished_runs_and_trains_the_rest_as_if_never_stopped(tmp_path, how):
    # Four runs of one pack, in (seed, lr) order: the pack is stopped while it trains the third.
    sweeps = {"s": sweep(lr=[0.01, 0.02], seeds=[0, 1], iterations=5000)}
    runs = [run_name(lr=lr, seed=seed, iterations=5000) for seed in (0, 1) for lr in (0.01, 0.02)]
    reference = make_workdir(tmp_path / "reference", sweeps, NO_FIGURES)
    workdir = make_workdir(tmp_path / "killed", sweeps, NO_FIGURES)
    first = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--config", "pack_seconds=1000", "--", *records(runs)],
        cwd=workdir,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        third = workdir / "results" / "logs" / "train" / f"{runs[2]}.log"
        wait_for(
            lambda: third.exists() and "iteration 500/" in third.read_text(), "the third run's progress", poll=0.002
        )
        job, trainer = training_processes(
            workdir, third
        )  # the pack's job; its trainer (the worker's child, or the job)
        os.kill(trainer, signal.SIGSTOP)
        if how == "SIGKILL to every process":
            os.killpg(first.pid, signal.SIGKILL)
        else:
            os.kill(job, signal.SIGKILL)
        output, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{trainer}").exists(), "the trainer to end", timeout=10)
    folder = workdir / "results" / "runs"
    if how == "SIGKILL to every process":
        assert snakemake(workdir, "--unlock").returncode == 0
    else:  # Snakemake deleted the pack's outputs, and put back those it had finished at its end
        assert first.returncode != 0 and "Error in rule train-" in output, output
        assert all((folder / run / "run.json").exists() for run in runs[:2]), output
    assert not any((folder / run / "run.json").exists() for run in runs[2:])

    result = snakemake(workdir, "--cores", "1", "--config", "pack_seconds=1000", "--", *records(runs))
    assert result.returncode == 0, result.stdout
    assert trained_runs(result.stdout) == set(runs[2:]), result.stdout
    assert not (workdir / "results" / "packs" / "done").exists()
    assert snakemake(reference, "--cores", "1", *records(runs)).returncode == 0
    assert digests(workdir, runs) == digests(reference, runs)


@pytest.mark.parametrize("links", [True, False], ids=["hard links", "no hard links (copies)"])
def test_the_side_store_puts_back_what_a_failed_pack_finished_and_nothing_else(tmp_path, monkeypatch, links):
    monkeypatch.chdir(tmp_path)
    if not links:  # a file system without hard links (some network and FUSE ones)

        def refuse(source, target):
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "link", refuse)
    finished, kept, missing = run_name(seed=0), run_name(seed=1), run_name(seed=2)
    for run in (finished, kept):
        for path in records([run]):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(f"{run} {path}")
        keep_finished(run, records([run]))
    for path in records([finished]):  # Snakemake deleted the failed pack's outputs
        Path(path).unlink()
    (tmp_path / records([kept])[0]).write_text("newer")  # trained again since: never overwritten
    said = []
    restore_finished(said.append)
    assert [Path(path).read_text() for path in records([finished])] == [f"{finished} {p}" for p in records([finished])]
    assert (tmp_path / records([kept])[0]).read_text() == "newer"
    assert not any(Path(path).exists() for path in records([missing]))
    assert said == [f"restored {finished}: its pack had finished it before it stopped"]
    assert not (tmp_path / "results" / "packs" / "done").exists()
    keep_finished(kept, records([kept]))
    forget_finished([kept])  # a pack that ended well leaves no folder behind
    assert not (tmp_path / "results" / "packs" / "done").exists()
