# Config validation, the table of runs, and the functions that build target lists.
import os
import shutil
import subprocess
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))
from mnist_sgd.study import RUN_PATTERN as RUN, SweepError, run_labels, sweep_runs

validate(config, "../../config/config.schema.yaml")

IDX_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
FORMATS = config["figures"]["formats"]


def count_gpus():
    """NVIDIA GPUs on this machine, without importing torch (0 when nvidia-smi is absent)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return listing.stdout.count("GPU ") if listing.returncode == 0 else 0


# auto and cuda runs ask for a GPU when this machine has one (a cluster profile sets it per job).
HAS_GPU = count_gpus() > 0


wildcard_constraints:
    impl="scratch|torch",
    train_size=r"all|[1-9]\d*",
    batch_size=r"[1-9]\d*",
    lr=r"[0-9][0-9.e+-]*",
    iterations=r"[1-9]\d*",
    seed=r"\d+",
    sweep=r"[A-Za-z0-9_]+",
    idx_file="|".join(IDX_FILES),
    ext="|".join(FORMATS),


if config["data_mirror"] and "://" not in config["data_mirror"]:
    if not os.path.isdir(config["data_mirror"]):
        raise WorkflowError(
            f"config error: data_mirror={config['data_mirror']!r}: no such folder; give the "
            "folder holding the MNIST IDX files, or a URL"
        )


try:
    SWEEPS = {name: sweep_runs(config, name) for name in config["sweeps"]}
except SweepError as error:
    raise WorkflowError(str(error))
RUNS = list(dict.fromkeys(run for runs in SWEEPS.values() for run in runs))


def run_files(runs, name):
    return [f"results/runs/{run}/{name}" for run in runs]


def all_figures():
    figures = [f"results/figures/runs/{run}.{ext}" for run in RUNS for ext in FORMATS]
    for name in SWEEPS:
        for kind in ("curves", "final_accuracy"):
            figures += [f"results/figures/{name}/{kind}.{ext}" for ext in FORMATS]
    figures += [f"results/figures/wall_time.{ext}" for ext in FORMATS]
    return figures
