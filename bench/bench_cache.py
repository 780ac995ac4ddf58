"""What checking the data cache costs each training job: `load_cache` (which hashes every tensor and
compares with the digest stored in the cache) against reading the same tensors without the check.

    python bench/bench_cache.py [--mnist ../shared/mnist] [--repeat 5]

Builds the cache from the MNIST files in `--mnist` in a scratch folder (not timed), then times, in
alternation, both ways of loading it onto the CPU, each touching every byte (as training does). The
file is in the page cache after the first load, as it is for every job but the first of a study.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
from mnist_sgd.data.cache import TENSORS, build_cache, load_cache
from mnist_sgd.data.fetch import fetch_idx
from mnist_sgd.study.datasets import MNIST_SHA256  # noqa: E402


def unchecked(path):
    stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return sum(float(stored[name].sum()) for name in TENSORS)


def checked(path):
    data = load_cache(path)
    return sum(float(getattr(data, name).sum()) for name in TENSORS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=str(REPO.parent / "shared" / "mnist"), help="folder of the MNIST IDX files")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a training job
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for name, sha256 in MNIST_SHA256.items():
            fetch_idx(name, [args.mnist], sha256, scratch / name)
        cache = scratch / "mnist.pt"
        build_cache(*(scratch / name for name in MNIST_SHA256), cache)
        times = {"unchecked": [], "checked": []}
        for _ in range(args.repeat + 1):  # the first round warms the page cache and is dropped
            for name, load in (("unchecked", unchecked), ("checked", checked)):
                start = time.perf_counter()
                load(cache)
                times[name].append(time.perf_counter() - start)
        size = cache.stat().st_size / 2**20
    plain, verified = (statistics.median(times[name][1:]) for name in ("unchecked", "checked"))
    print(f"cache {size:.0f} MiB, median of {args.repeat}, one thread")
    print(f"  read without the check: {plain:.3f} s")
    print(
        f"  load_cache (SHA-256 of every tensor checked): {verified:.3f} s ({verified / plain:.2f}x, "
        f"+{verified - plain:.3f} s per training job)"
    )


if __name__ == "__main__":
    main()
