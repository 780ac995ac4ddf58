"""The workflow on a real SLURM cluster (slurmctld, slurmd, slurmdbd on this machine) through
profiles/slurm, exactly as a user runs it. Needs root, apt-get and snakemake-executor-plugin-slurm
(`pip install -e '.[slurm]'`); CI has all three. tests/slurm/cluster.sh starts the cluster and
always stops it, also when a test fails."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, job_stats, make_workdir, snakemake, sweep, trained_runs
from mnist_sgd.study.packs import PACK_PREFIX, read_plan

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        os.geteuid() != 0
        or shutil.which("apt-get") is None
        or importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
        reason="needs root, apt-get and snakemake-executor-plugin-slurm",
    ),
]
SWEEPS = {
    "batch_size": sweep(lr=[0.01, 0.02]),  # two runs of one pack: one SLURM job
    "train_size": sweep(train_sizes=[50], batch_sizes=["train_size"]),
    "torch_optim": sweep(impl="torch", batch_sizes=[25], lr=0.05, seeds=[1]),
}
RUNS = [
    "scratch/trainall_batch10_lr0.01_it40_seed0",
    "scratch/trainall_batch10_lr0.02_it40_seed0",
    "scratch/train50_batch50_lr0.01_it40_seed0",
    "torch/trainall_batch25_lr0.05_it40_seed1",
]
FOREIGN_CONF = 3  # cluster.sh up's exit status when another cluster's slurm.conf is at the default path
NOT_INSTALLED = 4  # ... when the SLURM packages are missing and MNIST_SGD_INSTALL_SLURM=1 is not set
LOCAL_RULES = (
    "download_mnist",
    "format_mnist",
    "optimum",
    "summarize",
    "plot_run",
    "plot_group",
    "plot_wall_time",
)


@pytest.fixture(scope="module")
def cluster():
    up = subprocess.run(["timeout", "-k", "10", "900", "bash", str(CLUSTER), "up"], capture_output=True, text=True)
    try:
        if up.returncode in (FOREIGN_CONF, NOT_INSTALLED):
            pytest.skip(up.stderr)
        assert up.returncode == 0, up.stderr
        assert up.stdout.startswith("export SLURM_CONF="), up.stdout
        yield up.stdout.split("=", 1)[1].strip()
    finally:
        down = subprocess.run(
            ["timeout", "-k", "10", "300", "bash", str(CLUSTER), "down"], capture_output=True, text=True
        )
        assert down.returncode == 0, down.stderr


def slurm_snakemake(workdir, slurm_conf, *args):
    env = {**os.environ, "SLURM_CONF": slurm_conf}
    return subprocess.run(
        [
            "timeout",
            "-k",
            "10",
            "600",
            sys.executable,
            "-m",
            "snakemake",
            "--workflow-profile",
            "profiles/slurm",
            # Status queries every 2 s instead of the profile's 20 s start and Snakemake's 10 s between:
            # the same jobs and results, a minute less of waiting per run.
            "--slurm-init-seconds-before-status-checks",
            "2",
            "--seconds-between-status-checks",
            "2",
            *args,
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def sacct(slurm_conf, run_id):
    """(job id, state, requested TRES, allocated TRES, comment) of every job of a Snakemake run."""
    listing = subprocess.run(
        ["sacct", "-X", "-P", "-n", "--name", run_id, "-o", "JobID,State,ReqTRES,AllocTRES,Comment"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SLURM_CONF": slurm_conf},
    ).stdout
    return [line.split("|") for line in listing.splitlines()]


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The small study through profiles/slurm, and the same configuration run locally meanwhile."""
    local = make_workdir(tmp_path_factory.mktemp("local"), SWEEPS)
    workdir = make_workdir(tmp_path_factory.mktemp("slurm"), SWEEPS)
    # The SLURM run mostly waits for status queries: the local run goes alongside.
    local_run = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", "all"],
        cwd=local,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    result = slurm_snakemake(workdir, cluster, "all")
    local_output, _ = local_run.communicate(timeout=600)
    assert local_run.returncode == 0, local_output
    assert result.returncode == 0, result.stdout
    return workdir, local, result.stdout


