"""A big sweep's cost against its arithmetic: wall time over the runs' own training seconds, and planning time.

    python bench/bench_grid.py [--mnist ../shared/mnist] [--cores 2] [--seeds 10] [--plan-seeds 100] [--default]

Copies the workflow into a scratch folder and builds the data cache (not timed). Then, in one run:

- the grid of issue 21 (batch sizes 1, 10, 100, 1000 x five learning rates x `--seeds` seeds, 1000
  iterations each: 200 runs), `snakemake --cores N all` from the warm cache, summary and figures included:
  its wall time, the sum of its runs' training seconds (`wall_seconds` in summary.csv), and the ratio
  wall / (sum / cores): 1 would be the arithmetic alone, perfectly spread over the cores; `--seeds 50`
  is issue 32's 1000-run grid;
- with `--default`, the same for the default study;
- `snakemake -n` of the same grid with `--plan-seeds` seeds (2000 runs): the planning time.

Before the grid, in this process and on one thread, one run per batch size of the grid (lr 0.001, seed
0, the config's noise points, the data set's kernel table at hand as in a pack), its seconds split by phase (cProfile's cumulative time of the functions
that do each): setup (data cache load, training subset), sampling (batch indices), SGD updates, test
evaluation (every iteration's accuracy), noise-scale passes, records (metrics, weights, run.json).
Every wall time is also printed as a multiple of a yardstick measured in the same run: the seconds of
206 GFLOP of float32 GEMM (2048^2 x 12) on `--cores` threads. `--breakdown-only` stops after it.
"""

import argparse
import cProfile
import pstats
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


def yardstick(threads):
    """Seconds for 12 float32 GEMMs of 2048^2 (206 GFLOP) on `threads` threads: the best of three."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    a @ b  # warm
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(12):
            a @ b
        best = min(best, time.perf_counter() - start)
    return best


# Each phase of a run, by the functions whose cumulative time it is (module file suffix, function name).
PHASES = {
    "setup": [
        ("data/cache.py", "load_cache"),
        ("training/sgd.py", "training_rows"),
        ("training/sgd.py", "select_rows"),
        ("training/sgd.py", "used_pixels"),
    ],
    "sampling": [("training/sgd.py", "uniform_batches"), ("training/sgd.py", "epoch_batches")],
    "SGD updates": [("training/sgd.py", "step")],
    "test evaluation": [("training/accuracy.py", "score"), ("training/accuracy.py", "correct")],
    "noise scales": [("training/noise.py", "noise_scales")],
    # in the workflow, once per training set by its optimum job; a run given no curvature computes it
    "curvature": [("training/noise.py", "example_curvature")],
    "records": [
        ("study/records.py", "write_metrics"),
        ("study/records.py", "write_weights"),
        ("study/records.py", "write"),
    ],
}


def breakdown(cache, batch_sizes, iterations, noise_points, scratch, unit):
    """Print, per batch size, one run's seconds by phase (see PHASES), the rest as `other`."""
    import torch

    from mnist_sgd.data.cache import load_cache
    from mnist_sgd.data.kernel import compute_table
    from mnist_sgd.study.runs import TrainConfig
    from mnist_sgd.training.train import run

    table = compute_table(load_cache(cache))  # as rule test_kernel makes it for the packs (not timed)
    torch.set_num_threads(1)
    print(f"one run per batch size, {iterations} iterations, 1 thread: seconds by phase")
    print(f"{'batch':>6} " + " ".join(f"{name:>15}" for name in [*PHASES, "other", "total"]) + f" {'yardsticks':>10}")
    for batch_size in batch_sizes:
        config = TrainConfig(impl="scratch", batch_size=batch_size, iterations=iterations, lr=0.001, device="cpu")
        out = Path(scratch) / f"breakdown{batch_size}"
        out.mkdir(exist_ok=True)
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.runcall(
            run,
            cache,
            out / "metrics.csv",
            out / "run.json",
            config,
            weights_path=out / "weights.npy",
            threads=1,
            log=lambda message: None,
            noise_points=noise_points,
            kernel=table,
        )
        total = time.perf_counter() - start
        stats = pstats.Stats(profile).stats
        seconds = {
            phase: sum(
                cumulative
                for (file, _, function), (_, _, _, cumulative, _) in stats.items()
                if any(file.endswith(suffix) and function == name for suffix, name in functions)
            )
            for phase, functions in PHASES.items()
        }
        seconds["other"] = total - sum(seconds.values())
        seconds["total"] = total
        print(f"{batch_size:>6} " + " ".join(f"{v:>15.3f}" for v in seconds.values()) + f" {total / unit:>10.2f}")


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


def study(workdir, cores, config_args, name, unit):
    """Time `snakemake all` on a fresh results folder (the data cache kept); print the line for `name`."""
    for folder in ("runs", "figures", "optimum", "logs", "benchmarks"):
        subprocess.run(["rm", "-rf", str(workdir / "results" / folder)], check=True)
    wall = snakemake(workdir, "--cores", str(cores), "all", *config_args)
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    training = summary["wall_seconds"].sum()
    ratio = wall / (training / cores)
    print(f"{name:>14} {len(summary):>5} {wall:>8.1f} {training:>10.1f} {ratio:>20.2f} {wall / unit:>10.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=str(REPO.parent / "shared" / "mnist"), help="folder of the four IDX files")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=10, help="seeds of the timed grid (10: 200 runs; 50: 1000)")
    parser.add_argument("--plan-seeds", type=int, default=100, help="seeds of the planned grid (100: 2000 runs)")
    parser.add_argument("--default", action="store_true", help="also time the default study")
    parser.add_argument("--breakdown-only", action="store_true", help="stop after the per-run breakdown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        copy_workflow(workdir)
        mirror = ["--config", f"data_mirror={args.mnist}"]
        snakemake(workdir, "--cores", str(args.cores), "results/data/mnist.pt", *mirror)
        unit = yardstick(args.cores)
        print(f"{cpu_name()}; yardstick (206 GFLOP of float32 GEMM on {args.cores} threads): {unit:.2f} s")
        sweep = grid(args.seeds)["sweeps"]["grid"]
        noise_points = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["noise_points"]
        cache = workdir / "results" / "data" / "mnist.pt"
        breakdown(cache, sweep["batch_sizes"], sweep["iterations"], noise_points, scratch, unit)
        if args.breakdown_only:
            return
        print(f"snakemake --cores {args.cores}, from a warm data cache")
        print(
            f"{'study':>14} {'runs':>5} {'wall s':>8} {'training s':>10} {'wall/(training/cores)':>20} {'yardsticks':>10}"
        )
        (workdir / "grid.yaml").write_text(yaml.safe_dump(grid(args.seeds)))
        own = ["--configfile", "grid.yaml", "--replace-workflow-config", *mirror]
        study(workdir, args.cores, own, "grid", unit)
        if args.default:
            study(workdir, args.cores, mirror, "default study", unit)
        (workdir / "plan.yaml").write_text(yaml.safe_dump(grid(args.plan_seeds)))
        runs = 20 * args.plan_seeds
        seconds = snakemake(workdir, "-n", "--configfile", "plan.yaml", "--replace-workflow-config", *mirror)
        print(f"planning {runs} runs (snakemake -n): {seconds:.1f} s ({seconds / unit:.1f} yardsticks)")


if __name__ == "__main__":
    main()
