"""The one training program every run of the study goes through.

    python -m mnist_sgd.train --data results/data/mnist.pt --impl scratch --batch-size 100 \\
        --metrics metrics.csv --info run.json

writes a metrics CSV (iteration, train_loss, test_accuracy) and a JSON of the resolved parameters,
outcome, provenance and timings. Same parameters and seed give the same metrics file, byte for byte,
on the same machine, however and wherever the job is started.
"""

import argparse
import dataclasses
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import __version__
from .data import DataError, load_cache
from .files import atomic_path, write_text_atomic
from .sgd import EVAL_BLOCK, SAMPLERS, UPDATERS, AccuracyRecorder
from .study import DEVICES, ConfigError, TrainConfig  # noqa: F401  (re-exported: the program's parameters)

METRIC_COLUMNS = ("iteration", "train_loss", "test_accuracy")


@dataclass
class RunResult:
    """Per-iteration curves (NumPy, on the host) and timings of one run.

    A run whose loss becomes NaN or infinite stops: its curves end at that iteration (`diverged_at`,
    1-based), the first row with a non-finite loss.
    """

    train_loss: np.ndarray
    test_correct: np.ndarray  # -1 where not evaluated
    test_size: int
    wall_seconds: float
    train_size: int
    diverged_at: Optional[int] = None

    @property
    def test_accuracy(self):
        """Test accuracy per iteration, NaN where not evaluated."""
        return np.where(self.test_correct >= 0, self.test_correct / self.test_size, np.nan)

    @property
    def status(self):
        return "ok" if self.diverged_at is None else "diverged"


