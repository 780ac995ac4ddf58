"""Which GPU a training job trains on.

Snakemake counts GPUs (`--resources gpu=N`) but assigns none: N training jobs at once on one machine
would all use device 0. So each job takes a lock on a device of its own (or on one of its
`jobs_per_gpu` slots), without blocking, and holds it for as long as the process lives (the kernel releases it when the job ends, crashed or killed).
Under SLURM the job keeps what SLURM assigned: the devices SLURM makes visible are the job's alone.
"""

import contextlib
import fcntl
import itertools
import os
import tempfile
import time
from pathlib import Path

# Machine-wide, so that several workflows on one machine share the devices fairly.
LOCK_DIR = Path(tempfile.gettempdir()) / "mnist_sgd_gpu_locks"
_held = []  # open lock files: a lock lasts as long as its file stays open


def claim_gpu(devices, lock_dir=LOCK_DIR, log=print, poll_seconds=1.0, per_device=1):
    """Lock one of `per_device` slots of one of `devices` (names that identify each visible GPU on this
    machine, e.g. UUIDs) for the rest of this process and return the device's index; None when there are
    none. Devices fill evenly: every device's first slot before any second one. When every slot is
    taken, wait for one."""
    if not devices:
        return None
    lock_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        lock_dir.chmod(0o1777)  # every user's jobs share it
    waiting = False
    while True:
        for slot, (index, name) in itertools.product(range(per_device), enumerate(devices)):
            suffix = f".{slot}" if slot else ""  # slot 0: the one lock file of a device, as before
            descriptor = os.open(lock_dir / f"{_file_name(name)}{suffix}.lock", os.O_RDONLY | os.O_CREAT, 0o666)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            _held.append(descriptor)
            return index
        if not waiting:
            held = f"all {len(devices)} GPUs" + (f" ({per_device} jobs each)" if per_device > 1 else "")
            log(f"{held} are in use by other training jobs; waiting for one to be free")
            waiting = True
        time.sleep(poll_seconds)


def assigned_by_scheduler():
    """Whether a scheduler (SLURM) chose this job's devices: then they are its own, no lock is needed."""
    return "SLURM_JOB_ID" in os.environ


def _file_name(name):
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name))
