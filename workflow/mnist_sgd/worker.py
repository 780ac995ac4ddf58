"""A warm process that runs each job's script in a child forked from it, so that a job does not pay for a
Python start and the imports of torch, matplotlib and pandas (two to three seconds of CPU, more than most
runs take to train and most figures to draw).

A rule's script (workflow/scripts/*.py) starts with `worker.delegate(...)`: it sends the path of the
script Snakemake generated for the job (the job's parameters are in its preamble) to the worker of this
Python, user, PYTHONPATH and worker code over a Unix socket, starting the worker if none is listening. The
worker imported those libraries once; for each job it forks a child that runs that same script in the
job's directory, environment and log: the same code and the same numbers as a process of its own. The job
waits for the child's exit status and fails when it fails.

One worker serves every copy of the workflow, and every edit of it: it keeps the libraries, not this
package. It imports the package's modules once to load what they import, then forgets them and takes the
package's folder off its path; each child imports the package afresh from its job's own copy (the
script puts it first on the path), a few tens of milliseconds. A benchmark's or a test suite's scratch
copies, and each code edit, then start no new worker (4 s of CPU each).

The job stays the owner: if it dies (killed, Ctrl-C, Snakemake stopping), its connection closes and the
worker kills the child at once, so a killed job leaves nothing behind. The worker never touches CUDA (a
forked child could not use it) and exits after `IDLE_SECONDS` without work. Inside a SLURM job, and with
the config's `worker: false`, a job runs its script itself: a worker would outlive the job's allocation.
"""

import ctypes
import hashlib
import importlib
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from .imports import PACKAGE

# A worker with no job for this long exits (a later job starts a new one).
IDLE_SECONDS = 30
# How long a job waits for a worker it started to listen.
START_SECONDS = 60
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Set in a child the worker forked for a job: its script runs there, and does not delegate again.
IN_CHILD = "MNIST_SGD_WORKER_CHILD"
# What the worker imports before it forks: what the rule scripts import, once.
PRELOAD = (
    "torch",
    # torch.optim's Optimizer imports it on its first parameter group (torch._disable_dynamo): 1.5 s of
    # a torch run's job on a 2-core AMD EPYC, and the largest part of its 7 s more than a scratch run's
    # on an H200 machine.
    "torch._dynamo",
    "pandas",
    "matplotlib.pyplot",
    "snakemake.script",
    "mnist_sgd.datasets",  # torchvision's data set registry (0.1 s once torch._dynamo is in)
    "mnist_sgd.train",
    "mnist_sgd.optimum",
    "mnist_sgd.summary",
    "mnist_sgd.plots",
    "mnist_sgd.grid_plots",
)


def socket_name():
    """The worker's abstract Unix socket: one per Python, user and PYTHONPATH (what the libraries a child
    inherits are), and per version of the code that serves (this module and the one it imports). The rest
    of the package is each job's own: children import it from their job's copy."""
    digest = hashlib.sha256(f"{sys.executable} {os.getuid()} {os.environ.get('PYTHONPATH', '')}".encode())
    for module in ("worker", "imports"):
        digest.update((PACKAGE / f"{module}.py").read_bytes())
    return f"\0mnist-sgd-worker-{digest.hexdigest()[:20]}"


class Unavailable(RuntimeError):
    """No worker could take the job: its script runs in the job's own process instead."""


def delegate(script, log_path, enabled=True):
    """Run this job's script, `script` (the file Snakemake generated and runs now: sys.argv[0]), in a child
    of the worker; return True when it did and the child succeeded, False where the script must go on
    here: in the worker's child itself, inside a SLURM job, when not `enabled`, or when no worker could
    take it (said in the log). A child that fails ends the job with its exit status; its log says why."""
    if os.environ.get(IN_CHILD) or not enabled or "SLURM_JOB_ID" in os.environ:
        return False
    message = {"script": os.path.abspath(script), "log": os.path.abspath(log_path), "cwd": os.getcwd()}
    message["env"] = {**os.environ, IN_CHILD: "1"}
    try:
        status = _submit(message)
    except Unavailable as error:
        print(f"{error}; running in this job's own process", file=sys.stderr)
        return False
    if status != 0:
        sys.exit(f"the job failed in the worker's child (exit status {status}); its log: {log_path}")
    return True


def _submit(message):
    """Send a job to the worker; return its child's exit status. Unavailable if no worker starts, or every
    one tried went away before forking the child (one idling out as the job connected)."""
    for _ in range(3):
        with _connect() as connection:
            connection.sendall(json.dumps(message).encode() + b"\n")
            replies = connection.makefile()
            if replies.readline() != "started\n":
                continue  # the worker closed without taking the job: try a new one
            reply = replies.readline()  # blocks until the child ends: this job is its owner
            return int(reply) if reply.strip() else 1
    raise Unavailable("the worker went away three times before taking the job")


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
                # The name from the job's environment: the worker's own PYTHONPATH has the package in front.
                [sys.executable, "-m", "mnist_sgd.worker", name.removeprefix("\0")],
                cwd=PACKAGE.parent,
                # Ahead of the user's own path, not instead of it: snakemake itself may live there.
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")])),
                },
                start_new_session=True,  # not in the job's process group: it outlives the job
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        if started.poll() not in (None, 0):  # 0: another worker took the name first
            raise Unavailable(f"the worker failed to start (exit status {started.returncode})")
        if time.monotonic() > deadline:
            raise Unavailable(f"the worker did not start within {START_SECONDS} s")
        time.sleep(0.05)


def serve(name):
    """The worker: claim socket `name` (the starting job's socket_name(); another worker may hold it: then
    leave), import PRELOAD, and serve each connection in a thread until IDLE_SECONDS pass without one."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(name)
    except OSError:  # another worker of this code is starting or serving
        return
    listener.listen(64)
    for module in PRELOAD:  # once, before any fork: what every child inherits
        importlib.import_module(module)
    _forget_package()

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


def _forget_package():
    """Drop this copy of the package from the modules and the path, keeping what it imported: a child
    imports the package from its own job's copy, whichever copy started the worker (and even once that
    copy is deleted)."""
    for name in [name for name in sys.modules if name == "mnist_sgd" or name.startswith("mnist_sgd.")]:
        del sys.modules[name]
    folder = PACKAGE.parent.resolve()
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != folder]


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
    """In the forked child: become the job (its directory, environment and log), run its script, exit."""
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
        sys.argv = [message["script"]]
        runpy.run_path(message["script"], run_name="__main__")
        code = 0
    except SystemExit as end:  # the script's own sys.exit: its status, or its message and 1
        if isinstance(end.code, int) or end.code is None:
            code = end.code or 0
        else:
            print(end.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve("\0" + sys.argv[1])