def resolve_device(name, log=print):
    """Map `auto` to CUDA when available, else CPU; refuse `cuda` on a machine without it."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "CUDA is not available here; use device=auto or device=cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
        log(f"device=auto: using {name}")
    return torch.device(name)


def seeded_generator(seed):
    """Seed torch's global generators and return the CPU generator that draws subsets and batches.

    Subsets and batches are drawn on the CPU whatever the device, so a run sees the same batches on
    every machine.
    """
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def training_set(data, train_size, generator):
    """The training images and one-hot targets: all of them, or a seeded random subset of `train_size`."""
    num_train = data.train_images.shape[0]
    if train_size is None or train_size == num_train:
        return data.train_images, data.train_targets
    subset = torch.randperm(num_train, generator=generator)[:train_size].to(data.train_images.device)
    return data.train_images.index_select(0, subset), data.train_targets.index_select(0, subset)


def train(data, config, log=print, cuda_graphs=True):
    """Train one run on `data` (an MNIST already on the run's device) and return its curves.

    Iterations run in chunks of `EVAL_BLOCK` evaluations (100 iterations by default; at most a tenth of
    the run): a chunk's weight snapshots are scored together, and its losses checked for divergence.
    On CUDA, each chunk is one CUDA graph launch (`CudaGraphSteps`) unless `cuda_graphs` is False.
    """
    config.validate(num_train=data.train_images.shape[0])
    device = data.train_images.device
    generator = seeded_generator(config.seed)
    images, targets = training_set(data, config.train_size, generator)
    train_size = images.shape[0]

    updater = UPDATERS[config.impl](images, targets, config.lr)
    batches = SAMPLERS[config.impl](train_size, config.batch_size, config.iterations, generator)
    log_every = max(1, config.iterations // 10)
    chunk = min(log_every, EVAL_BLOCK * config.eval_every)
    test_images = data.test_images.index_select(1, updater.features)  # the pixels the weight covers
    recorder = AccuracyRecorder(test_images, data.test_labels, config.iterations,
                                capacity=-(-chunk // config.eval_every) + 1)
    graphs = cuda_graphs and device.type == CudaGraphSteps.device_type
    steps = CudaGraphSteps(updater, recorder.buffer) if graphs else None
    losses = torch.empty(config.iterations, device=device)
    diverged_at = None

    start = time.perf_counter()
    done = 0
    for indices, sizes in chunks(batches, chunk):
        first, done = done, done + len(sizes)
        # The model at an evaluated iteration is the one its loss is taken at (before the update).
        record = [i % config.eval_every == 0 or i == config.iterations - 1 for i in range(first, done)]
        indices = indices.to(device)  # one host-to-device copy per chunk
        if steps is not None:
            steps.run(indices, sizes, record, losses[first:done])
        else:
            run_steps(updater, torch.split(indices, sizes), record, recorder.buffer, losses[first:done])
        recorder.score([i for i, recorded in zip(range(first, done), record) if recorded])
        diverged_at = _first_non_finite(losses[first:done])  # a sync point, once per chunk
        if diverged_at is not None:
            diverged_at += first + 1
            log(f"diverged: the loss is {losses[diverged_at - 1].item()} at iteration {diverged_at}; "
                f"stopping (lr={config.lr} is too large for batch size {config.batch_size})")
            break
        if done // log_every > first // log_every:
            log(_progress(done, config.iterations, losses, recorder, time.perf_counter() - start))
    correct = recorder.correct()  # copies every score to the host once
    train_loss = losses.cpu().numpy()
    wall_seconds = time.perf_counter() - start
    done = diverged_at or config.iterations
    return RunResult(train_loss[:done], correct[:done], data.test_labels.shape[0], wall_seconds, train_size,
                     diverged_at)


def chunks(batches, length):
    """Regroup a sampler's (indices, sizes) blocks into chunks of `length` batches (the last may be shorter)."""
    parts, sizes = [], []
    for indices, block_sizes in batches:
        offset = position = 0  # in block_sizes, in indices
        while offset < len(block_sizes):
            take = block_sizes[offset : offset + length - len(sizes)]
            count = sum(take)  # indices of these batches
            parts.append(indices[position : position + count])
            sizes += take
            offset, position = offset + len(take), position + count
            if len(sizes) == length:
                yield torch.cat(parts) if len(parts) > 1 else parts[0], sizes
                parts, sizes = [], []
    if sizes:
        yield torch.cat(parts) if len(parts) > 1 else parts[0], sizes


def run_steps(updater, batches, record, snapshots, losses):
    """One update per batch of `batches`; `losses[j]` gets batch j's loss. Where `record[j]`, the weight
    that loss is taken at is first copied into the next row of `snapshots`."""
    slot = 0
    for j, batch in enumerate(batches):
        if record[j]:
            snapshots[slot].copy_(updater.weight)
            slot += 1
        losses[j] = updater.step(batch)


class CudaGraphSteps:
    """`run_steps` for a chunk of iterations as one CUDA graph launch.

    Each step launches a handful of tiny kernels (gathers, skinny products, the update, the loss, a
    snapshot copy; autograd and the optimizer for `TorchSGD`): on a GPU, launching them from Python
    takes longer than running them. So each chunk shape (batch sizes and which iterations are
    evaluated) is captured once into a CUDA graph and replayed with the chunk's batch indices copied
    into the graph's input. The first chunk of a shape runs eagerly on a side stream, as CUDA graph
    capture requires for warm-up (cuBLAS workspaces, autograd, the optimizer): it is real training, not
    a throw-away pass. The replayed kernels are the eager ones, on the same data: same numbers.
    """

    device_type = "cuda"  # train() uses this class for runs on this kind of device

    def __init__(self, updater, snapshots):
        self.updater, self.snapshots = updater, snapshots
        self.stream = None  # the side stream, created on first use
        self.graphs = {}  # chunk shape -> (replay, its input indices, its output losses); None: warmed up

    def run(self, indices, sizes, record, losses):
        """Run the chunk's steps (as `run_steps`) and write its losses into `losses`."""
        key = (tuple(sizes), tuple(record))
        if key not in self.graphs:
            self.graphs[key] = None
            self._warm_up(lambda: run_steps(self.updater, torch.split(indices, sizes), record, self.snapshots, losses))
            return
        if self.graphs[key] is None:
            static_indices, static_losses = torch.empty_like(indices), torch.empty_like(losses)
            replay = self._capture(lambda: run_steps(
                self.updater, torch.split(static_indices, sizes), record, self.snapshots, static_losses))
            self.graphs[key] = replay, static_indices, static_losses
        replay, static_indices, static_losses = self.graphs[key]
        static_indices.copy_(indices)
        replay()
        losses.copy_(static_losses)

    def _warm_up(self, steps):
        """Run `steps()` eagerly on the side stream, ordered after and before the current stream's work."""
        self.stream = self.stream or torch.cuda.Stream()
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            steps()
        torch.cuda.current_stream().wait_stream(self.stream)

    def _capture(self, steps):
        """Record the kernels `steps()` launches into a CUDA graph, without running them; return its replay."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            steps()
        return graph.replay


def _first_non_finite(losses):
    """0-based index of the first NaN or infinite value in `losses`, or None (one host sync)."""
    bad = (~torch.isfinite(losses)).nonzero()
    return int(bad[0, 0]) if len(bad) else None


def _progress(iteration, iterations, losses, recorder, elapsed):
    """One progress line: iteration, loss, latest test accuracy, speed and time left."""
    rate = iteration / elapsed
    evaluated, accuracy = recorder.latest()
    return (f"iteration {iteration}/{iterations}  loss {losses[iteration - 1].item():.5f}  "
            f"test accuracy {accuracy:.4f} (iteration {evaluated + 1})  "
            f"{rate:.0f} it/s  eta {(iterations - iteration) / rate:.1f} s")


def write_metrics(path, result):
    """Write the per-iteration CSV atomically; accuracy is left empty where it was not evaluated."""
    accuracy = result.test_accuracy
    lines = [",".join(METRIC_COLUMNS)]
    for i, (loss, acc) in enumerate(zip(result.train_loss.tolist(), accuracy.tolist())):
        lines.append(f"{i + 1},{loss!r},{'' if np.isnan(acc) else repr(acc)}")
    write_text_atomic(path, "\n".join(lines) + "\n")


def git_state(path=Path(__file__).resolve().parents[2]):
    """(commit, dirty) of the git checkout holding this code, or (None, None) outside one.

    `dirty` is True when a tracked file differs from the commit (results/ is ignored, untracked files
    are not counted).
    """
    def git(*args):
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=30)

    try:
        commit = git("rev-parse", "HEAD")
        if commit.returncode != 0:
            return None, None
        return commit.stdout.strip(), bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def cpu_name():
    """The CPU model (platform.processor() is empty on most Linux systems)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _finite_or_none(value):
    return float(value) if np.isfinite(value) else None


def run_info(config, result, device, threads, setup_seconds, cuda_graphs=True, data_sha256=None):
    """The JSON record of a run: resolved parameters, outcome, provenance and cost."""
    evaluated = result.test_accuracy[~np.isnan(result.test_accuracy)]
    commit, dirty = git_state()
    cuda = device.type == "cuda"
    return {
        "params": dataclasses.asdict(config),
        "resolved": {"train_size": result.train_size, "device": str(device), "threads": threads,
                     "cuda_graphs": cuda and cuda_graphs},
        "status": result.status,
        "diverged_at_iteration": result.diverged_at,
        "iterations_done": len(result.train_loss),
        "final_train_loss": _finite_or_none(result.train_loss[-1]),
        "final_test_accuracy": float(evaluated[-1]),
        "best_test_accuracy": float(evaluated.max()),
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "data_sha256": data_sha256,  # of the cached tensors it trained on (mnist_sgd.data.tensors_sha256)
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": {
            "mnist_sgd": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
        },
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "setup_seconds": setup_seconds,
        "wall_seconds": result.wall_seconds,
        "seconds_per_iteration": result.wall_seconds / len(result.train_loss),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
        "gpu_peak_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
    }


