"""What defines a run (`TrainConfig`), its limits, its name, and what the name says back.

The workflow, the training program and the benchmarks all go through these functions, so a run has
the same name, parameters and limits everywhere, and whatever planning accepts the training program
accepts.
"""

import math
import re
import struct
from dataclasses import dataclass
from typing import Optional

from .datasets import DATASET_DIR, DATASET_NAME, DEFAULT_DATASET, dataset_dir, dataset_of

IMPLS = ("scratch", "torch")  # the update rules of mnist_sgd.training.sgd.UPDATERS
# How batches are drawn (mnist_sgd.training.sgd.SAMPLERS), and each update rule's own way, as the original study
# draws them: uniformly with replacement for scratch, shuffled epochs (a DataLoader's) for torch.
SAMPLINGS = ("with_replacement", "epochs")
DEFAULT_SAMPLING = {"scratch": "with_replacement", "torch": "epochs"}
DEVICES = ("auto", "cpu", "cuda")
# What one training job can hold: a chunk of 100 batches' indices (8 bytes each) stays under 100 MB,
# the per-iteration curves (and metrics.csv, about 40 bytes a row) under 0.5 GB; seeds are int64.
MAX_BATCH_SIZE = 100_000
MAX_ITERATIONS = 10_000_000
MAX_SEED = 2**63 - 1
# The largest learning rate: float32's largest number. The update scales the gradient by lr / batch size
# in float32, which cannot hold more (a larger lr crashed the run instead of letting it diverge).
MAX_LR = 3.4028234663852886e38

# One folder per run under results/runs/; its name says what the run is. `dataset_dir` is empty for
# MNIST (the original study's runs keep their names) and `<data set>/` for any other. `sampling` is empty when
# the update rule draws its batches its own way (DEFAULT_SAMPLING) and `_epochs` for scratch runs on
# shuffled epochs; `evaluation` is empty when every iteration is evaluated (the original study's way)
# and `_every<N>` otherwise.
RUN_PATTERN = (
    "{dataset_dir}{impl}/train{train_size}_batch{batch_size}_lr{lr}_it{iterations}_seed{seed}{sampling}{evaluation}"
)
# What each field of RUN_PATTERN matches: the workflow's wildcard constraints.
RUN_WILDCARDS = {
    "dataset_dir": DATASET_DIR,
    "impl": "|".join(IMPLS),
    "train_size": r"all|[1-9]\d*",
    "batch_size": r"[1-9]\d*",
    "lr": r"[0-9][0-9.e+-]*",
    "iterations": r"[1-9]\d*",
    "seed": r"\d+",
    "sampling": r"(_epochs)?",
    "evaluation": r"(_every([2-9]|[1-9]\d+))?",
}


# Each update rule's loss, as a multiple of the from-scratch loss 0.5 * ||Y - XW||^2 / b at the same
# weights: torch's MSELoss averages over the b x 10 outputs and has no 1/2, so it is 2/10 of it.
LOSS_SCALE = {"scratch": 1.0, "torch": 0.2}
# A training set: all the training images, or the random subset of `train_size` that `seed` draws
# (mnist_sgd.training.sgd.training_set); every run on it shares its least-squares optimum (mnist_sgd.training.optimum).
TRAINING_SET_WILDCARD = rf"{DATASET_DIR}(trainall|train[1-9]\d*_seed\d+)"


class ConfigError(ValueError):
    """A training parameter is out of range: `name=value: reason`."""

    def __init__(self, name, value, reason):
        super().__init__(f"{name}={value!r}: {reason}")
        self.name, self.value, self.reason = name, value, reason


