"""A big sweep's cost against its arithmetic: wall time over the runs' own training seconds, and planning time.

    python bench/bench_grid.py [--mnist ../shared/mnist] [--cores 2] [--seeds 10] [--plan-seeds 100] [--default]

Copies the workflow into a scratch folder and builds the data cache (not timed). Then, in one run:

- the grid of issue 21 (batch sizes 1, 10, 100, 1000 x five learning rates x `--seeds` seeds, 1000
  iterations each: 200 runs), `snakemake --cores N all` from the warm cache, summary and figures included:
  its wall time, the sum of its runs' training seconds (`wall_seconds` in summary.csv), and the ratio
  wall / (sum / cores): 1 would be the arithmetic alone, perfectly spread over the cores;
- with `--default`, the same for the default study;
- `snakemake -n` of the same grid with `--plan-seeds` seeds (2000 runs): the planning time.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "bench"))
from bench_workflow import copy_workflow  # noqa: E402
from mnist_sgd.study.records import cpu_name  # noqa: E402


def grid(seeds):
    """The grid config of issue 21 with `seeds` seeds: 4 batch sizes x 5 learning rates x seeds."""
    return {
        "sweeps": {
            "grid": {
                "impl": "scratch",
                "train_sizes": ["all"],
                "batch_sizes": [1, 10, 100, 1000],
                "lr": [0.0001, 0.0003, 0.001, 0.003, 0.01],
                "seeds": list(range(seeds)),
                "iterations": 1000,
            }
        },
        "figures": {"comparisons": {}},
    }


def snakemake(workdir, *args):
    """Run snakemake in `workdir`; return its wall seconds (exit on failure)."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(f"error: snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}")
    return time.perf_counter() - start


def study(workdir, cores, config_args, name):
    """Time `snakemake all` on a fresh results folder (the data cache kept); print the line for `name`."""
    for folder in ("runs", "figures", "optimum", "logs", "benchmarks"):
        subprocess.run(["rm", "-rf", str(workdir / "results" / folder)], check=True)
    wall = snakemake(workdir, "--cores", str(cores), "all", *config_args)
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    training = summary["wall_seconds"].sum()
    ratio = wall / (training / cores)
    print(f"{name:>14} {len(summary):>5} {wall:>8.1f} {training:>10.1f} {ratio:>20.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=str(REPO.parent / "shared" / "mnist"), help="folder of the four IDX files")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=10, help="seeds of the timed grid (10: 200 runs)")
    parser.add_argument("--plan-seeds", type=int, default=100, help="seeds of the planned grid (100: 2000 runs)")
    parser.add_argument("--default", action="store_true", help="also time the default study")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        copy_workflow(workdir)
        mirror = ["--config", f"data_mirror={args.mnist}"]
        snakemake(workdir, "--cores", str(args.cores), "results/data/mnist.pt", *mirror)
        print(f"{cpu_name()}, snakemake --cores {args.cores}, from a warm data cache")
        print(f"{'study':>14} {'runs':>5} {'wall s':>8} {'training s':>10} {'wall/(training/cores)':>20}")
        (workdir / "grid.yaml").write_text(yaml.safe_dump(grid(args.seeds)))
        own = ["--configfile", "grid.yaml", "--replace-workflow-config", *mirror]
        study(workdir, args.cores, own, "grid")
        if args.default:
            study(workdir, args.cores, mirror, "default study")
        (workdir / "plan.yaml").write_text(yaml.safe_dump(grid(args.plan_seeds)))
        runs = 20 * args.plan_seeds
        seconds = snakemake(workdir, "-n", "--configfile", "plan.yaml", "--replace-workflow-config", *mirror)
        print(f"planning {runs} runs (snakemake -n): {seconds:.1f} s")


if __name__ == "__main__":
    main()