def run(data_path, metrics_path, info_path, config, threads=None, log=print, cuda_graphs=True, data_sources=None,
        rebuild_from=None):
    """Load the cached data, train one run, and write its metrics CSV and info JSON.

    `data_sources`, when given, are the SHA-256s of the IDX files the cache must have been built from;
    `rebuild_from`, the IDX files to rebuild a damaged cache from (see `load_cache`).
    """
    start = time.perf_counter()
    config.validate()
    device = resolve_device(config.device, log)
    if threads:
        torch.set_num_threads(threads)
    data = load_cache(data_path, device, sources=data_sources, rebuild_from=rebuild_from, log=log)
    log(f"training {config} on {device} with {torch.get_num_threads()} threads")
    setup_seconds = time.perf_counter() - start
    result = train(data, config, log, cuda_graphs)
    write_metrics(metrics_path, result)
    info = run_info(config, result, device, torch.get_num_threads(), setup_seconds, cuda_graphs, data.sha256)
    with atomic_path(info_path) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    log(
        f"done ({info['status']}): final test accuracy {info['final_test_accuracy']:.4f}, "
        f"final loss {info['final_train_loss']}, {result.wall_seconds:.2f} s, "
        f"peak RSS {info['peak_rss_mb']:.0f} MB"
    )
    return info


def parse_args(argv=None):
    """The command line; every knob has a default and a help text."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m mnist_sgd.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="data cache written by the workflow (results/data/mnist.pt)")
    parser.add_argument("--metrics", required=True, help="output metrics CSV")
    parser.add_argument("--info", required=True, help="output JSON of parameters and timings")
    parser.add_argument("--impl", choices=sorted(UPDATERS), default=defaults.impl, help="update rule")
    parser.add_argument(
        "--train-size", type=lambda s: None if s == "all" else int(s), default=None,
        help="seeded random subset of the training set, or 'all' (default)",
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--iterations", type=int, default=defaults.iterations)
    parser.add_argument("--lr", type=float, default=defaults.lr, help="learning rate")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seeds the subset and the batches")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every, help="test accuracy every N iterations")
    parser.add_argument("--device", choices=DEVICES, default=defaults.device)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                        default=os.environ.get("MNIST_SGD_CUDA_GRAPHS", "1") != "0",
                        help="on CUDA, launch each step's kernels one by one: same numbers, slower "
                        "(the default when the environment has MNIST_SGD_CUDA_GRAPHS=0)")
    return parser.parse_args(argv)


def main(argv=None):
    """Command-line entry point."""
    args = parse_args(argv)
    config = TrainConfig(
        impl=args.impl, train_size=args.train_size, batch_size=args.batch_size, iterations=args.iterations,
        lr=args.lr, seed=args.seed, eval_every=args.eval_every, device=args.device,
    )
    try:
        run(args.data, args.metrics, args.info, config, threads=args.threads,
            log=lambda m: print(m, file=sys.stderr, flush=True), cuda_graphs=args.cuda_graphs)
    except (ConfigError, DataError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
