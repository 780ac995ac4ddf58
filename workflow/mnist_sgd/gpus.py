"""Which GPU a training job trains on.

Snakemake counts GPUs (`--resources gpu=N`) but assigns none: N training jobs at once on one machine
would all use device 0. So each job takes a lock on a device of its own (or on one of its
`jobs_per_gpu` slots), without blocking, and holds it for as long as the process lives (the kernel
releases it when the job ends, crashed or killed: a lock file left by a process that is gone is free).
The locks are this user's (in `private_dir.user_dir()`, mode 0700): another user can neither hold ours
nor make our jobs wait; each user's jobs share the devices among themselves.
Under SLURM the job keeps what SLURM assigned: the devices SLURM makes visible are the job's alone.
"""

import contextlib
import fcntl
import itertools
import os
import time

from .private_dir import ensure_private, user_dir

_held = []  # open lock files: a lock lasts as long as its file stays open


def claim_gpu(devices, lock_dir=None, log=print, poll_seconds=1.0, per_device=1):
    """Lock one of `per_device` slots of one of `devices` (names that identify each visible GPU on this
    machine, e.g. UUIDs) for the rest of this process and return the device's index; None when there are
    none. Devices fill evenly: every device's first slot before any second one. When every slot is
    taken, wait for one. `lock_dir` (this user's `gpu-locks` by default) must be private
    (private_dir.NotPrivate otherwise)."""
    if not devices:
        return None
    lock_dir = ensure_private(user_dir() / "gpu-locks" if lock_dir is None else lock_dir)
    waiting = False
    while True:
        for slot, (index, name) in itertools.product(range(per_device), enumerate(devices)):
            suffix = f".{slot}" if slot else ""  # slot 0: the one lock file of a device, as before
            descriptor = _open_lock(lock_dir / f"{_file_name(name)}{suffix}.lock", log)
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


def _open_lock(path, log):
    """A descriptor of lock file `path`, made if missing. One that another user owns (only root could
    have put it in a private directory) is not ours to wait on: it is replaced, and the log says so."""
    descriptor = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    owner = os.fstat(descriptor).st_uid
    if owner == os.getuid():
        return descriptor
    os.close(descriptor)
    log(f"ignoring GPU lock {path}: it belongs to uid {owner}, not to this user; replacing it")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)


def _file_name(name):
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name))
