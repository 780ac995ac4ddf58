"""The runs a configuration plans: each sweep's runs, each comparison's, and what cannot be run, refused
with the key and the fix before any job.
"""

import itertools
import os
import re

from .datasets import BUILTIN_DATASETS, DEFAULT_DATASET, SweepError, dataset_sha256, datasets
from .runs import ConfigError, TrainConfig, parse_run, run_name

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
