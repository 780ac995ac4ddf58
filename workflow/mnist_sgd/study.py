"""The study's runs as the configuration defines them: one run per combination of a sweep's lists.

The workflow (workflow/rules/common.smk) and the benchmarks expand sweeps with these functions, so
a run has the same name and parameters everywhere.
"""

import math

# One folder per run under results/runs/; its name says what the run is.
RUN_PATTERN = "{impl}/train{train_size}_batch{batch_size}_lr{lr}_it{iterations}_seed{seed}"


class SweepError(ValueError):
    """A sweep asks for something that cannot be run."""


def sweep_runs(config, name, num_train=None):
    """Names of the runs of sweep `name` in `config`, in configuration order.

    `num_train`, when known, is the size of the training set; larger subsets are refused.
    """
    sweep = config["sweeps"][name]
    if not math.isfinite(sweep["lr"]) or sweep["lr"] <= 0:
        raise SweepError(f"config error: sweeps.{name}.lr={sweep['lr']!r}: must be a finite number > 0")
    runs = []
    for train_size in sweep["train_sizes"]:
        if num_train is not None and train_size != "all" and train_size > num_train:
            raise SweepError(
                f"config error: sweeps.{name}.train_sizes has {train_size}: larger than the "
                f"{num_train} training images; use a size <= {num_train}, or all"
            )
        for batch_size in sweep["batch_sizes"]:
            if batch_size == "train_size":
                if train_size == "all":
                    raise SweepError(
                        f"config error: sweeps.{name}.batch_sizes='train_size' needs integer "
                        "train_sizes, not all"
                    )
                batch_size = train_size
            for seed in sweep.get("seeds", [0]):
                runs.append(
                    RUN_PATTERN.format(
                        impl=sweep["impl"], train_size=train_size, batch_size=batch_size,
                        lr=repr(float(sweep["lr"])), iterations=sweep["iterations"], seed=seed,
                    )
                )
    return runs


def parse_run(run):
    """The parameters encoded in a run name, as strings."""
    impl, rest = run.split("/")
    train, batch, lr, iterations, seed = rest.split("_")
    return {
        "impl": impl,
        "train_size": train[len("train"):],
        "batch_size": batch[len("batch"):],
        "lr": lr[len("lr"):],
        "iterations": iterations[len("it"):],
        "seed": seed[len("seed"):],
    }


def run_config(run, eval_every=1, device="auto"):
    """The TrainConfig of a run name."""
    from .train import TrainConfig  # here, so that the workflow can plan runs without importing torch

    params = parse_run(run)
    return TrainConfig(
        impl=params["impl"],
        train_size=None if params["train_size"] == "all" else int(params["train_size"]),
        batch_size=int(params["batch_size"]),
        iterations=int(params["iterations"]),
        lr=float(params["lr"]),
        seed=int(params["seed"]),
        eval_every=eval_every,
        device=device,
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
        wanted = {key: str(value) for key, value in selector.items() if key != "sweep"}
        matches = [run for run in sweeps[sweep] if wanted.items() <= parse_run(run).items()]
        if not matches:
            raise SweepError(
                f"{where}: no run of sweep {sweep!r} has {wanted}; its runs are {sweeps[sweep]}"
            )
        runs += [run for run in matches if run not in runs]
    return runs


def run_labels(runs):
    """Short labels for runs compared in one figure: the parameters that vary among them."""
    params = [parse_run(run) for run in runs]
    keys = ("impl", "train_size", "batch_size", "lr", "iterations", "seed")
    varying = [k for k in keys if len({p[k] for p in params}) > 1]
    if {"train_size", "batch_size"} <= set(varying) and all(p["batch_size"] == p["train_size"] for p in params):
        varying.remove("batch_size")  # batch = subset size: one number says both
    names = {"train_size": "train", "batch_size": "batch", "iterations": "it"}
    words = [[p[k] if k == "impl" else f"{names.get(k, k)} {p[k]}" for k in varying] for p in params]
    return [", ".join(w) or p["impl"] for w, p in zip(words, params)]
