"""What planning asks of the machine it runs on: that it is one the workflow runs on, its usable CPUs,
and its NVIDIA GPUs (without importing torch: planning runs at every start of the workflow, and of each
job on a cluster)."""

import os
import shutil
import subprocess
import sys

# Where the workflow runs: Linux (tested in CI) and macOS (planning and the study; the warm worker uses
# a socket file, getpeereid and a pipe to watch its parent, all of which macOS has).
SUPPORTED = ("linux", "darwin")


class UnsupportedPlatform(RuntimeError):
    """The workflow does not run here; the message says where it does."""


def check_platform(platform=sys.platform):
    """UnsupportedPlatform on a platform other than SUPPORTED's, before anything fails obscurely (on
    Windows, the first job's `import fcntl`)."""
    if not platform.startswith(SUPPORTED):
        raise UnsupportedPlatform(
            f"this workflow runs on Linux and macOS, not on {platform}: its jobs lock files with fcntl and "
            "talk to the warm worker over Unix sockets. On Windows, run it in WSL 2 (a Linux such as Ubuntu), "
            "where it works as on Linux"
        )


def usable_cpus():
    """The CPUs this process may run on: its affinity where the platform has one (Linux; a cgroup or
    `taskset` may allow fewer than the machine has), else every CPU (macOS has no sched_getaffinity)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def training_threads(cores):
    """Threads a local training job holds: `cores` (Snakemake's --cores) over the usable CPUs, at least
    one. Four one-thread jobs on two CPUs finish later than two (88 s against 76 s for the default study,
    2-core AMD EPYC): the longest run gets half a CPU."""
    return max(1, cores // usable_cpus())


def count_gpus(log=lambda message: print(message, file=sys.stderr)):
    """NVIDIA GPUs on this machine, from `nvidia-smi -L`: 0 where it is absent, fails or hangs."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        log(f"warning: nvidia-smi -L: {error}; counting no GPU")
        return 0
    if listing.returncode != 0:
        log(f"warning: nvidia-smi -L failed ({listing.stderr.strip()}); counting no GPU")
        return 0
    return listing.stdout.count("GPU ")


def gpu_limit(given, gpus, jobs_per_gpu):
    """The `gpu` resource a local run schedules training jobs against (each holds 1 where it trains on
    a GPU): every GPU of the machine times `jobs_per_gpu` (the config's), or None where the user gave
    `--resources gpu=` (`given`), which then decides. At least 1, so that a run asking for a GPU on a
    machine that has none (device: cuda) fails in its job, with its own message, rather than waits."""
    return None if given else max(1, gpus * jobs_per_gpu)


def worker_allowed(wanted, local_exec, remote_exec, deployment_methods):
    """Whether jobs may use the warm worker (config `worker`, `wanted`): only where Snakemake runs them
    on this machine itself (`local_exec`, and not in a cluster or cloud job's own Snakemake,
    `remote_exec`, where a worker would outlive the job's allocation), and in the workflow's own Python
    environment: under a software deployment method (`--sdm conda`, apptainer, env modules:
    `deployment_methods`), each rule's jobs run in an environment of their own, which lacks some of the
    libraries the worker preloads (the plot environment has no torch)."""
    return bool(wanted) and local_exec and not remote_exec and not deployment_methods