def _integer(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run, and where it runs (`device`, which does not change what it
    computes beyond float rounding). `train_size=None` trains on the whole training set."""

    impl: str = "scratch"
    train_size: Optional[int] = None
    batch_size: int = 100
    iterations: int = 6000
    lr: float = 0.001
    seed: int = 0
    eval_every: int = 1
    device: str = "auto"
    sampling: Optional[str] = None  # None: the update rule's own (DEFAULT_SAMPLING)
    dataset: str = DEFAULT_DATASET  # a built-in data set (BUILTIN_DATASETS) or one the config declares

    @property
    def batch_sampling(self):
        """How this run draws its batches: one of SAMPLINGS."""
        return self.sampling or DEFAULT_SAMPLING.get(self.impl)

    def validate(self, num_train=None):
        """Raise ConfigError naming the first bad parameter and what is allowed. With `num_train`,
        the size of the training set, also check the parameters that depend on it."""
        if self.impl not in IMPLS:
            raise ConfigError("impl", self.impl, f"must be one of {list(IMPLS)}")
        if not (isinstance(self.dataset, str) and re.fullmatch(DATASET_NAME, self.dataset)):
            raise ConfigError("dataset", self.dataset, f"must be a data set's name ({DATASET_NAME})")
        if self.device not in DEVICES:
            raise ConfigError("device", self.device, f"must be one of {list(DEVICES)}")
        for name, high in (
            ("batch_size", MAX_BATCH_SIZE),
            ("iterations", MAX_ITERATIONS),
            ("eval_every", MAX_ITERATIONS),
        ):
            if not _integer(getattr(self, name), 1, high):
                raise ConfigError(name, getattr(self, name), f"must be an integer from 1 to {high}")
        if self.train_size is not None and not _integer(self.train_size, 1, math.inf):
            raise ConfigError("train_size", self.train_size, "must be an integer >= 1, or all")
        if self.train_size is not None and num_train is not None and self.train_size > num_train:
            raise ConfigError(
                "train_size",
                self.train_size,
                f"larger than the {num_train} training images; use a size <= {num_train}, or all",
            )
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError("lr", self.lr, "must be a finite number > 0")
        if struct.unpack("f", struct.pack("f", self.lr))[0] == 0.0:
            raise ConfigError(
                "lr",
                self.lr,
                "rounds to 0 in float32, which the SGD update computes in: no step would move; use lr >= 1e-45",
            )
        if self.lr > MAX_LR:
            raise ConfigError(
                "lr", self.lr, f"larger than {MAX_LR:.7g}, the largest float32 number, which the SGD update computes in"
            )
        if not _integer(self.seed, 0, MAX_SEED):
            raise ConfigError("seed", self.seed, f"must be an integer from 0 to {MAX_SEED}")
        if self.sampling is not None and self.sampling not in SAMPLINGS:
            raise ConfigError("sampling", self.sampling, f"must be one of {list(SAMPLINGS)}")
        if self.impl == "torch" and self.batch_sampling != "epochs":
            raise ConfigError("sampling", self.sampling, "impl torch draws shuffled epochs (a DataLoader's way)")
        size = self.train_size or num_train
        if self.batch_sampling == "epochs" and size is not None and self.batch_size > size:
            raise ConfigError(
                "batch_size",
                self.batch_size,
                f"impl {self.impl} draws each epoch's batches without replacement from the {size} training "
                f"images, so a batch holds at most {size}; use a smaller batch size (or sampling "
                "with_replacement, impl scratch)",
            )


def run_name(config):
    """The folder name of the run `config` defines (its device is where it runs, not what it is)."""
    return RUN_PATTERN.format(
        dataset_dir=dataset_dir(config.dataset),
        impl=config.impl,
        train_size="all" if config.train_size is None else config.train_size,
        batch_size=config.batch_size,
        lr=repr(float(config.lr)),
        iterations=config.iterations,
        seed=config.seed,
        sampling="" if config.batch_sampling == DEFAULT_SAMPLING[config.impl] else f"_{config.batch_sampling}",
        evaluation="" if config.eval_every == 1 else f"_every{config.eval_every}",
    )


_RUN_NAME = re.compile(
    rf"((?P<dataset>{DATASET_NAME})/)?(?P<impl>{'|'.join(IMPLS)})/train(?P<train_size>all|\d+)_batch(?P<batch_size>\d+)_lr(?P<lr>[^_]+)"
    r"_it(?P<iterations>\d+)(_seed(?P<seed>\d+))?(?P<extra>.*)"
)


def parse_run(run):
    """The parameters encoded in a run name (or a configuration's name, whose seed is ""), as strings."""
    params = _RUN_NAME.fullmatch(run).groupdict()
    extra = params.pop("extra").split("_")
    impl = params["impl"]
    return {
        **params,
        "dataset": params["dataset"] or DEFAULT_DATASET,
        "seed": params["seed"] or "",
        "sampling": "epochs" if "epochs" in extra else DEFAULT_SAMPLING.get(impl, ""),
        "eval_every": next((part[len("every") :] for part in extra if part.startswith("every")), "1"),
    }


def configuration(run):
    """The name of run `run`'s configuration: its name without the seed. The runs of a configuration
    differ only in their seed, and the figures and summary_by_config.csv aggregate over them."""
    return re.sub(r"_seed\d+", "", run, count=1)


def configurations(runs):
    """{configuration: its runs}, both in the order of `runs`."""
    groups = {}
    for run in runs:
        groups.setdefault(configuration(run), []).append(run)
    return groups


def training_set_name(run):
    """The name of the training set run `run` trains on (TRAINING_SET_WILDCARD): its data set's folder,
    then `trainall`, or the subset's size and the seed that picks it."""
    params = parse_run(run)
    if params["train_size"] == "all":
        return f"{dataset_dir(params['dataset'])}trainall"
    return f"{dataset_dir(params['dataset'])}train{params['train_size']}_seed{params['seed']}"


def parse_training_set(name):
    """(data set, train_size, seed) of a training set's name: train_size None for the whole set."""
    folder, _, name = name.rpartition("/")
    if name == "trainall":
        return dataset_of(folder), None, 0
    size, seed = name[len("train") :].split("_seed")
    return dataset_of(folder), int(size), int(seed)


def run_config(run, device="auto"):
    """The TrainConfig of a run name, to run on `device`."""
    params = parse_run(run)
    return TrainConfig(
        impl=params["impl"],
        train_size=None if params["train_size"] == "all" else int(params["train_size"]),
        batch_size=int(params["batch_size"]),
        iterations=int(params["iterations"]),
        lr=float(params["lr"]),
        seed=int(params["seed"]),
        eval_every=int(params["eval_every"]),
        device=device,
        sampling=None if params["sampling"] == DEFAULT_SAMPLING.get(params["impl"]) else params["sampling"],
        dataset=params["dataset"],
    )


# What identifies the training problem a batch-size curve is measured on: one curve per such group.
PROBLEM = ["dataset", "impl", "sampling", "train_size"]
