"""Where the workflow keeps each file under `results/`, and what planning reads from those files.

The rules (workflow/rules/*.smk) name their inputs and outputs with these functions, so a path is
spelled once. Nothing here imports torch: planning imports it.
"""

import hashlib
import os

from .datasets import BUILTIN_DATASETS, IDX_FILES, SweepError, dataset_dir, dataset_sha256, idx_image_count
from .runs import training_set_name

# What a training job writes for each run: the records every later rule reads.
RUN_RECORDS = ("metrics.csv", "run.json", "weights.npy")


def raw_file(dataset, name):
    """Where rule download_mnist writes IDX file `name` of `dataset`."""
    return f"results/data/raw/{dataset_dir(dataset)}{name}"


def raw_files(dataset):
    """The four IDX files of `dataset`, in IDX_FILES' order (what format_mnist and a cache rebuild read)."""
    return [raw_file(dataset, name) for name in IDX_FILES]


def cache_file(dataset):
    """The cached tensors of `dataset` (rule format_mnist)."""
    return f"results/data/{dataset}.pt"


def kernel_file(dataset):
    """The kernel table of `dataset` (rule test_kernel; a temporary file of the workflow run)."""
    return f"results/data/{dataset}.kernel.bin"


def run_files(runs, name):
    """File `name` of each run's records."""
    return [f"results/runs/{run}/{name}" for run in runs]


def optimum_file(run):
    """The least-squares optimum of the training set run `run` trains on (rule optimum)."""
    return f"results/optimum/{training_set_name(run)}.json"


def curvature_file(run):
    """The example curvature of the training set run `run` trains on (rule optimum writes it)."""
    return f"results/optimum/{training_set_name(run)}.curvature.npz"


def run_records(runs, optima=True):
    """Each run's records and its training set's optimum: targets of `all` and of each sweep's rule, so
    that one deleted by hand (or lost to a full quota) is made again by the next run, although the
    figures and summary drawn from it are still there (Snakemake does not remake an intermediate file
    whose consumers are up to date)."""
    records = [f"results/runs/{run}/{name}" for run in runs for name in RUN_RECORDS]
    return records + (list(dict.fromkeys(optimum_file(run) for run in runs)) if optima else [])


def train_logs(runs):
    """Each run's training log."""
    return [f"results/logs/train/{run}.log" for run in runs]


def data_digest(config, dataset):
    """What a data set's cached tensors are a function of, besides the code: the verified content of its
    IDX files (for MNIST the same digest as before there were other data sets)."""
    pins = dataset_sha256(config, dataset)
    return hashlib.sha256("".join(pins[name] for name in IDX_FILES).encode()).hexdigest()[:16]


def training_set_size(config, dataset):
    """Images in a data set's training set, from the header of its downloaded images file, else of the
    file in a custom data set's folder; 60000 for a built-in data set not yet downloaded (all have
    60000); None for a custom data set whose folder is missing (`plan` says so). Planning needs it, so
    a damaged file stops planning (SweepError) with its name and the fix.
    """
    path = raw_file(dataset, "train-images-idx3-ubyte")
    if os.path.exists(path):
        return idx_image_count(path, "delete it, and the workflow fetches and verifies it again when it needs it")
    if dataset in BUILTIN_DATASETS:
        return 60000
    custom = config["custom_datasets"][dataset]
    if not os.path.isdir(custom["path"]):
        return None
    for name in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"):
        path = os.path.join(custom["path"], name)
        if os.path.exists(path):
            return idx_image_count(path, f"replace it with a good copy (custom_datasets.{dataset}.path)")
    raise SweepError(
        f"config error: custom_datasets.{dataset}.path={custom['path']!r} holds no train-images-idx3-ubyte "
        "(gzip or plain); put the data set's four IDX files there"
    )
