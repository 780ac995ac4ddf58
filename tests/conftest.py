"""Shared fixtures: small MNIST-format data sets the tests write themselves."""

import fcntl
import gzip
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake_fork import Snakemake

from mnist_sgd.data.cache import build_cache, load_cache
from mnist_sgd.study.datasets import MNIST_SHA256
from mnist_sgd.study.packs import PACK_PREFIX
from mnist_sgd.study.runs import TrainConfig

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from bench_workflow import copy_workflow  # noqa: E402  (one copy of the workflow for tests and benchmark)

# Fixture `completed`: the small study, run once per session (test_workflow, test_reruns, test_recovery).
pytest_plugins = ["small_study"]

# The real MNIST (four IDX .gz files) beside the checkout; the slow tests use it when present.
REAL_MNIST = Path(os.environ.get("MNIST_DIR", REPO.parent / "shared" / "mnist"))
IDX_NAMES = list(MNIST_SHA256)
# Runs whose chunks take every path of CudaGraphSteps (test_train emulates CUDA, test_gpu uses it):
# id -> config. Each run has 10 chunks (a tenth of the run each).
GRAPH_CONFIGS = {
    "batch1": TrainConfig(impl="scratch", batch_size=1, iterations=150, lr=0.01),
    "subset": TrainConfig(impl="scratch", train_size=60, batch_size=60, iterations=150, lr=0.01),  # weighted
    "torch": TrainConfig(impl="torch", batch_size=32, iterations=150, lr=0.05),  # 2 chunk shapes (epoch tails)
    "batch1-every3": TrainConfig(impl="scratch", batch_size=1, iterations=100, lr=0.002, eval_every=3),  # 3 shapes
    "torch-epochs": TrainConfig(impl="torch", batch_size=32, iterations=400, lr=0.05),  # epochs of 9x32 + 1x12
}


def idx_bytes(array):
    """Encode a uint8 array as an IDX file."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def synthetic_split(num, seed, columns=False):
    """Digit-like data a linear model can learn: each class lights up its own band of pixels (rows, or
    columns: another data set)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, num).astype(np.uint8)
    images = rng.integers(0, 60, (num, 28, 28))
    for i, label in enumerate(labels):
        band = slice(2 * label + 4, 2 * label + 7)
        rows, cols = (slice(4, 24), band) if columns else (band, slice(4, 24))
        images[i, rows, cols] += 180
    images[:, :2, :] = images[:, :, -3:] = 0  # as in MNIST, some pixels are 0 in every image
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_small_mnist(folder, num_train=300, num_test=100, compress=True, other=False):
    """Write the four IDX files of a small synthetic MNIST into `folder` (`other`: of a second data set,
    under the same file names); return their SHA-256 map."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = synthetic_split(num_train, seed=3 if other else 1, columns=other)
    test_images, test_labels = synthetic_split(num_test, seed=4 if other else 2, columns=other)
    contents = dict(zip(IDX_NAMES, [idx_bytes(a) for a in (train_images, train_labels, test_images, test_labels)]))
    for name, content in contents.items():
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / name).write_bytes(content)
    return {name: hashlib.sha256(content).hexdigest() for name, content in contents.items()}


def make_workdir(root, sweeps, figures=None, num_train=300, num_test=100, datasets=("mnist",)):
    """A copy of the workflow in `root`, configured with `sweeps` on a small mirror it writes: MNIST's four
    files directly in it (and, for each other built-in data set in `datasets`, a sub-folder of its own)."""
    copy_workflow(root)
    sha256 = {
        dataset: write_small_mnist(
            root / "mirror" / ("" if dataset == "mnist" else dataset),
            num_train=num_train,
            num_test=num_test,
            other=dataset != "mnist",
        )
        for dataset in datasets
    }
    config = {
        "data_mirror": str(root / "mirror"),
        "mirrors": [],
        "data_sha256": sha256["mnist"] if tuple(datasets) == ("mnist",) else sha256,  # MNIST alone: the flat layout
        "sweeps": sweeps,
        "figures": figures or {"formats": ["png"], "dpi": 40},
    }
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def sweep(**values):
    """A small sweep: one from-scratch run on all the training images, batch 10, 40 iterations, unless
    `values` say otherwise."""
    return {
        "impl": "scratch",
        "train_sizes": ["all"],
        "batch_sizes": [10],
        "iterations": 40,
        "lr": 0.01,
        "seeds": [0],
        **values,
    }


def train_directly(workdir, metrics, *options):
    """Run the training program itself, as a user would, on `workdir`'s data cache, with one thread."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mnist_sgd.training.train",
            "--data",
            str(workdir / "results" / "data" / "mnist.pt"),
            "--metrics",
            str(metrics),
            "--info",
            str(metrics.with_suffix(".json")),
            "--threads",
            "1",
            *options,
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "workflow")},
    )


_SNAKEMAKE = Snakemake()


