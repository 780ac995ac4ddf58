"""The study's runs: what defines a run (`TrainConfig`), its name, and the runs a configuration plans.

The workflow (workflow/rules/common.smk), the training program and the benchmarks all go through
these functions, so a run has the same name, parameters and limits everywhere, and whatever planning
accepts the training program accepts. Nothing here imports torch: planning stays fast.
"""

import gzip
import itertools
import math
import os
import re
import struct
from dataclasses import dataclass
from typing import Optional

# The data sets a sweep can name without declaring them: torchvision's classes of the same names are
# their registry (mnist_sgd.datasets; kept out of here so that planning does not import torchvision).
BUILTIN_DATASETS = ("mnist", "fashion-mnist")
DEFAULT_DATASET = "mnist"
DATASET_NAME = r"[a-z0-9][a-z0-9-]*"
# The folder of a data set's results (dataset_dir): none for MNIST, `<data set>/` for any other.
DATASET_DIR = rf"((?!{DEFAULT_DATASET}/){DATASET_NAME}/)?"
# Every data set is in MNIST's IDX layout: these four files, 28x28 images, labels 0-9.
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DIGITS = tuple(str(digit) for digit in range(10))
# The names of the ten classes, in label order (figure panels and axes); digits for a custom data set.
# Fashion-MNIST's are torchvision's FashionMNIST.classes (a test checks they agree).
CLASS_NAMES = {
    "mnist": DIGITS,
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
DATASET_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}  # how figures name them
IMPLS = ("scratch", "torch")  # the update rules of mnist_sgd.sgd.UPDATERS
# How batches are drawn (mnist_sgd.sgd.SAMPLERS), and each update rule's own way, as the original study
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
# (mnist_sgd.data.training_set); every run on it shares its least-squares optimum (mnist_sgd.optimum).
TRAINING_SET_WILDCARD = rf"{DATASET_DIR}(trainall|train[1-9]\d*_seed\d+)"


class ConfigError(ValueError):
    """A training parameter is out of range: `name=value: reason`."""

    def __init__(self, name, value, reason):
        super().__init__(f"{name}={value!r}: {reason}")
        self.name, self.value, self.reason = name, value, reason


class SweepError(ValueError):
    """A sweep asks for something that cannot be run."""


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


def dataset_dir(dataset):
    """The folder a data set's runs, raw files and optima go in, under results/runs/ and the like: none
    for MNIST, so that the original study's paths stay as they were."""
    return "" if dataset == DEFAULT_DATASET else f"{dataset}/"


def dataset_of(folder):
    """The data set of a `dataset_dir` ("" is MNIST)."""
    return folder.rstrip("/") or DEFAULT_DATASET


def dataset_title(dataset):
    return DATASET_TITLES.get(dataset, dataset)


def class_names(dataset):
    return CLASS_NAMES.get(dataset, DIGITS)


def datasets(config):
    """{name: its custom_datasets entry, or None for a built-in one}: every data set `config` can train on."""
    return {**dict.fromkeys(BUILTIN_DATASETS), **(config.get("custom_datasets") or {})}


def targets_of(config):
    """A function from a data set's name to its target accuracies (config `targets`: one list for every
    data set, or a list per data set; none for a data set it does not name)."""
    targets = config.get("targets") or []
    if isinstance(targets, dict):
        return lambda dataset: sorted(targets.get(dataset, []))
    return lambda dataset: sorted(targets)


def dataset_sha256(config, dataset):
    """{IDX file: SHA-256 of its decompressed content} pinned for `dataset`: a custom data set's own
    `sha256`, else `data_sha256[dataset]`; a `data_sha256` of the four files themselves (the layout
    of earlier versions) pins MNIST. SweepError when the config pins none."""
    custom = (config.get("custom_datasets") or {}).get(dataset)
    if custom is not None:
        return custom["sha256"]
    pins = config.get("data_sha256") or {}
    if set(pins) == set(IDX_FILES):
        pins = {DEFAULT_DATASET: pins}
    if dataset not in pins:
        raise SweepError(
            f"config error: data_sha256 has no checksums for data set {dataset!r}; add data_sha256.{dataset} "
            "(the SHA-256 of each of its four decompressed IDX files)"
        )
    return pins[dataset]


