"""Where a job runs: the CUDA device it trains on, claimed so that concurrent jobs each get one of their
own (or share one `jobs_per_gpu` at a time), or the one SLURM assigned; and the device locks that
make the claim (in this user's private directory; see docs/security.md).
"""

import contextlib
import fcntl
import itertools
import os
import time

import torch

from ..study.runs import ConfigError
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


def resolve_device(name, log=print):
    """Map `auto` to CUDA when available, else CPU; refuse `cuda` on a machine without it."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "CUDA is not available here; use device=auto or device=cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
        log(f"device=auto: using {name}")
    return torch.device(name)


def claim_cuda_device(log=print, jobs_per_gpu=1):
    """The CUDA device this job trains on, made current: the one SLURM assigned, or locally one with a
    slot that no other training job holds (`claim_gpu`): concurrent jobs each get a device of their
    own, or share one `jobs_per_gpu` at a time."""
    if assigned_by_scheduler():
        index = torch.cuda.current_device()
    else:
        count = torch.cuda.device_count()
        names = [getattr(torch.cuda.get_device_properties(i), "uuid", i) for i in range(count)]
        index = claim_gpu(names, log=log, per_device=jobs_per_gpu)
    torch.cuda.set_device(index)
    log(f"using cuda:{index} ({torch.cuda.get_device_name(index)})")
    return torch.device("cuda", index)


def pick_device(name, log=print, jobs_per_gpu=1):
    """The device a run of device setting `name` (auto, cpu, cuda) trains on: the CPU, or a CUDA device
    claimed for this job (`claim_cuda_device`)."""
    device = resolve_device(name, log)
    return claim_cuda_device(log, jobs_per_gpu) if device.type == "cuda" else device
