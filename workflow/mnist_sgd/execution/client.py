"""What a job does to run its script in the warm worker (mnist_sgd.execution.worker): find this user's
worker for this Python and environment, check that its listener is this user, send the script with
the part of the environment it may see, and wait for its child's exit status. Where no worker can take
it, the job runs the script itself.
"""

import ctypes
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import time

from .digests import PACKAGE
from .private_dir import NotPrivate, user_dir

# How long a job waits for a worker it started to listen (its first preload of the libraries included).
START_SECONDS = 60
# How long a job waits for a listening worker to fork its child: a stopped or wedged worker then costs a
# job this long, after which it runs its script itself.
REPLY_SECONDS = 10
# Set in a child the worker forked for a job: its script runs there, and does not delegate again.
IN_CHILD = "MNIST_SGD_WORKER_CHILD"
# Variables the preloaded libraries (and Python itself) read once, at start or import, which a child
# cannot read again: a worker serves one set of their values. Matplotlib's (MPLCONFIGDIR, MATPLOTLIBRC,
# ./matplotlibrc and the HOME or XDG defaults) each child reads afresh instead (`_libraries_as_if_fresh`).
IMPORT_TIME_PREFIXES = ("PYTHON", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "TORCH", "PYTORCH", "LD_")
# What a job sends its child of its environment (docs/security.md): what the scripts, the libraries
# and the downloads read. The rest (tokens, keys, passwords of other programs) never leaves the job.
CHILD_ENV_NAMES = {
    "HOME", "USER", "LOGNAME", "PATH", "SHELL", "TERM", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "MPLCONFIGDIR", "MATPLOTLIBRC", "MPLBACKEND",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "ALL_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR",
}  # fmt: skip
CHILD_ENV_PREFIXES = ("LC_", "XDG_", "SNAKEMAKE_", "MNIST_SGD_", "CUDA_", "NVIDIA_", "CUBLAS_") + IMPORT_TIME_PREFIXES


class Unavailable(RuntimeError):
    """No worker could take the job: its script runs in the job's own process instead."""


def child_environment(environ):
    """The part of a job's environment `environ` that its child in the worker gets (CHILD_ENV_NAMES and
    CHILD_ENV_PREFIXES), marked as the child's."""
    kept = {k: v for k, v in environ.items() if k in CHILD_ENV_NAMES or k.startswith(CHILD_ENV_PREFIXES)}
    return {**kept, IN_CHILD: "1"}


def socket_path():
    """This user's worker socket for this Python, PYTHONPATH, import-time settings and serving code (the
    worker, this module and the modules they import); the rest of the package is each job's own. NotPrivate if this user's
    directory is not private."""
    digest = hashlib.sha256(sys.executable.encode())
    for name, value in sorted(os.environ.items()):
        if name.startswith(IMPORT_TIME_PREFIXES):
            digest.update(f"\0{name}={value}".encode())
    for module in ("worker", "client", "digests", "private_dir"):
        digest.update((PACKAGE / "execution" / f"{module}.py").read_bytes())
    return user_dir() / f"worker-{digest.hexdigest()[:20]}.sock"


def peer_credentials(connection):
    """(pid or None, uid) of the process at the other end of Unix socket `connection`, from the kernel:
    SO_PEERCRED on Linux, getpeereid elsewhere (macOS, the BSDs). For a job, the listener's; for the
    worker, the job's."""
    if hasattr(socket, "SO_PEERCRED"):
        size = struct.calcsize("3i")
        pid, uid, _ = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size))
        return pid, uid
    uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.getpeereid(connection.fileno(), ctypes.byref(uid), ctypes.byref(gid)) != 0:
        raise OSError(ctypes.get_errno(), "getpeereid failed")
    return None, uid.value