def idx_image_count(path, fix):
    """The number of images in the IDX images file at `path` (plain or gzip), from its header, checked
    against the file's size (a gzip file's from its trailer). SweepError names the file, what is wrong
    with it, and `fix`. Planning reads it, so it reads 16 bytes and no more.
    """
    path = str(path)
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(-4, os.SEEK_END) if gzipped and os.path.getsize(path) >= 22 else None
            trailer = raw.read(4) if gzipped else b""
        with (gzip.open if gzipped else open)(path, "rb") as stream:
            header = stream.read(16)
    except (OSError, EOFError) as err:
        raise SweepError(f"{path}: unreadable ({err}); {fix}") from None
    size = struct.unpack("<I", trailer)[0] if len(trailer) == 4 else None if gzipped else os.path.getsize(path)
    if len(header) < 16 or header[:4] != b"\x00\x00\x08\x03":
        raise SweepError(f"{path}: not an IDX images file (its header is {header[:16].hex() or 'empty'}); {fix}")
    count, rows, columns = struct.unpack(">III", header[4:16])
    expected = 16 + count * rows * columns
    if gzipped and size is not None:
        expected_size = expected % (1 << 32)  # gzip's trailer holds the size modulo 2^32
    else:
        expected_size = expected
    if (rows, columns) != (28, 28):
        raise SweepError(
            f"{path}: its images are {rows}x{columns} pixels; the model takes 28x28 (784 pixels), as MNIST's; {fix}"
        )
    if count == 0:
        raise SweepError(f"{path}: its header says it holds no image; a training set needs at least one; {fix}")
    if size is not None and size != expected_size:
        raise SweepError(
            f"{path}: its header says {count} images of {rows}x{columns} pixels ({expected} bytes), but it holds "
            f"{size} bytes: truncated or damaged; {fix}"
        )
    return count


# The config lists of a sweep, by the TrainConfig field each one sets (`lr`: a number or a list).
SWEEP_LISTS = {
    "train_size": "train_sizes",
    "batch_size": "batch_sizes",
    "seed": "seeds",
    "lr": "lr",
    "dataset": "datasets",
}


def learning_rates(sweep):
    """A sweep's learning rates: its `lr`, a number or a list of them, as a list."""
    return sweep["lr"] if isinstance(sweep["lr"], list) else [sweep["lr"]]


def sweep_runs(config, name, num_train=None):
    """Names of the runs of sweep `name` in `config`, in configuration order, each checked as the
    training program checks it. `num_train`, when known, is the size of the training set: a number,
    or {data set: its size (None where not known)}."""
    sweep = config["sweeps"][name]
    where = f"config error: sweeps.{name}"
    runs = []
    known = datasets(config)
    for dataset in sweep.get("datasets", [DEFAULT_DATASET]):
        if dataset not in known:
            raise SweepError(
                f"{where}.datasets has {dataset!r}: not a data set; built in: {list(BUILTIN_DATASETS)}, "
                "or declare it under custom_datasets"
            )
        if "data_sha256" in config:  # the workflow's always has (the schema's default): its data must be pinned
            dataset_sha256(config, dataset)
        size = num_train.get(dataset) if isinstance(num_train, dict) else num_train
        runs += _dataset_runs(config, sweep, where, dataset, size)
    return list(dict.fromkeys(runs))  # batch_sizes [100, train_size] with train_sizes [100]: one run


def _dataset_runs(config, sweep, where, dataset, num_train):
    runs = []
    for train_size in sweep["train_sizes"]:
        if train_size == num_train:
            raise SweepError(f"{where}.train_sizes has {train_size}: the whole training set; write all")
        for batch_size, lr, seed in itertools.product(
            sweep["batch_sizes"], learning_rates(sweep), sweep.get("seeds", [0])
        ):
            if batch_size == "train_size":
                if train_size == "all":
                    raise SweepError(f"{where}.batch_sizes='train_size' needs integer train_sizes, not all")
                batch_size = train_size
            run = TrainConfig(
                impl=sweep["impl"],
                train_size=None if train_size == "all" else train_size,
                batch_size=batch_size,
                iterations=sweep["iterations"],
                lr=lr,
                seed=seed,
                eval_every=config.get("eval_every", 1),
                sampling=sweep.get("sampling"),
                dataset=dataset,
            )
            _validate(run, num_train, where)
            runs.append(run_name(run))
    return runs


def _validate(run, num_train, where):
    """Validate one run of a sweep (`where`: the sweep's config key), raising SweepError that names the
    sweep's list or key holding the bad value."""
    try:
        run.validate(num_train)
    except ConfigError as err:
        key = SWEEP_LISTS.get(err.name)
        if err.name == "eval_every":
            raise SweepError(f"config error: {err}") from None
        raise SweepError(f"{where}.{key} has {err.value!r}: {err.reason}" if key else f"{where}.{err}") from None


SWEEP_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")  # as the schema's propertyNames, whose `$` admits a final newline


def plan(config, num_train=None):
    """The runs of every sweep and the figure groups of `config`: ({sweep: runs}, {group: (title, runs)}),
    a group being a sweep or a configured comparison. Raise SweepError on what cannot be run."""
    for name, custom in (config.get("custom_datasets") or {}).items():
        if name in BUILTIN_DATASETS:
            raise SweepError(f"config error: custom_datasets.{name}: a built-in data set has that name; choose another")
        if not os.path.isdir(custom["path"]):
            raise SweepError(
                f"config error: custom_datasets.{name}.path={custom['path']!r}: no such folder; give the "
                "folder holding its four IDX files (gzip or plain)"
            )
    for name in config["sweeps"]:
        if not SWEEP_NAME.fullmatch(name):
            raise SweepError(
                f"config error: sweeps.{name!r}: a sweep's name is letters, digits and _ only (no spaces, "
                "newlines or other control characters); rename it"
            )
    sweeps = {name: sweep_runs(config, name, num_train) for name in config["sweeps"]}
    groups = {name: (group_title(config, name), runs) for name, runs in sweeps.items()}
    for name, comparison in config["figures"]["comparisons"].items():
        if name in groups or name == "runs":
            raise SweepError(
                f"config error: figures.comparisons.{name}: the name is taken (by a sweep "
                "or by results/figures/runs); choose another"
            )
        groups[name] = (group_title(config, name), comparison_runs(config, name, sweeps))
    return sweeps, groups