def snakemake(workdir, *args, timeout=600):
    """Run the snakemake CLI in `workdir` (forked from a process that imported it: tests/snakemake_fork.py);
    return the completed process (stdout and stderr merged)."""
    with tempfile.NamedTemporaryFile(prefix="snakemake-", suffix=".log") as output:
        code = _SNAKEMAKE.run(workdir, args, output.name, timeout)
        text = Path(output.name).read_text(errors="replace")
    return subprocess.CompletedProcess(["snakemake", *args], code, stdout=text)


def job_stats(output, kernel=False):
    """Jobs per rule from the "Job stats" table Snakemake prints before running (or with -n); the
    training jobs (a rule per pack, `train-<digest>`) as `train`: how many runs they train, from the
    outputs Snakemake prints for each job. The kernel table's job (rule test_kernel), a part of
    training the packs of small batches, only with `kernel` (tests/test_packs.py counts it)."""
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:")[1].split("\n\n")[0]
    rows = [line.split() for line in table.splitlines()[3:] if line.strip()]
    stats = {rule: int(count) for rule, count in rows if rule != "total" and (kernel or rule != "test_kernel")}
    packs = [rule for rule in stats if rule.startswith(PACK_PREFIX)]
    if packs:
        for rule in packs:
            del stats[rule]
        stats["train"] = len(trained_runs(output))
    return stats


def trained_runs(output):
    """The runs the training jobs in Snakemake's `output` train (each job's `output:` line)."""
    runs = set()
    for block in re.finditer(rf"^(?:local)?rule {PACK_PREFIX}\w+:\n((?:    .*\n)*)", output, re.MULTILINE):
        for line in block.group(1).splitlines():
            if line.startswith("    output: "):
                files = line[len("    output: ") :].split(", ")
                runs.update(f[len("results/runs/") : -len("/run.json")] for f in files if f.endswith("/run.json"))
    return runs


# Watching a running workflow's processes (the kill tests: tests/test_faults.py, tests/test_packs.py).
def wait_for(condition, what, timeout=120, poll=0.1):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


def holders(path):
    """The processes that have `path` open."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if any(fd.resolve() == path.resolve() for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def training_processes(workdir, log):
    """(the training job Snakemake runs in `workdir` for the run that logs to `log`, a copy of the rule
    script; the process that trains it: the job's child in the warm worker, or the job itself). The
    trainer holds the run's log; the job, the log of the run's pack."""
    scripts = f"{workdir}/.snakemake/scripts/"
    [trainer] = holders(log)
    for pack_log in (workdir / "results" / "logs" / "train" / "packs").iterdir():
        pids = holders(pack_log)
        if trainer in pids:
            commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace") for pid in pids}
            [job] = [
                pid
                for pid, command in commands.items()
                if scripts in command and command.rstrip("\0").endswith(".train.py")
            ]
            return job, trainer
    raise AssertionError(f"no pack's job trains {log}")


# The modules that take longest, longest first (seconds in the suite, 2-core AMD EPYC): pytest-xdist hands
# whole modules to its workers in collection order (--dist loadfile --no-loadscope-reorder), and a long
# module that starts last ends the suite late. The SLURM module mostly waits on its cluster and on status
# queries; the real-MNIST study is the critical path.
SLOWEST_FIRST = [
    "test_real_mnist.py",  # 275
    "test_slurm.py",  # 138
    "test_faults.py",  # 110
    "test_packs.py",  # 89 (started last, it once ended the suite a minute after the others)
    "test_devices.py",  # 25 alone, more beside others: it waits on nvidia-smi stand-ins and job slots
    "test_safety.py",  # 89
    "test_recovery.py",  # 135, with test_workflow and test_reruns on one small study built once
    "test_reruns.py",  # 28
    "test_workflow.py",  # 19
    "test_dimensions.py",  # 75
    "test_real_fashion_mnist.py",  # 64
]


def pytest_collection_modifyitems(items):
    """Collect the slowest modules first (the rest keep their order)."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def built_once(tmp_path_factory, name, build):
    """(folder, what `build(folder)` returned): the folder built once per test session, whichever test
    process asks first (pytest-xdist's workers share the parent of their base temp folders); the
    others wait for it. A build that fails is tried again by the next caller. Copy the folder
    (`copy_of`) before changing anything in it: other modules read it meanwhile."""
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent
    folder, log = root / name, root / f"{name}.log"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not log.exists():
            shutil.rmtree(folder, ignore_errors=True)
            output = build(folder)
            log.write_text(output)
    return folder, log.read_text()


def copy_of(folder, destination):
    """A copy of a workflow folder (results, logs and Snakemake's records, times kept), to change at will."""
    shutil.copytree(folder, destination, symlinks=True)
    return destination


@pytest.fixture
def small_mirror(tmp_path):
    """(folder, sha256 map) of a small gzip MNIST mirror."""
    folder = tmp_path / "mirror"
    return folder, write_small_mnist(folder)


@pytest.fixture
def small_data(tmp_path):
    """The small synthetic MNIST, cached and loaded on the CPU."""
    raw = tmp_path / "raw"
    write_small_mnist(raw, compress=False)
    cache = tmp_path / "mnist.pt"
    build_cache(*(raw / name for name in IDX_NAMES), cache)
    return load_cache(cache)
