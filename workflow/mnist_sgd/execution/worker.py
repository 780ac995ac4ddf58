"""A warm process that runs each job's script in a child forked from it, so that a job does not pay for a
Python start and the imports of torch, matplotlib and pandas (two to three seconds of CPU, more than most
runs take to train and most figures to draw).

A rule's script starts with `job.start_job(snakemake)`, which calls `delegate(...)`: it sends the path of
the script Snakemake generated for the job (the job's parameters are in its preamble) to this user's
worker over a Unix socket, starting the worker if none is listening. The worker imported those libraries
once; for each job it forks a child that runs that same script in the job's directory, environment and
log: the same code and the same numbers as a process of its own. The job waits for the child's exit
status and fails when it fails.

Only this user (docs/security.md). The socket is a file in `private_dir.user_dir()`, a directory of mode
0700 that no other user can enter; on top of that, the worker refuses any connection whose peer is
another user, and a job sends nothing to a listener that another user owns. A job sends only the
environment variables its child needs (`child_environment`), and runs its script itself whenever the
worker cannot be trusted or does not answer within `REPLY_SECONDS`.

One worker serves every copy of the workflow, and every edit of it: it keeps the libraries, not this
package. It imports the package's modules once to load what they import, then forgets them and takes the
package's folder off its path; each child imports the package afresh from its job's own copy (the
script puts it first on the path), a few tens of milliseconds. A worker serves one Python, PYTHONPATH, set
of the variables its libraries read at import (`IMPORT_TIME_PREFIXES`) and version of this module.

The job stays the owner: if it dies (killed, Ctrl-C, Snakemake stopping), its connection closes and the
worker kills the child at once; if the worker dies, its children die with it, and each job says so. The
worker never initialises CUDA (a forked child could not use it then) and exits after `IDLE_SECONDS`
without work. Jobs of a cluster or cloud executor, and jobs under the config's `worker: false`, run their
script themselves: a worker would outlive the job's allocation (rules/common.smk turns it off there).
"""

import fcntl
import importlib
import json
import os
import runpy
import select
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from .client import REPLY_SECONDS, peer_credentials
from .digests import PACKAGE

# A worker with no job for this long exits (a later job starts a new one).
IDLE_SECONDS = 30
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
    "mnist_sgd.data.sources",  # torchvision's data set registry (0.1 s once torch._dynamo is in)
    "mnist_sgd.training.train",
    "mnist_sgd.training.optimum",
    "mnist_sgd.analysis.summary",
    "mnist_sgd.figures.run",
    "mnist_sgd.figures.group",
    "mnist_sgd.figures.grid",
)


def serve(path):
    """The worker: take socket `path` (a job's socket_path(); if another worker holds its lock, leave),
    import PRELOAD, then listen, and serve each connection in a thread until IDLE_SECONDS pass without
    one. Its pid is in the lock file, `path` with `.lock`."""
    path = Path(path)
    lock = open(path.with_suffix(".lock"), "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another worker of this code is starting or serving
        return
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    path.unlink(missing_ok=True)  # a dead worker's: nobody listens there (we hold the lock)
    for module in PRELOAD:  # once, before any fork: what every child inherits
        importlib.import_module(module)
    _forget_package()
    # The children's lifeline: each holds the read end, and reads end of file when the worker is gone.
    lifeline, alive = os.pipe()

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))  # only once the libraries are in: until then, jobs wait to connect
    listener.listen(64)
    active = [0]
    counter = threading.Lock()
    listener.settimeout(1)
    idle_since = time.monotonic()
    try:
        while True:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                with counter:
                    if active[0]:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > IDLE_SECONDS:
                        return
                continue
            if not _own_user(connection):
                continue
            with counter:
                active[0] += 1
            threading.Thread(
                target=_serve_one, args=(connection, (lifeline, alive), active, counter), daemon=True
            ).start()
    finally:
        path.unlink(missing_ok=True)  # before the lock goes: a new worker may bind it then


def _own_user(connection):
    """Whether `connection` comes from this worker's user; if not, say so (to the peer and the worker's
    log), close it and run nothing."""
    try:
        pid, uid = peer_credentials(connection)
    except OSError as error:
        pid, uid = None, f"unknown ({error})"
    if uid == os.getuid():
        return True
    line = f"refused a connection from uid {uid} (pid {pid}): this worker serves uid {os.getuid()} alone"
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}; ran nothing", file=sys.stderr, flush=True)
    try:
        connection.sendall(f"refused: it serves uid {os.getuid()} alone\n".encode())
    except OSError:
        pass
    connection.close()
    return False


