# Config validation, the table of runs, and the functions that build target lists.
import os
import shutil
import subprocess

from snakemake.utils import validate

validate(config, "../../config/config.schema.yaml")

IDX_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
# One folder per run; its name says what the run is.
RUN = "{impl}/train{train_size}_batch{batch_size}_lr{lr}_it{iterations}_seed{seed}"
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


def config_error(key, value, allowed):
    raise ValueError(f"config error: {key}={value!r}: {allowed}")


if config["data_mirror"] and "://" not in config["data_mirror"]:
    if not os.path.isdir(config["data_mirror"]):
        config_error(
            "data_mirror",
            config["data_mirror"],
            "no such folder; give the folder holding the MNIST IDX files, or a URL",
        )


def sweep_runs(name):
    """The run folders (relative to results/runs/) of sweep `name`, in config order."""
    sweep = config["sweeps"][name]
    runs = []
    for train_size in sweep["train_sizes"]:
        for batch_size in sweep["batch_sizes"]:
            if batch_size == "train_size":
                if train_size == "all":
                    config_error(
                        f"sweeps.{name}.batch_sizes",
                        batch_size,
                        "batch = train_size needs integer train_sizes, not all",
                    )
                batch_size = train_size
            for seed in sweep["seeds"]:
                runs.append(
                    RUN.format(
                        impl=sweep["impl"],
                        train_size=train_size,
                        batch_size=batch_size,
                        lr=repr(float(sweep["lr"])),
                        iterations=sweep["iterations"],
                        seed=seed,
                    )
                )
    return runs


SWEEPS = {name: sweep_runs(name) for name in config["sweeps"]}
RUNS = list(dict.fromkeys(run for runs in SWEEPS.values() for run in runs))


def run_files(runs, name):
    return [f"results/runs/{run}/{name}" for run in runs]


def sweep_labels(name):
    """Legend and bar labels for the runs of a sweep: the parameters that vary within it."""
    params = [parse_run(run) for run in SWEEPS[name]]
    varying = [
        k
        for k in ("train_size", "batch_size", "seed")
        if len({p[k] for p in params}) > 1
    ]
    if "train_size" in varying and all(
        p["batch_size"] == p["train_size"] for p in params
    ):
        varying.remove("batch_size")  # batch = subset size: one number says both
    names = {"train_size": "train", "batch_size": "batch", "seed": "seed"}
    return [
        ", ".join(f"{names[k]} {p[k]}" for k in varying) or p["impl"] for p in params
    ]


def parse_run(run):
    """The parameters encoded in a run folder name."""
    impl, rest = run.split("/")
    train, batch, lr, iterations, seed = rest.split("_")
    return {
        "impl": impl,
        "train_size": train[len("train") :],
        "batch_size": batch[len("batch") :],
        "lr": lr[len("lr") :],
        "iterations": iterations[len("it") :],
        "seed": seed[len("seed") :],
    }


def all_figures():
    figures = [f"results/figures/runs/{run}.{ext}" for run in RUNS for ext in FORMATS]
    for name in SWEEPS:
        for kind in ("curves", "final_accuracy"):
            figures += [f"results/figures/{name}/{kind}.{ext}" for ext in FORMATS]
    figures += [f"results/figures/wall_time.{ext}" for ext in FORMATS]
    return figures