def delegate(script, log_path, enabled=True):
    """Run this job's script, `script` (the file Snakemake generated and runs now: sys.argv[0]), in a child
    of the worker; return True when it did and the child succeeded, False where the script must go on
    here: in the worker's child itself, inside a SLURM job, when not `enabled`, or when no worker could
    take it (said in the log). A child that fails ends the job with its exit status; its log says why."""
    if os.environ.get(IN_CHILD) or not enabled or "SLURM_JOB_ID" in os.environ:
        return False
    message = {"script": os.path.abspath(script), "log": os.path.abspath(log_path), "cwd": os.getcwd()}
    message["env"] = child_environment(os.environ)
    try:
        status = _submit(message, socket_path())
    except (Unavailable, NotPrivate) as error:
        print(f"{error}; running in this job's own process", file=sys.stderr)
        return False
    if status != 0:
        sys.exit(f"the job failed in the worker's child (exit status {status}); its log: {log_path}")
    return True


def _submit(message, path):
    """Send a job to the worker at `path`; return its child's exit status. Unavailable if no worker starts,
    the listener is another user's, it does not take the job in time, or every one tried went away before
    forking the child (one idling out as the job connected); SystemExit if it died running the child."""
    for _ in range(3):
        with _connect(path) as connection:
            pid, owner = peer_credentials(connection)
            if owner != os.getuid():
                raise Unavailable(
                    f"the worker socket {path} is held by uid {owner} (pid {pid}), not by this user "
                    f"(uid {os.getuid()}); nothing was sent to it"
                )
            connection.settimeout(REPLY_SECONDS)
            replies = connection.makefile()
            try:
                connection.sendall(json.dumps(message).encode() + b"\n")
                reply = replies.readline()
            except TimeoutError:
                raise Unavailable(f"the worker (pid {pid}) did not take the job within {REPLY_SECONDS} s") from None
            except OSError:
                continue  # it closed as we sent: try a new one
            if reply.startswith("refused"):
                raise Unavailable(f"the worker (pid {pid}) {reply.strip()}")
            if reply != "started\n":
                continue  # the worker closed without taking the job: try a new one
            connection.settimeout(None)
            reply = replies.readline()  # blocks until the child ends: this job is its owner
            if not reply.strip():
                sys.exit(
                    f"the worker (pid {pid}) died while its child ran this job's script, and the child with "
                    f"it; the script's log so far: {message['log']}"
                )
            return int(reply)
    raise Unavailable("the worker went away three times before taking the job")


def _connect(path):
    """A connection to the worker at `path`, starting one if none listens."""
    if len(os.fsencode(path)) > 100:  # sockaddr_un holds 104 bytes on macOS, 108 on Linux
        raise Unavailable(f"the worker socket's path is too long for a Unix socket: {path}")
    started, start_time = None, 0.0
    deadline = time.monotonic() + START_SECONDS
    while True:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(REPLY_SECONDS)  # a stopped worker's full backlog would block a connect
        try:
            connection.connect(str(path))
            return connection
        except (ConnectionRefusedError, FileNotFoundError):
            connection.close()
        except TimeoutError:
            connection.close()
            raise Unavailable(f"the worker at {path} did not accept the job within {REPLY_SECONDS} s") from None
        if started is not None and started.poll() == 0 and time.monotonic() - start_time > 1:
            started = None  # the worker that held the lock was leaving: start another (once a second)
        if started is None:
            start_time = time.monotonic()
            with open(path.with_suffix(".log"), "ab") as log:  # the worker's own words: refusals, crashes
                started = subprocess.Popen(
                    [sys.executable, "-m", "mnist_sgd.execution.worker", str(path)],
                    cwd=PACKAGE.parent,
                    # Ahead of the user's own path, not instead of it: snakemake itself may live there.
                    env={
                        **os.environ,
                        "PYTHONPATH": os.pathsep.join(
                            filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")])
                        ),
                    },
                    start_new_session=True,  # not in the job's process group: it outlives the job
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
        if started.poll() not in (None, 0):  # 0: another worker holds the lock
            raise Unavailable(
                f"the worker failed to start (exit status {started.returncode}); see {path.with_suffix('.log')}"
            )
        if time.monotonic() > deadline:
            raise Unavailable(f"the worker did not start within {START_SECONDS} s")
        time.sleep(0.05)