def _forget_package():
    """Drop this copy of the package from the modules and the path, keeping what it imported: a child
    imports the package from its own job's copy, whichever copy started the worker (and even once that
    copy is deleted)."""
    for name in [name for name in sys.modules if name == "mnist_sgd" or name.startswith("mnist_sgd.")]:
        del sys.modules[name]
    folder = PACKAGE.parent.resolve()
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != folder]


def _closed(connection):
    """Whether the job's end of `connection` has closed (it sends nothing after its request)."""
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _serve_one(connection, pipe, active, counter):
    """Fork a child for the request on `connection` unless the job is gone already, kill it if the
    connection closes first, reap it, and reply with its exit status."""
    try:
        connection.settimeout(REPLY_SECONDS)  # a job that connects and says nothing holds no thread
        message = json.loads(connection.makefile().readline())
        connection.settimeout(None)
        if _closed(connection):
            return  # the job gave up (or died) before its child started: run nothing
        pid = os.fork()
        if pid == 0:
            _child(message, pipe)  # never returns
        child = _Child(pid)
        try:
            connection.sendall(b"started\n")
            threading.Thread(target=_kill_when_closed, args=(connection, child), daemon=True).start()
        except OSError:  # the job went away as the child started
            child.kill()
        status = child.wait()
        try:
            connection.sendall(f"{status}\n".encode())
        except OSError:
            pass
    except Exception:  # a broken request or connection: the job sees no status and fails
        pass
    finally:
        connection.close()
        with counter:
            active[0] -= 1


class _Child:
    """A forked child, killed at most until it is reaped: never a later process that reuses its pid."""

    def __init__(self, pid):
        self.pid, self.reaped, self.guard = pid, False, threading.Lock()

    def kill(self):
        with self.guard:
            if not self.reaped:
                os.kill(self.pid, signal.SIGKILL)

    def wait(self):
        """Its exit status once it ends; reaped under the guard, so that kill() never outlives the pid."""
        if hasattr(os, "waitid"):  # Linux: wait for its end without reaping it, then reap it at once
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        while True:
            with self.guard:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.reaped = True
                    return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)  # macOS: no waitid, so look again


def _kill_when_closed(connection, child):
    """SIGKILL the child when the job's end of the connection closes (the job died) before it ended."""
    try:
        connection.recv(1)  # the job never sends more: this returns when it closes
    except OSError:
        pass
    child.kill()


def _die_with_worker(pipe):
    """End this child as soon as the worker is gone: a thread waits on the lifeline, whose last write end
    is the worker's (the same on every platform; Linux's PR_SET_PDEATHSIG has no macOS twin)."""
    lifeline, alive = pipe
    os.close(alive)
    threading.Thread(target=lambda: (os.read(lifeline, 1), os._exit(137)), daemon=True).start()


def _libraries_as_if_fresh():
    """Read again, from the job's environment and directory, the settings a preloaded library read at
    import in the worker: matplotlib's rc file (./matplotlibrc, MATPLOTLIBRC, MPLCONFIGDIR, the HOME
    and XDG defaults) and its style library. A child then draws as a process of its own would."""
    mpl = sys.modules.get("matplotlib")
    if mpl is None:
        return
    for name in ("get_configdir", "get_cachedir"):  # memoised at their first call
        cached = getattr(mpl, name)
        setattr(mpl, name, mpl._logged_cached(f"{name}: %s", getattr(cached, "__wrapped__", cached)))
    mpl.rc_file(mpl.matplotlib_fname())  # the defaults and that file, as at import (backend aside)
    style = sys.modules.get("matplotlib.style.core")
    if style is not None:
        style.USER_LIBRARY_PATHS[:] = [os.path.join(mpl.get_configdir(), "stylelib")]
        style.reload_library()


def _child(message, pipe):
    """In the forked child: become the job (its directory, environment and log), run its script, exit."""
    code = 1
    try:
        _die_with_worker(pipe)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log = open(message["log"], "a", buffering=1)
        os.dup2(log.fileno(), 2)
        sys.stderr = log
        os.chdir(message["cwd"])
        os.environ.clear()
        os.environ.update(message["env"])
        _libraries_as_if_fresh()
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
    serve(sys.argv[1])