def test_each_training_job_goes_to_slurm_with_one_gpu_and_nothing_else_does(cluster, slurm_run):
    workdir, _, log = slurm_run
    assert "Using workflow specific profile profiles/slurm" in log
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    # One SLURM job per pack (mnist_sgd.study.packs), not per run: the batch-size sweep's two runs share one.
    packs = read_plan(workdir / "results" / "packs" / "plan.json")
    assert sorted(len(pack.runs) for pack in packs) == [1, 1, 2] and trained_runs(log) == set(RUNS), packs
    assert len(re.findall(r"has been submitted with SLURM jobid \d+ \(log: ", log)) == len(packs)
    assert log.count(f"\nrule {PACK_PREFIX}") == len(packs) and f"localrule {PACK_PREFIX}" not in log
    for rule in LOCAL_RULES:
        kind = "checkpoint" if rule == "format_mnist" else "rule"
        assert f"local{kind} {rule}:" in log and f"\n{kind} {rule}:" not in log, rule
    jobs = sacct(cluster, run_id)
    assert len(jobs) == len(packs), jobs  # only the training jobs are in SLURM's records
    assert {comment for *_, comment in jobs} == {f"rule_{pack.name}" for pack in packs}
    for job_id, state, requested, allocated, _ in jobs:
        assert state == "COMPLETED"
        assert "gres/gpu=1" in requested.split(",") and "gres/gpu=1" in allocated.split(","), (requested, allocated)
    # Each run records the SLURM job that trained it; the fake GPU has no CUDA, so auto chose the CPU.
    infos = [json.loads((workdir / "results" / "runs" / run / "run.json").read_text()) for run in RUNS]
    assert {info["slurm_job_id"] for info in infos} == {job_id for job_id, *_ in jobs}
    assert {info["resolved"]["device"] for info in infos} == {"cpu"}


def test_results_equal_a_local_runs_byte_for_byte(slurm_run):
    workdir, local, _ = slurm_run
    for run in RUNS:
        metrics = f"results/runs/{run}/metrics.csv"
        assert (workdir / metrics).read_bytes() == (local / metrics).read_bytes(), run
    assert snakemake(workdir, "-n", "all").stdout.count("Nothing to be done") == 1


def test_a_failing_training_job_is_reported_with_its_slurm_log_and_retried(cluster, slurm_run):
    workdir, _, _ = slurm_run
    before = {run: (workdir / "results" / "runs" / run / "metrics.csv").stat().st_mtime_ns for run in RUNS}
    # A new run asked for on CUDA, which the cluster's fake GPU lacks: its job refuses it on the node.
    target = "results/runs/scratch/trainall_batch10_lr0.03_it40_seed0/run.json"
    extra = "sweeps={extra: {impl: scratch, train_sizes: [all], batch_sizes: [10], iterations: 40, lr: 0.03}}"
    result = slurm_snakemake(workdir, cluster, "--config", "device=cuda", extra, "--", target)
    log = result.stdout
    assert result.returncode != 0
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", log)
    assert len(submitted) == 2 and "Trying to restart job" in log, log  # retries: 1
    for job_id, slurm_log in submitted:
        assert slurm_log.startswith(f"{workdir}/results/logs/slurm/rule_{PACK_PREFIX}") and slurm_log.endswith(
            f"/{job_id}.log"
        )
        assert os.path.exists(slurm_log)  # kept for a failed job
        assert f"SLURM-job '{job_id}' failed, SLURM status is: 'FAILED'" in log
    assert "device='cuda': CUDA is not available here" in log  # the job's log, shown
    assert not (workdir / target).exists()
    # The other runs' results stay, and the workflow is still complete.
    after = {run: (workdir / "results" / "runs" / run / "metrics.csv").stat().st_mtime_ns for run in RUNS}
    assert after == before
    assert job_stats(snakemake(workdir, "-n", "all").stdout) == {}


def test_up_refuses_while_another_clusters_configuration_is_at_the_default_path(tmp_path):
    # The SLURM plugin's job steps drop SLURM_CONF, so srun inside a job would read that file.
    foreign = tmp_path / "etc" / "slurm.conf"
    foreign.parent.mkdir()
    foreign.write_text("ClusterName=elsewhere\n")
    up = subprocess.run(
        ["bash", str(CLUSTER), "up"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "MNIST_SGD_SLURM_DEFAULT_CONF": str(foreign),
            "MNIST_SGD_SLURM_DIR": str(tmp_path / "state"),
        },
    )
    assert up.returncode == FOREIGN_CONF, up.stderr
    assert f"{foreign} is another cluster's configuration; srun inside the jobs would read it" in up.stderr
    assert foreign.read_text() == "ClusterName=elsewhere\n" and not (tmp_path / "state").exists()
