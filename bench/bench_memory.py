"""Peak memory of a training job on all of MNIST (CPU), against a bare `import torch` in the same environment.

    python bench/bench_memory.py [--mnist ../shared/mnist] [--iterations 1000] [--batch-size 100]

Builds the data cache from the MNIST files in `--mnist` in a scratch folder, then runs, each as a process of
its own, `python -c "import torch"` and `python -m mnist_sgd.training.train` on that cache (one thread), and prints
each one's peak resident memory (the kernel's, from wait4) and their difference: what a training job holds
beyond torch itself (the SLURM profile's memory request follows from it).
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
from mnist_sgd.data.cache import build_cache
from mnist_sgd.data.fetch import fetch_idx
from mnist_sgd.study.datasets import MNIST_SHA256  # noqa: E402
from mnist_sgd.study.records import cpu_name  # noqa: E402


def peak_mb(command, cwd):
    """Peak resident memory (MB) of `command`, run to its end; exit if it fails."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"error: {' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=str(REPO.parent / "shared" / "mnist"), help="folder of the four IDX files")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for name, sha256 in MNIST_SHA256.items():
            fetch_idx(name, [args.mnist], sha256, scratch / name)
        build_cache(*(scratch / name for name in MNIST_SHA256), scratch / "mnist.pt")
        workflow = REPO / "workflow"
        torch_mb = peak_mb([sys.executable, "-c", "import torch"], workflow)
        train = [
            sys.executable,
            "-m",
            "mnist_sgd.training.train",
            "--data",
            str(scratch / "mnist.pt"),
            "--threads",
            "1",
        ]
        train += ["--metrics", str(scratch / "m.csv"), "--info", str(scratch / "i.json"), "--device", "cpu"]
        train += ["--iterations", str(args.iterations), "--batch-size", str(args.batch_size)]
        train_mb = peak_mb(train, workflow)
    print(f"{cpu_name()}; all 60000 training images, batch {args.batch_size}, {args.iterations} iterations")
    print(
        f"peak RSS: import torch {torch_mb:.0f} MB, training job {train_mb:.0f} MB, difference {train_mb - torch_mb:.0f} MB"
    )


if __name__ == "__main__":
    main()
