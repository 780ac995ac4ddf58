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

import ctypes
import fcntl
import hashlib
import importlib
import json
import os
import runpy
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from .imports import PACKAGE
from .private_dir import NotPrivate, user_dir

# A worker with no job for this long exits (a later job starts a new one).
IDLE_SECONDS = 30
# How long a job waits for a worker it started to listen (its first preload of the libraries included).
START_SECONDS = 60
# How long a job waits for a listening worker to fork its child: a stopped or wedged worker then costs a
# job this long, after which it runs its script itself.
REPLY_SECONDS = 10
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
    """This user's worker socket for this Python, PYTHONPATH, import-time settings and serving code (this
    module and the two it imports); the rest of the package is each job's own. NotPrivate if this user's
    directory is not private."""
    digest = hashlib.sha256(sys.executable.encode())
    for name, value in sorted(os.environ.items()):
        if name.startswith(IMPORT_TIME_PREFIXES):
            digest.update(f"\0{name}={value}".encode())
    for module in ("worker", "imports", "private_dir"):
        digest.update((PACKAGE / f"{module}.py").read_bytes())
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
                    [sys.executable, "-m", "mnist_sgd.worker", str(path)],
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
