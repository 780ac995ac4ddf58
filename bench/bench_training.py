"""Time the training program against the plain reference of the original study's algorithm, run for run.

    python bench/bench_training.py [--device cpu|cuda|auto] [--threads N] [--iterations N] [--runs ...]
                                   [--no-reference] [--no-cuda-graphs]

For every run of the study (config/config.yaml), in one process and on the same data: trains with
`mnist_sgd.training.train.train` and with `mnist_sgd.training.reference.reference_train` (per-iteration evaluation,
the original study's formulas), checks that both give the same curves, and prints the times, their ratio, and
the share of the machine's large-GEMM rate (measured first, in the same run) that the program's
arithmetic reaches.
"""

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

# OpenMP threads that wait by spinning collapse when another process holds a core (a batch-100 run
# once took 39.8 s instead of 3.5-5.8 s on a busy 2-core machine): wait passively. Set before torch
# loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from mnist_sgd.data.cache import load_cache
from mnist_sgd.data.idx import NUM_CLASSES, NUM_FEATURES  # noqa: E402
from mnist_sgd.execution.devices import resolve_device
from mnist_sgd.study.plan import sweep_runs
from mnist_sgd.study.records import cpu_name  # noqa: E402
from mnist_sgd.study.runs import run_config  # noqa: E402
from mnist_sgd.training.reference import reference_train  # noqa: E402
from mnist_sgd.training.train import train  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_gflops(device, repeats=10):
    """Rate of a (10000, 784) x (784, 1000) float32 product on `device`, the shape of a blocked evaluation."""
    a = torch.rand(10000, NUM_FEATURES, device=device)
    b = torch.rand(NUM_FEATURES, 1000, device=device)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] * repeats / (time.perf_counter() - start) / 1e9


def needed_gflop(config, train_size, test_size):
    """Multiply-adds (x2) the original study's algorithm performs: one test evaluation and one gradient per iteration."""
    batch = config.batch_size
    per_iteration = 2 * test_size * NUM_FEATURES * NUM_CLASSES + 2 * 2 * batch * NUM_FEATURES * NUM_CLASSES
    return per_iteration * config.iterations / 1e9


def compare(result, reference):
    """'identical', or how the accuracy curves differ; and the largest relative loss difference."""
    loss_diff = np.max(
        np.abs(result.train_loss - reference.train_loss) / np.maximum(np.abs(reference.train_loss), 1e-12)
    )
    differing = np.flatnonzero(result.test_correct != reference.test_correct)
    if differing.size == 0:
        accuracy = "identical"
    else:
        worst = np.max(np.abs(result.test_correct[differing] - reference.test_correct[differing]))
        accuracy = f"{differing.size} iterations differ by <= {worst} images"
    return loss_diff, accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO / "results" / "data" / "mnist.pt"), help="data cache")
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"), help="study configuration")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1, as a training job)")
    parser.add_argument("--iterations", type=int, default=None, help="override every run's iterations")
    parser.add_argument("--runs", nargs="*", help="run names (default: every run of the study)")
    parser.add_argument("--no-reference", action="store_true", help="time the program only")
    parser.add_argument(
        "--no-cuda-graphs",
        dest="cuda_graphs",
        action="store_false",
        help="on CUDA, launch each step's kernels one by one",
    )
    args = parser.parse_args(argv)

    if not Path(args.data).exists():
        sys.exit(
            f"error: no data cache at {args.data}; build it with "
            "`snakemake --cores 1 results/data/mnist.pt --config data_mirror=/path/to/mnist`"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, log=lambda m: None)
    start = time.perf_counter()
    data = load_cache(args.data, device)
    sync(device)
    load_seconds = time.perf_counter() - start
    config = yaml.safe_load(Path(args.config).read_text())
    runs = args.runs or list(dict.fromkeys(r for name in config["sweeps"] for r in sweep_runs(config, name)))
    rate = gemm_gflops(device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{cpu_name()}, {torch.get_num_threads()} CPU threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    )
    graphs = ", CUDA graphs" if device.type == "cuda" and args.cuda_graphs else ""
    print(f"device: {device} ({name}{graphs}); torch {torch.__version__}; data load {load_seconds:.2f} s")
    print(f"large-GEMM rate (10000x784 @ 784x1000 float32): {rate:.1f} GFLOP/s")
    header = f"{'run':<52} {'program s':>9} {'ref s':>8} {'ratio':>6} {'% GEMM':>7} {'loss rel diff':>13}  accuracy"
    print(header)
    total_program = total_reference = 0.0
    for run in runs:
        train_config = run_config(run, device=args.device)
        if args.iterations:
            train_config = dataclasses.replace(train_config, iterations=args.iterations)
        result = train(data, train_config, log=lambda m: None, cuda_graphs=args.cuda_graphs)
        total_program += result.wall_seconds
        share = needed_gflop(train_config, result.train_size, data.test_labels.shape[0]) / result.wall_seconds / rate
        if args.no_reference:
            print(f"{run:<52} {result.wall_seconds:9.2f} {'-':>8} {'-':>6} {100 * share:6.1f}%")
            continue
        reference = reference_train(data, train_config)
        total_reference += reference.wall_seconds
        loss_diff, accuracy = compare(result, reference)
        print(
            f"{run:<52} {result.wall_seconds:9.2f} {reference.wall_seconds:8.2f} "
            f"{reference.wall_seconds / result.wall_seconds:5.1f}x {100 * share:6.1f}% {loss_diff:13.2e}  {accuracy}"
        )
    if args.no_reference:
        print(f"{'total':<52} {total_program:9.2f}")
    else:
        print(f"{'total':<52} {total_program:9.2f} {total_reference:8.2f} {total_reference / total_program:5.1f}x")


if __name__ == "__main__":
    main()
