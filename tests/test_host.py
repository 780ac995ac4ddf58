"""The machine the workflow runs on: the platforms it supports, and the study on a platform without
Linux's own calls (macOS has no os.sched_getaffinity and no os.waitid), simulated here by removing them
from every Python process of a run."""

import os
import sys

import pytest

from conftest import make_workdir, snakemake, sweep
from mnist_sgd.execution import host
from mnist_sgd.execution.worker import _Child


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_linux_and_macos_are_supported(platform):
    host.check_platform(platform)


@pytest.mark.parametrize("platform", ["win32", "cygwin", "emscripten"])
def test_another_platform_is_refused_with_where_the_workflow_runs(platform):
    with pytest.raises(host.UnsupportedPlatform, match=f"runs on Linux and macOS, not on {platform}.*WSL 2"):
        host.check_platform(platform)


def test_without_sched_getaffinity_every_cpu_is_usable(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity")
    assert host.usable_cpus() == os.cpu_count()
    assert host.training_threads(4 * os.cpu_count()) == 4 and host.training_threads(1) == 1


def test_a_child_is_reaped_without_waitid(monkeypatch):
    monkeypatch.delattr(os, "waitid")
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    assert _Child(pid).wait() == 3


# Every Python process of the run (Snakemake, the job scripts, the warm worker) starts without them.
WITHOUT_LINUX_CALLS = "import os\nfor name in ('sched_getaffinity', 'waitid'):\n    vars(os).pop(name, None)\n"


def test_the_study_plans_and_trains_in_the_worker_where_linuxs_own_calls_are_missing(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(WITHOUT_LINUX_CALLS)
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    check = "import os, sys; sys.exit(hasattr(os, 'sched_getaffinity') or hasattr(os, 'waitid'))"
    assert os.spawnv(os.P_WAIT, sys.executable, [sys.executable, "-c", check]) == 0  # the simulation holds
    workdir = make_workdir(tmp_path, {"mac": sweep(batch_sizes=[1, 10])})
    result = snakemake(workdir, "--cores", "2")  # --cores: the training jobs' threads are planned
    assert result.returncode == 0, result.stdout
    assert len(list((workdir / "results" / "runs").rglob("metrics.csv"))) == 2
    logs = {path: path.read_text() for path in (workdir / "results" / "logs").rglob("*.log")}
    assert logs and not [path for path, text in logs.items() if "own process" in text]  # all in the worker


@pytest.mark.parametrize(
    "local, remote, methods, allowed",
    [
        (True, False, set(), True),
        (False, False, set(), False),  # a cluster executor: the jobs run elsewhere
        (True, True, set(), False),  # a cluster job's own Snakemake
        (True, False, {"conda"}, False),  # each rule in its own environment
    ],
)
def test_the_worker_runs_only_locally_in_the_workflows_own_environment(local, remote, methods, allowed):
    assert host.worker_allowed(True, local, remote, methods) is allowed
    assert host.worker_allowed(False, local, remote, methods) is False
