"""The records a run leaves: its metrics CSV and its `run.json` (`RunInfo`).

The training job writes them (`mnist_sgd.training.train.run` fills a RunInfo); the summary and the figures read
them through this module, which alone knows their columns and keys. Nothing here imports torch, so
that summary and figure jobs start fast.
"""

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .files import atomic_path, write_text_atomic
from .runs import IMPLS, TrainConfig

METRIC_COLUMNS = ("iteration", "train_loss", "test_accuracy")
# The files a training job writes beside its run.json, whose size and SHA-256 run.json records.
RUN_FILES = ("metrics.csv", "weights.npy")
DAMAGED_FIX = "run snakemake again: it retrains that run (and only it)"


class DamagedRecord(ValueError):
    """A run's record is torn, edited or unreadable; the message names the file and the fix."""


def file_digest(path):
    """{"bytes": size, "sha256": hex digest} of the file at `path`."""
    data = Path(path).read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _record_digest(fields):
    """The SHA-256 of a run.json's fields but its own digest: any edit of the record changes it."""
    fields = {k: v for k, v in fields.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def read_metrics(path):
    """A run's metrics CSV (`write_metrics`) as a DataFrame; test_accuracy NaN where not evaluated."""
    import pandas as pd  # here, not at the top: a training job, which only writes records, need not load it

    return pd.read_csv(path, usecols=METRIC_COLUMNS)


def write_metrics(path, result):
    """Write a run's per-iteration CSV atomically; accuracy is empty where it was not evaluated."""
    accuracy = result.test_accuracy
    lines = [",".join(METRIC_COLUMNS)]
    for i, (loss, acc) in enumerate(zip(result.train_loss.tolist(), accuracy.tolist())):
        lines.append(f"{i + 1},{loss!r},{'' if np.isnan(acc) else repr(acc)}")
    write_text_atomic(path, "\n".join(lines) + "\n")


@dataclass(frozen=True)
class Resolved:
    """What the run's settings became where it ran."""

    train_size: int  # images trained on (`params.train_size` None: all of them)
    device: str  # e.g. "cpu", "cuda:0"
    threads: int  # CPU threads torch used
    cuda_graphs: bool  # whether chunks ran as CUDA graph replays to the end
    cuda_graphs_error: Optional[str] = None  # why they stopped, where capture failed
    device_index: Optional[int] = None  # the CUDA device's index among the visible ones


@dataclass(frozen=True)
class RunInfo:
    """`run.json`: what a run was (`params`), how it ended, where it ran, at what cost, and what made it."""

    params: TrainConfig
    resolved: Resolved
    status: str  # "ok" or "diverged"
    diverged_at_iteration: Optional[int]  # 1-based: the first row with a non-finite loss
    iterations_done: int
    final_train_loss: Optional[float]  # None when it is not finite
    final_test_accuracy: float  # the last evaluated iteration's
    best_test_accuracy: float
    device_name: str  # the GPU's or the CPU's model
    git_commit: Optional[str]
    git_dirty: Optional[bool]  # tracked files differed from the commit
    versions: dict
    host: str
    slurm_job_id: Optional[str]
    setup_seconds: float  # device and data; in a pack, the run's own (its pack loads the data once: its log)
    wall_seconds: float  # the training loop, evaluation included
    seconds_per_iteration: float
    peak_rss_mb: float
    gpu_peak_allocated_mb: Optional[float]
    data_sha256: Optional[str] = None  # of the cached tensors it trained on (mnist_sgd.data.cache.tensors_sha256)
    # Test images of class i (row) that the final weights (weights.npy, after the last step) put in class j.
    confusion: Optional[list] = None
    # The gradient noise scales along training (mnist_sgd.training.noise): {"iteration": [t, ...] (the weight after
    # t steps; 0 the start), "b_simple": [...], "b_noise": [...]}; None where not measured.
    noise_scale: Optional[dict] = None
    noise_seconds: Optional[float] = None  # of wall_seconds, spent measuring them
    # What made the run besides its parameters, as the training rule gave it (`TrainingInputs`): planning
    # retrains a run whose inputs are not this workflow's (`untrusted_run`); None from the command line.
    inputs: Optional[dict] = None
    # {name: {"bytes": n, "sha256": hex}} of each of RUN_FILES the run wrote (file_digest), and the
    # digest of this record itself: a reader checks both (RunInfo.read), so a torn or edited record is
    # never believed.
    files: Optional[dict] = None
    record_sha256: Optional[str] = None

    @property
    def diverged(self):
        return self.status == "diverged"

    def write(self, path):
        """Write the record as JSON, atomically, with the digests of the RUN_FILES beside it (written
        first) and of itself."""
        folder = Path(path).parent
        files = {name: file_digest(folder / name) for name in RUN_FILES if (folder / name).exists()}
        fields = dataclasses.asdict(dataclasses.replace(self, files=files, record_sha256=None))
        fields["record_sha256"] = _record_digest(fields)
        write_text_atomic(path, json.dumps(fields, indent=2) + "\n")

    @classmethod
    def read(cls, path, verify=True):
        """The record in the `run.json` at `path`; DamagedRecord, naming the damaged file, if it is not
        a whole record as written, or (`verify`) one of the files it lists beside it differs from its
        recorded size and SHA-256."""
        try:
            fields = json.loads(Path(path).read_text())
            info = cls(
                **{**fields, "params": TrainConfig(**fields["params"]), "resolved": Resolved(**fields["resolved"])}
            )
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as error:
            raise DamagedRecord(f"{path}: not a whole run record ({error}); {DAMAGED_FIX}") from None
        if verify:
            info._verify(path, fields)
        return info

    def _verify(self, path, fields):
        """DamagedRecord unless this record, read from `path` as `fields`, is as written, with every file
        it lists."""
        if self.record_sha256 is None or self.files is None:
            raise DamagedRecord(f"{path}: a record without its digests (an older version wrote it); {DAMAGED_FIX}")
        if _record_digest(fields) != self.record_sha256:
            raise DamagedRecord(f"{path}: edited since the run wrote it (its digest differs); {DAMAGED_FIX}")
        for name, expected in self.files.items():
            file = Path(path).parent / name
            if not file.exists():
                raise DamagedRecord(f"{file}: missing; {DAMAGED_FIX}")
            found = file_digest(file)
            if found != expected:
                what = "torn" if found["bytes"] != expected["bytes"] else "changed"
                raise DamagedRecord(
                    f"{file}: {what} since the run wrote it ({found['bytes']} bytes, recorded "
                    f"{expected['bytes']}; SHA-256 {'differs' if what == 'changed' else 'too'}); {DAMAGED_FIX}"
                )


@dataclass(frozen=True)
class TrainingInputs:
    """What a run's records are a function of besides its parameters (its name): the digest of the
    training code (mnist_sgd.execution.digests.code_digest), of its data set's IDX files
    (mnist_sgd.study.layout.data_digest), and where it measures its noise scales (config noise_points).
    The training rule passes them to the run, which records them (RunInfo.inputs); planning compares."""

    code: str
    data: str
    noise_points: int

    def as_record(self):
        return dataclasses.asdict(self)


def untrusted_run(folder, inputs=None):
    """Why the records of the run in `folder` (its run.json and RUN_FILES) cannot be trusted, as
    (kind, reason), kind "damaged" or "outdated"; or None where they are whole and, given `inputs`
    (TrainingInputs), made from them, or where one is missing (Snakemake reruns a job whose output is
    missing).

    Outdated: made by other training code, from other data or with other noise points than `inputs`
    say (a results folder copied from another version: Snakemake's own record of a job's parameters,
    under .snakemake, is not copied with it)."""
    path = Path(folder) / "run.json"
    if not path.exists() or not all((Path(folder) / name).exists() for name in RUN_FILES):
        return None
    try:
        info = RunInfo.read(path)
    except DamagedRecord as error:
        return "damaged", str(error)
    if inputs is not None and info.inputs != inputs.as_record():
        recorded = info.inputs or {}
        changed = [
            f"{name} {recorded.get(name)!r}, now {value!r}"
            for name, value in inputs.as_record().items()
            if recorded.get(name) != value
        ]
        return "outdated", f"{path}: made from other inputs than this workflow's ({'; '.join(changed)})"
    return None


def set_aside_untrusted(folders, inputs=None, dry_run=False, log=print):
    """For each run folder in `folders` whose records cannot be trusted (untrusted_run, against the
    TrainingInputs of its run in `inputs`, in the same order, where given): say why, and, unless
    `dry_run` (a bool, or a function that says it, asked only when a record is found untrusted), move its
    run.json to run.json.damaged or run.json.outdated, so that Snakemake sees the run's outputs incomplete
    and retrains exactly that run. Return {folder: why} of those found untrusted."""
    untrusted = {}
    for folder, expected in zip(folders, inputs or [None] * len(folders)):
        found = untrusted_run(folder, expected)
        if found:
            kind, reason = found
            untrusted[folder] = reason
            if callable(dry_run):
                dry_run = dry_run()
            log(f"warning: {reason}" + (" (a real run sets it aside and retrains)" if dry_run else ""))
            if not dry_run:
                os.replace(Path(folder) / "run.json", Path(folder) / f"run.json.{kind}")
    return untrusted


@dataclass(frozen=True)
class Optimum:
    """`results/optimum/<training set>.json`: the exact least-squares optimum of a training set
    (mnist_sgd.training.optimum), the yardstick of every run on that set."""

    training_set: str  # its name (mnist_sgd.study.runs.training_set_name)
    train_size: int  # images in it
    rank: int  # of its images' matrix: how many independent pixel directions it spans
    train_loss: float  # 0.5 * ||Y - XW||^2 / n at the optimum: the from-scratch loss (study.LOSS_SCALE)
    test_accuracy: float
    seconds: float  # to compute it, data loading excluded
    data_sha256: Optional[str] = None  # of the cached tensors it was computed on
    min_singular_value: Optional[float] = None  # the images' smallest nonzero one
    max_hessian_eigenvalue: Optional[float] = None  # of X^T X / n: SGD's stability limit is lr < 2 / it
    curvature_seconds: Optional[float] = None  # to compute the example curvature (mnist_sgd.training.noise) too

    def write(self, path):
        """Write the record as JSON, atomically."""
        _write_json(path, self)

    @classmethod
    def read(cls, path):
        return cls(**json.loads(Path(path).read_text()))


def run_name(info_path):
    """The run whose `run.json` is at `info_path`: its folder under results/runs/, e.g.
    scratch/train100_batch100_lr0.001_it6000_seed0 or fashion-mnist/scratch/trainall_... (a run's folder
    is two levels deep, three for a data set other than MNIST)."""
    folders = Path(info_path).parent.parts
    in_dataset = len(folders) >= 3 and folders[-2] in IMPLS and folders[-3] != "runs"
    return "/".join(folders[-3:] if in_dataset else folders[-2:])


def _write_json(path, record):
    write_text_atomic(path, json.dumps(dataclasses.asdict(record), indent=2) + "\n")


# The fields of mnist_sgd.training.noise.Curvature.
CURVATURE_ARRAYS = (
    "hessian",
    "curvature",
    "norms",
    "cross",
    "weighted_hessian",
    "weighted_cross",
    "weighted_mean",
)


def write_curvature(path, arrays, training_set, data_sha256):
    """Save a training set's curvature (`arrays`: CURVATURE_ARRAYS by name, e.g. the fields of a
    mnist_sgd.training.noise.Curvature) as float32 .npz, atomically, with the training set's name and its data's
    digest, which `read_curvature` checks."""
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.savez(
            stream,
            **{name: np.asarray(arrays[name], dtype=np.float32) for name in CURVATURE_ARRAYS},
            training_set=np.array(training_set),
            data_sha256=np.array(data_sha256 or ""),
        )


def read_curvature(path, training_set, data_sha256, rows):
    """{name: array} of the CURVATURE_ARRAYS saved at `path` for `training_set` (`rows` images) of the
    data whose digest is `data_sha256`; None when the file is missing, unreadable, or for other data."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            same = str(saved["training_set"]) == training_set and str(saved["data_sha256"]) == (data_sha256 or "")
            arrays = {name: saved[name] for name in CURVATURE_ARRAYS}
    except (OSError, ValueError, KeyError):
        return None
    return arrays if same and arrays["curvature"].shape == (rows,) else None


def write_weights(path, weight):
    """Save a run's final (784, 10) float32 weight as .npy, atomically: `numpy.load(path)` reads it back
    (no pickle)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.save(stream, np.ascontiguousarray(weight, dtype=np.float32), allow_pickle=False)


def git_state(path=Path(__file__).resolve().parents[3]):
    """(commit, dirty) of the git checkout holding this code, or (None, None) outside one.

    `dirty` is True when a tracked file differs from the commit (results/ is ignored, untracked files
    are not counted).
    """

    def git(*args):
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=30)

    try:
        commit = git("rev-parse", "HEAD")
        if commit.returncode != 0:
            return None, None
        return commit.stdout.strip(), bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def cpu_name():
    """The CPU model (platform.processor() is empty on most Linux systems)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
