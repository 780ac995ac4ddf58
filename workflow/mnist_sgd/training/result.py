"""A finished run's outcome: its curves and timings (RunResult), and the record written for it (run_info)."""

import os
import platform
import resource
import socket
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .. import __version__
from ..study.records import RunInfo, cpu_name, git_state


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
    cuda_graphs: bool = False  # every chunk after the first of its shape was a CUDA graph replay
    cuda_graphs_error: Optional[str] = None  # why graphs were given up, if they were
    weight: Optional[np.ndarray] = None  # the final (784, 10) weight, after the last step
    confusion: Optional[np.ndarray] = None  # (10, 10): test images of class i the final weight puts in class j
    noise_scale: Optional[dict] = (
        None  # {"iteration": [...], "b_simple": [...], "b_noise": [...]} (mnist_sgd.training.noise)
    )
    noise_seconds: float = 0.0  # of wall_seconds, spent measuring them

    @property
    def test_accuracy(self):
        """Test accuracy per iteration, NaN where not evaluated."""
        return np.where(self.test_correct >= 0, self.test_correct / self.test_size, np.nan)

    @property
    def status(self):
        return "ok" if self.diverged_at is None else "diverged"


def run_info(config, result, resolved, setup_seconds, data_sha256=None, inputs=None):
    """The record (RunInfo) of a finished run: `result` is its RunResult, `resolved` its Resolved settings,
    `inputs` the TrainingInputs it was trained from, where the workflow gave them."""
    evaluated = result.test_accuracy[~np.isnan(result.test_accuracy)]
    commit, dirty = git_state()
    cuda = resolved.device.startswith("cuda")
    return RunInfo(
        params=config,
        resolved=resolved,
        status=result.status,
        diverged_at_iteration=result.diverged_at,
        iterations_done=len(result.train_loss),
        final_train_loss=float(result.train_loss[-1]) if np.isfinite(result.train_loss[-1]) else None,
        final_test_accuracy=float(evaluated[-1]),
        best_test_accuracy=float(evaluated.max()),
        device_name=torch.cuda.get_device_name(resolved.device) if cuda else cpu_name(),
        git_commit=commit,
        git_dirty=dirty,
        versions={
            "mnist_sgd": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
        },
        host=socket.gethostname(),
        slurm_job_id=os.environ.get("SLURM_JOB_ID"),
        setup_seconds=setup_seconds,
        wall_seconds=result.wall_seconds,
        seconds_per_iteration=result.wall_seconds / len(result.train_loss),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
        gpu_peak_allocated_mb=torch.cuda.max_memory_allocated(resolved.device) / 2**20 if cuda else None,
        data_sha256=data_sha256,
        confusion=result.confusion.tolist(),
        noise_scale=result.noise_scale,
        noise_seconds=result.noise_seconds,
        inputs=inputs and inputs.as_record(),
    )
