"""Atomic file writes: a result file either exists complete or not at all."""

import contextlib
import errno
import glob
import os
import socket
import tempfile
from pathlib import Path

# Free bytes under which a failed write is taken for a full disk: numpy's short write ("7840 requested
# and 3040 written") and torch.save's ("file write failed") carry no errno.
FULL_DISK_BYTES = 1 << 20


class NoSpace(OSError):
    """A write failed because its file system is full (or the user's quota is spent)."""


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; move it onto `path` only if the block succeeds.

    The temporary's name holds this host's name and this process's id. Temporaries of `path` left by a
    writer that was killed (SIGKILL skips the cleanup below) are removed first, but only a writer's of
    this host that is no longer alive: another node's or a live process's are left alone, however the
    jobs that share a results folder over a network file system are placed.

    A write that fails for want of space raises NoSpace, naming the folder, with nothing half-written
    left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_writers_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        full = isinstance(error, (OSError, RuntimeError)) and _full(error, path.parent)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if full:
            raise NoSpace(
                errno.ENOSPC,
                f"no space left on {path.parent} while writing {path.name} ({error}); nothing of it was kept: "
                "free some space there, then run the workflow again",
            ) from error
        raise


# A host name holds no '/' and, in a temporary's name, is kept free of dots' ambiguity by splitting from
# the right: .<name>.<host>.<pid>.<random>.tmp
_HOST = socket.gethostname().replace("/", "_") or "localhost"


def _remove_dead_writers_temporaries(path):
    prefix = f".{path.name}."
    for leftover in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        parts = leftover.name[len(prefix) : -len(".tmp")].rsplit(".", 2)
        if len(parts) == 3 and parts[0] == _HOST and parts[1].isdigit() and not _alive(int(parts[1])):
            leftover.unlink(missing_ok=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _full(error, folder):
    """Whether `error`, from a write under `folder`, is its file system's being full."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if getattr(error, "errno", None) is not None:
        return False
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < FULL_DISK_BYTES


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path, text):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