def group_title(config, name):
    """The title of sweep or comparison `name`: its configured title, else its name."""
    group = config["sweeps"].get(name) or config["figures"]["comparisons"][name]
    return group.get("title", name)


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


# A training job's seconds on one CPU thread, roughly (fitted to bench/bench_workflow.py's per-job
# seconds on the default study, 2-core AMD EPYC, two jobs at a time; it prints both): start-up, an
# evaluation per evaluated iteration, and per iteration each row a step reads (twice when the batch is
# copied out, once when rows are weighted; see mnist_sgd.sgd.ScratchSGD) plus autograd for torch.
COST_SECONDS = {"start": 4.0, "evaluation": 4e-4, "row": 8e-7, "torch_step": 1e-3}


def weighs_rows(batch_size, num_rows):
    """Whether a from-scratch step weights every training row by how often the batch drew it, rather
    than copying the batch out (mnist_sgd.sgd.ScratchSGD): when the batch covers most rows, the copy
    would read the training set three times where the weighted pass reads it twice."""
    return 3 * batch_size > 2 * num_rows


def estimated_seconds(run, num_train=60000):
    """About how long run `run` trains on one CPU thread: what the scheduler starts first."""
    config = run_config(run)
    rows = config.train_size or num_train
    batch = config.batch_size
    reads = rows if config.impl == "scratch" and weighs_rows(batch, rows) else 2 * batch
    evaluations = -(-config.iterations // config.eval_every)
    return (
        COST_SECONDS["start"]
        + evaluations * COST_SECONDS["evaluation"]
        + config.iterations * reads * COST_SECONDS["row"]
        + (config.iterations * COST_SECONDS["torch_step"] if config.impl == "torch" else 0)
    )


def comparison_runs(config, name, sweeps):
    """Runs a configured comparison figure draws: for each selector, the runs of its sweep whose
    parameters match the selector's (`sweeps` maps sweep names to their runs)."""
    runs = []
    for i, selector in enumerate(config["figures"]["comparisons"][name]["runs"]):
        where = f"config error: figures.comparisons.{name}.runs[{i}]"
        sweep = selector["sweep"]
        if sweep not in sweeps:
            raise SweepError(f"{where}: sweep={sweep!r} is not a sweep; sweeps are {sorted(sweeps)}")
        wanted = {key: repr(float(v)) if key == "lr" else str(v) for key, v in selector.items() if key != "sweep"}
        matches = [run for run in sweeps[sweep] if wanted.items() <= parse_run(run).items()]
        if not matches:
            raise SweepError(f"{where}: no run of sweep {sweep!r} has {wanted}; its runs are {sweeps[sweep]}")
        runs += [run for run in matches if run not in runs]
    return runs


def learning_rate_lines(runs):
    """The lines of a learning-rate figure of `runs`: [{lr: the runs of that configuration}], one per
    configuration but for its learning rate, in the order of `runs`."""
    lines = {}
    for config, members in configurations(runs).items():
        lr = parse_run(config)["lr"]
        lines.setdefault(config.replace(f"_lr{lr}_", "_lr_", 1), {})[float(lr)] = members
    return list(lines.values())


def learning_rate_labels(runs):
    """The labels of the lines of learning_rate_lines(runs): what varies among them but the learning rate."""
    return run_labels([next(iter(line.values()))[0] for line in learning_rate_lines(runs)], leave_out=("lr", "seed"))


def run_labels(runs, leave_out=()):
    """Short labels for runs (or configurations) compared in one figure: the parameters that vary among
    them, but those in `leave_out` (e.g. the one a figure's axis shows)."""
    params = [parse_run(run) for run in runs]
    keys = ("dataset", "impl", "sampling", "train_size", "batch_size", "lr", "iterations", "seed", "eval_every")
    varying = [k for k in keys if len({p[k] for p in params}) > 1 and k not in leave_out]
    if {"train_size", "batch_size"} <= set(varying) and all(p["batch_size"] == p["train_size"] for p in params):
        varying.remove("batch_size")  # batch = subset size: one number says both
    names = {"train_size": "train", "batch_size": "batch", "iterations": "it", "eval_every": "every"}
    words = [[p[k] if k in ("impl", "dataset") else f"{names.get(k, k)} {p[k]}" for k in varying] for p in params]
    return [", ".join(w) or p["impl"] for w, p in zip(words, params)]
