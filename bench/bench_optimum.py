"""What the least-squares yardstick costs: `mnist_sgd.training.optimum.min_norm_solution` (the eigendecomposition
of the smaller Gram matrix) against `numpy.linalg.lstsq` (an SVD), on the study's training sets.

    python bench/bench_optimum.py [--mnist ../shared/mnist] [--sizes all 100 500 1000 10000]

Builds the data cache from the MNIST files in `--mnist` in a scratch folder (not timed), then, for each
training set (the seed-0 subset of each size, as the runs use), times both solvers on one thread and
prints their seconds, the ratio and how far their weights and training losses differ, and both test accuracies.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
from mnist_sgd.data.cache import as_images, build_cache, load_cache
from mnist_sgd.data.fetch import fetch_idx
from mnist_sgd.study.datasets import MNIST_SHA256
from mnist_sgd.study.records import cpu_name  # noqa: E402
from mnist_sgd.training.optimum import min_norm_solution  # noqa: E402
from mnist_sgd.training.sgd import seeded_generator, training_set  # noqa: E402


def scores(data, images, targets, weight):
    """(training loss, test accuracy) of a float64 weight."""
    residual = targets - images @ weight
    loss = 0.5 * (residual * residual).sum() / len(images)
    accuracy = ((data.test_images.double().numpy() @ weight).argmax(axis=1) == data.test_labels.numpy()).mean()
    return loss, accuracy


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=str(REPO.parent / "shared" / "mnist"), help="folder of the MNIST IDX files")
    parser.add_argument("--sizes", nargs="+", default=["all", "100", "500", "1000", "10000"])
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the workflow's optimum job
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for name, sha256 in MNIST_SHA256.items():
            fetch_idx(name, [args.mnist], sha256, scratch / name)
        build_cache(*(scratch / name for name in MNIST_SHA256), scratch / "mnist.pt")
        data = load_cache(scratch / "mnist.pt")
    print(f"{cpu_name()}, one thread (numpy's BLAS may use more: set OMP_NUM_THREADS=1 to compare alike)")
    print(
        f"{'training set':>14} {'ours s':>8} {'lstsq s':>8} {'ratio':>6} {'max |dW|':>9} {'loss diff':>10} {'accuracy':>17}"
    )
    for size in args.sizes:
        pixels, targets = training_set(data, None if size == "all" else int(size), seeded_generator(0))
        images = as_images(pixels)
        start = time.perf_counter()
        ours, _ = min_norm_solution(images, targets)
        ours_seconds = time.perf_counter() - start
        x, y = images.double().numpy(), targets.double().numpy()
        start = time.perf_counter()
        theirs = np.linalg.lstsq(x, y, rcond=None)[0]
        lstsq_seconds = time.perf_counter() - start
        (loss, accuracy), (their_loss, their_accuracy) = scores(data, x, y, ours.numpy()), scores(data, x, y, theirs)
        print(
            f"{size:>14} {ours_seconds:8.2f} {lstsq_seconds:8.2f} {lstsq_seconds / ours_seconds:5.1f}x "
            f"{np.abs(ours.numpy() - theirs).max():9.1e} {abs(loss - their_loss):10.1e} {accuracy:.4f} vs {their_accuracy:.4f}"
        )


if __name__ == "__main__":
    main()
