"""A warm process that trains each run in a child forked from it, so that a run does not pay for a Python
start and `import torch` (two seconds of CPU, more than many runs train).

A training job (workflow/scripts/train.py) calls `train_run`: it sends the run's arguments to the worker
of this code, user and Python over a Unix socket, starting the worker if none is listening. The worker
imported torch once; for each request it forks a child that trains the run exactly as `mnist_sgd.train.run`
does in a process of its own (same code, one thread, same numbers), writing the job's outputs and log.
The job waits for the child's exit status and fails when it fails.

The job stays the run's owner: if it dies (killed, Ctrl-C, Snakemake stopping), its connection closes and
the worker kills the child at once, so a killed job leaves nothing behind. The worker never touches CUDA
(a forked child could not use it) and exits after `IDLE_SECONDS` without work. On a cluster (SLURM) each
job trains in its own process: a worker would outlive its job's allocation.
"""

import ctypes
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

from .imports import PACKAGE

# A worker with no request for this long exits (a later job starts a new one).
IDLE_SECONDS = 30
# How long a job waits for a worker it started to listen.
START_SECONDS = 60
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def socket_name():
    """The worker's abstract Unix socket: one per version of this package's code, Python and user, so
    that an edited package never trains in a worker holding the old code."""
    digest = hashlib.sha256(f"{sys.executable} {os.getuid()}".encode())
    for source in sorted(PACKAGE.glob("*.py")):
        digest.update(source.read_bytes())
    return f"\0mnist-sgd-worker-{digest.hexdigest()[:20]}"


def usable():
    """Whether a job here may train in the worker: not inside a SLURM job (its processes end with it)."""
    return "SLURM_JOB_ID" not in os.environ


class Unavailable(RuntimeError):
    """No worker could take the run: the job trains it in its own process instead."""


def train_run(request, log_path):
    """Train one run in the worker; return the child's exit status (0: its outputs are written).

    `request` holds the keyword arguments of `mnist_sgd.train.run`, its config as a dict; the child
    appends its log to `log_path`. Unavailable if no worker starts, or every one tried went away
    before forking the run's child (one that was idling out as the job connected).
    """
    message = {"request": request, "log": os.path.abspath(log_path), "cwd": os.getcwd(), "env": dict(os.environ)}
    for _ in range(3):
        with _connect() as connection:
            connection.sendall(json.dumps(message).encode() + b"\n")
            replies = connection.makefile()
            if replies.readline() != "started\n":
                continue  # the worker closed without taking the run: try a new one
            reply = replies.readline()  # blocks until the child ends: this job is its owner
            return int(reply) if reply.strip() else 1
    raise Unavailable("the training worker went away three times before taking the run")


def _connect():
    name = socket_name()
    started = None
    deadline = time.monotonic() + START_SECONDS
    while True:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(name)
            return connection
        except (ConnectionRefusedError, FileNotFoundError):
            connection.close()
        if started is None:
            started = subprocess.Popen(
                [sys.executable, "-m", "mnist_sgd.worker"],
                cwd=PACKAGE.parent,
                env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)},
                start_new_session=True,  # not in the job's process group: it outlives the job
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        if started.poll() not in (None, 0):  # 0: another worker took the name first
            raise Unavailable(f"the training worker failed to start (exit status {started.returncode})")
        if time.monotonic() > deadline:
            raise Unavailable(f"the training worker did not start within {START_SECONDS} s")
        time.sleep(0.05)


def serve():
    """The worker: claim the socket (another worker may hold it: then leave), import torch, and serve each
    connection in a thread until IDLE_SECONDS pass without one."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(socket_name())
    except OSError:  # another worker of this code is starting or serving
        return
    listener.listen(64)
    import torch  # noqa: F401  (once, before any fork: what every child inherits)

    from . import train  # noqa: F401

    active = [0]
    lock = threading.Lock()
    listener.settimeout(1)
    idle_since = time.monotonic()
    while True:
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            with lock:
                if active[0]:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > IDLE_SECONDS:
                    return
            continue
        with lock:
            active[0] += 1
        threading.Thread(target=_serve_one, args=(connection, active, lock), daemon=True).start()


def _serve_one(connection, active, lock):
    """Fork a child for the request on `connection`, kill it if the connection closes first, and reply
    with its exit status."""
    try:
        message = json.loads(connection.makefile().readline())
        pid = os.fork()
        if pid == 0:
            _child(message)  # never returns
        connection.sendall(b"started\n")
        ended = threading.Event()
        threading.Thread(target=_kill_when_closed, args=(connection, pid, ended), daemon=True).start()
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # ended, not yet reaped: its pid is not reused
        ended.set()
        _, status = os.waitpid(pid, 0)
        try:
            connection.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
        except OSError:
            pass
    except Exception:  # a broken request or connection: the job sees no status and fails
        pass
    finally:
        connection.close()
        with lock:
            active[0] -= 1


def _kill_when_closed(connection, pid, ended):
    """SIGKILL the child when the job's end of the connection closes (the job died) before it ended."""
    try:
        connection.recv(1)  # the job never sends more: this returns when it closes
    except OSError:
        pass
    if not ended.is_set():
        os.kill(pid, signal.SIGKILL)  # not reaped yet (see _serve_one): still this child's pid


def _child(message):
    """In the forked child: become the job (its directory, environment and log), train, exit."""
    code = 1
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # if the worker dies, so does the run
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.chdir(message["cwd"])
        os.environ.clear()
        os.environ.update(message["env"])
        log = open(message["log"], "a", buffering=1)
        os.dup2(log.fileno(), 2)
        sys.stderr = log
        from .train import run_request

        run_request(message["request"], log=lambda line: print(line, file=log))
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve()
