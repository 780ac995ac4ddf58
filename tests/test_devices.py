"""Which GPU a training job takes (mnist_sgd.execution.devices), with fake devices: no GPU needed."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, make_workdir, sweep
from mnist_sgd.execution.devices import claim_gpu

DEVICES = ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"]
# A training job's claim: print the device it got, then hold it until stdin closes.
CLAIM = f"""
import sys
from pathlib import Path
from mnist_sgd.execution.devices import claim_gpu
devices = {DEVICES!r}[: int(sys.argv[3])]
index = claim_gpu(devices, Path(sys.argv[1]), log=lambda m: print(m, flush=True), poll_seconds=0.05, per_device=int(sys.argv[2]))
print("got", index, flush=True)
sys.stdin.read()
"""


def start_job(lock_dir, per_device=1, devices=len(DEVICES)):
    return subprocess.Popen(
        [sys.executable, "-c", CLAIM, str(lock_dir), str(per_device), str(devices)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "workflow")},
    )


def read_line(job):
    line = job.stdout.readline().strip()
    assert line, "the job ended without a word"
    return line


def test_jobs_at_once_get_distinct_devices_and_a_crashed_jobs_device_is_free_again(tmp_path):
    jobs = [start_job(tmp_path) for _ in DEVICES]
    try:
        holders = {read_line(job): job for job in jobs}
        assert sorted(holders) == ["got 0", "got 1", "got 2"]
        extra = start_job(tmp_path)  # a fourth job on three devices waits...
        jobs.append(extra)
        assert read_line(extra) == "all 3 GPUs are in use by other training jobs; waiting for one to be free"
        holders["got 1"].send_signal(signal.SIGKILL)  # ...until one ends, even by a crash
        holders["got 1"].wait()
        assert read_line(extra) == "got 1"
    finally:
        for job in jobs:
            job.kill()
            job.wait()


def test_jobs_per_gpu_share_each_device_that_many_at_a_time_filling_devices_evenly(tmp_path):
    jobs = []
    try:
        for _ in range(4):  # one at a time, so that the order of the claims is known
            jobs.append(start_job(tmp_path, per_device=2, devices=2))
            jobs[-1].line = read_line(jobs[-1])
        assert [job.line for job in jobs] == ["got 0", "got 1", "got 0", "got 1"]
        extra = start_job(tmp_path, per_device=2, devices=2)
        jobs.append(extra)
        assert (
            read_line(extra) == "all 2 GPUs (2 jobs each) are in use by other training jobs; waiting for one to be free"
        )
        jobs[2].send_signal(signal.SIGKILL)  # device 0's second slot
        jobs[2].wait()
        assert read_line(extra) == "got 0"
    finally:
        for job in jobs:
            job.kill()
            job.wait()


def test_no_device_is_no_gpu(tmp_path):
    assert claim_gpu([], tmp_path) is None
    assert not list(tmp_path.iterdir())


def test_a_hanging_or_failing_nvidia_smi_counts_as_no_gpu_with_a_warning(tmp_path):
    workdir = make_workdir(tmp_path / "workflow", {"s": sweep()})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    path = f"{bin_dir}:{os.environ['PATH']}"
    for script, warning in [("sleep 60", "timed out after 10 seconds"), ("echo broken >&2; exit 9", "failed (broken)")]:
        fake.write_text(f"#!/bin/sh\n{script}\n")
        fake.chmod(0o755)
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n"],
            cwd=workdir,
            env={**os.environ, "PATH": path},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout
        assert "warning: nvidia-smi -L" in result.stdout and warning in result.stdout, result.stdout
        assert time.monotonic() - start < 50
        assert "resources: tmpdir=/tmp, gpu=1" not in result.stdout  # no GPU asked for


@pytest.mark.parametrize("slurm", [False, True])
def test_slurm_jobs_keep_the_devices_slurm_assigned(monkeypatch, slurm):
    from mnist_sgd.execution import devices as gpus

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    if slurm:
        monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert gpus.assigned_by_scheduler() is slurm


@pytest.mark.parametrize(
    "given, gpus, jobs_per_gpu, limit", [(False, 2, 3, 6), (False, 1, 1, 1), (False, 0, 4, 1), (True, 2, 3, None)]
)
def test_the_gpu_limit_is_every_gpu_times_jobs_per_gpu_unless_given(given, gpus, jobs_per_gpu, limit):
    from mnist_sgd.execution.host import gpu_limit

    assert gpu_limit(given, gpus, jobs_per_gpu) == limit


def test_a_run_schedules_against_every_gpu_times_jobs_per_gpu(tmp_path):
    """Two GPUs (a fake nvidia-smi) and jobs_per_gpu 3: six training jobs at once; --resources gpu=5 wins."""
    workdir = make_workdir(tmp_path / "workflow", {"s": sweep()})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text('#!/bin/sh\necho "GPU 0: Fake (UUID: GPU-a)"\necho "GPU 1: Fake (UUID: GPU-b)"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    target = "results/data/raw/t10k-labels-idx1-ubyte"  # one small job: Snakemake prints its limits first
    for extra, expected in [(["--config", "jobs_per_gpu=3"], 6), (["--resources", "gpu=5", "--forceall"], 5)]:
        result = subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", "1", *extra, "--", target],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout
        assert f'Provided resources: gpu=Resource("gpu", {expected})' in result.stdout, result.stdout
