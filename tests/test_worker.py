"""The warm worker serves its own user alone, never hangs a job, and runs each job as a process of its own
would (mnist_sgd.execution.worker; docs/security.md). The jobs here are small Python programs that start as a rule
script does (mnist_sgd.execution.job.start_job); their TMPDIR is this module's, so the worker is this module's."""

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO
from mnist_sgd.execution import client, worker
from mnist_sgd.execution.devices import claim_gpu
from mnist_sgd.execution.private_dir import NotPrivate, ensure_private

NOBODY = 65534
ROOT = os.getuid() == 0
# A rule script in miniature: its log, the worker where it can, then the payload script.
JOB = f"""
import os, runpy, sys, types
sys.path.insert(0, {str(REPO / "workflow")!r})  # as a rule script does: the worker's child needs it too
from mnist_sgd.execution import client
from mnist_sgd.execution.job import start_job
client.REPLY_SECONDS = float(os.environ.get("MNIST_SGD_TEST_REPLY", client.REPLY_SECONDS))
start_job(types.SimpleNamespace(log=[os.environ["MNIST_SGD_TEST_LOG"]], config={{"worker": True}}))
runpy.run_path(os.environ["MNIST_SGD_TEST_PAYLOAD"], run_name="__main__")
"""
# A payload that says where it ran and what it was given.
WHERE = """
import json, os, sys
print("payload started", file=sys.stderr, flush=True)
out = os.environ["MNIST_SGD_TEST_OUT"]
json.dump({"pid": os.getpid(), "ppid": os.getppid(), "env": sorted(os.environ)}, open(out, "w"))
"""
FIGURE = """
import os
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
figure, axes = plt.subplots(figsize=(2, 2), dpi=50)
axes.plot([0, 1], [1, 0])
figure.savefig(os.environ["MNIST_SGD_TEST_OUT"])
"""


@pytest.fixture(scope="module")
def home():
    """This module's TMPDIR (so its worker is its own), killed at the end. Not under pytest's own
    temporary folder, whose parents another user cannot pass (the setuid tests open this one)."""
    folder = Path(tempfile.mkdtemp(prefix="test-worker-"))
    (folder / "job.py").write_text(JOB)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
    for lock in folder.glob("mnist-sgd-*/worker-*.lock"):
        pid = lock.read_text().strip()
        for sig in (signal.SIGCONT, signal.SIGKILL) if pid else ():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), sig)


def job_env(home, payload, out, **extra):
    log = Path(out).with_suffix(".log")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(home)),
        "TMPDIR": str(home),
        "PYTHONPATH": str(REPO / "workflow"),
        "MNIST_SGD_TEST_LOG": str(log),
        "MNIST_SGD_TEST_PAYLOAD": str(payload),
        "MNIST_SGD_TEST_OUT": str(out),
    }
    return {**env, **extra}


def run_job(home, payload_source, out, timeout=120, **extra):
    """Run a job with payload `payload_source`; (completed process, its log's text)."""
    out = Path(out)
    payload = out.with_suffix(".payload.py")
    payload.write_text(payload_source)
    env = job_env(home, payload, out, **extra)
    done = subprocess.run(
        [sys.executable, str(home / "job.py")], env=env, capture_output=True, text=True, timeout=timeout
    )
    log = Path(env["MNIST_SGD_TEST_LOG"])
    return done, log.read_text() if log.exists() else ""


def worker_pid(home):
    [lock] = home.glob("mnist-sgd-*/worker-*.lock")
    return int(lock.read_text())


def test_a_job_runs_in_the_worker_which_gets_only_the_environment_it_needs(home):
    done, log = run_job(home, WHERE, home / "where.json", MY_SECRET_TOKEN="hunter2", MPLCONFIGDIR=str(home))
    assert done.returncode == 0, (done.stderr, log)
    assert "own process" not in log, log
    seen = json.loads((home / "where.json").read_text())
    assert seen["ppid"] == worker_pid(home)  # the child's parent: the worker, not the job
    assert "MY_SECRET_TOKEN" not in seen["env"]
    assert {"MPLCONFIGDIR", "TMPDIR", "HOME", "PATH", client.IN_CHILD} <= set(seen["env"])
    directory = next(home.glob("mnist-sgd-*"))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    [sock] = directory.glob("worker-*.sock")
    assert stat.S_ISSOCK(sock.stat().st_mode)


def test_a_figure_drawn_in_the_worker_follows_the_jobs_own_matplotlib_settings(home):
    drawn = {}
    for colour in ("red", "blue"):
        config = home / f"mpl-{colour}"
        config.mkdir()
        (config / "matplotlibrc").write_text(f"figure.facecolor: {colour}\n")
        done, log = run_job(home, FIGURE, home / f"{colour}-worker.png", MPLCONFIGDIR=str(config))
        assert done.returncode == 0 and "own process" not in log, (done.stderr, log)
        alone = home / f"{colour}-alone.png"
        subprocess.run(
            [sys.executable, str(home / f"{colour}-worker.payload.py")],
            env=job_env(home, "", alone, MPLCONFIGDIR=str(config)),
            check=True,
        )
        drawn[colour] = (home / f"{colour}-worker.png").read_bytes()
        assert drawn[colour] == alone.read_bytes(), colour  # the worker draws as a process of its own
    assert drawn["red"] != drawn["blue"]


def test_the_worker_refuses_a_peer_of_another_user_and_a_job_a_listener_of_another_user(tmp_path, monkeypatch):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = tmp_path / "w.sock"
    listener.bind(str(path))
    listener.listen(1)
    other = os.getuid() + 1
    for side in (client, worker):  # as both ends see the other
        monkeypatch.setattr(side, "peer_credentials", lambda connection: (4242, other))
    # The job side: nothing sent to another user's listener, and the job goes on by itself.
    with pytest.raises(client.Unavailable, match=f"held by uid {other} .*nothing was sent"):
        client._submit({"script": "x"}, path)
    accepted, _ = listener.accept()
    accepted.settimeout(5)
    assert accepted.recv(100) == b""  # closed, and never a byte
    # The worker side: another user's connection is told so and closed; nothing runs.
    job, served = socket.socketpair()
    assert worker._own_user(served) is False
    assert job.recv(100).startswith(b"refused: it serves uid")


@pytest.mark.skipif(not ROOT, reason="needs root, to act as another user (setuid)")
def test_another_users_process_cannot_run_a_script_in_the_worker(home):
    run_job(home, WHERE, home / "warm.json")  # the worker is up
    directory = next(home.glob("mnist-sgd-*"))
    [sock] = directory.glob("worker-*.sock")
    marker = home / "ran-as-root"
    script = home / "evil.py"
    script.write_text(f"open({str(marker)!r}, 'w').write(str(__import__('os').getuid()))\n")
    # Open the door a crack, as a careless chmod would: the worker's own check must still hold.
    home.chmod(0o711)
    directory.chmod(0o711)
    sock.chmod(0o777)
    try:
        pid = os.fork()
        if pid == 0:  # another user now
            code = 1
            try:
                os.setuid(NOBODY)
                connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                connection.settimeout(10)
                connection.connect(str(sock))
                message = {"script": str(script), "log": "/tmp/evil.log", "cwd": "/tmp", "env": {}}
                try:
                    connection.sendall(json.dumps(message).encode() + b"\n")
                except BrokenPipeError:  # refused and closed already, as it connected
                    pass
                code = 3 if connection.makefile().readline().startswith("refused") else 4
            except BaseException as error:
                print(f"the other user's client: {error!r}", file=sys.stderr)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        directory.chmod(0o700)
        home.chmod(0o700)
    assert os.waitstatus_to_exitcode(status) == 3  # it connected, and was refused
    time.sleep(0.5)
    assert not marker.exists()
    assert f"refused a connection from uid {NOBODY}" in next(directory.glob("worker-*.log")).read_text()


@pytest.mark.skipif(not ROOT, reason="needs root, to act as another user (setuid)")
def test_a_job_sends_nothing_to_a_listener_of_another_user_and_succeeds_by_itself(home, monkeypatch):
    shared = home / "shared"
    shared.mkdir()
    home.chmod(0o711)
    shared.chmod(0o777)
    path, received = shared / "squat.sock", shared / "received"
    pid = os.fork()
    if pid == 0:  # another user listens where the job will connect
        try:
            os.setuid(NOBODY)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            listener.listen(1)
            listener.settimeout(30)
            connection, _ = listener.accept()
            data = b""
            while chunk := connection.recv(65536):
                data += chunk
            received.write_bytes(data)
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        monkeypatch.setattr(client, "socket_path", lambda: path)
        monkeypatch.setenv("MY_SECRET_TOKEN", "hunter2")
        monkeypatch.delenv(client.IN_CHILD, raising=False)
        monkeypatch.delenv("SLURM_JOB_ID", raising=False)
        assert client.delegate(str(shared / "script.py"), str(shared / "log")) is False  # runs it itself
    finally:
        os.waitpid(pid, 0)
        home.chmod(0o700)
    assert received.read_bytes() == b""


def test_a_request_whose_job_left_before_the_fork_runs_nothing(home):
    run_job(home, WHERE, home / "warm2.json")
    pid = worker_pid(home)
    [sock] = home.glob("mnist-sgd-*/worker-*.sock")
    marker = home / "should-not-run"
    script = home / "marker.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    os.kill(pid, signal.SIGSTOP)  # the request waits, unread, while its job gives up
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(str(sock))
        message = {"script": str(script), "log": str(home / "marker.log"), "cwd": str(home), "env": {}}
        connection.sendall(json.dumps(message).encode() + b"\n")
        connection.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(1.5)
    assert not marker.exists()
    done, log = run_job(home, WHERE, home / "after.json")  # and it serves the next job
    assert done.returncode == 0 and "own process" not in log, log


def test_a_stopped_worker_costs_a_job_only_the_reply_deadline(home):
    run_job(home, WHERE, home / "warm3.json")
    pid = worker_pid(home)
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        done, log = run_job(home, WHERE, home / "stopped.json", timeout=60, MNIST_SGD_TEST_REPLY="1")
        took = time.monotonic() - start
    finally:
        os.kill(pid, signal.SIGCONT)
    assert done.returncode == 0, (done.stderr, log)
    assert "did not take the job within 1" in log and "own process" in log, log
    assert json.loads((home / "stopped.json").read_text())["pid"] != pid
    assert took < 30, took  # generous: the job does its own work after the deadline, a Python start


def test_when_the_worker_dies_the_job_says_so_after_the_childs_own_words_and_the_child_dies(home):
    payload = home / "long.payload.py"
    out = home / "long.json"
    payload.write_text(WHERE + "import time\ntime.sleep(120)\n")
    env = job_env(home, payload, out)
    job = subprocess.Popen([sys.executable, str(home / "job.py")], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not out.exists() or not out.read_text():
            assert time.monotonic() < deadline and job.poll() is None
            time.sleep(0.05)
        child = json.loads(out.read_text())["pid"]
        os.kill(worker_pid(home), signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        job.kill()
    assert job.returncode == 1
    log = Path(env["MNIST_SGD_TEST_LOG"]).read_text()
    assert log.startswith("payload started\n"), log  # the job's last words did not overwrite the child's
    assert "died while its child ran this job's script" in log, log
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the child outlived its worker"
        time.sleep(0.05)


def test_a_lock_directory_that_is_not_this_users_alone_is_refused(tmp_path, monkeypatch):
    open_to_all = tmp_path / "open"
    open_to_all.mkdir(mode=0o777)
    open_to_all.chmod(0o1777)
    with pytest.raises(NotPrivate, match="open to other users"):
        claim_gpu(["GPU-a"], open_to_all)
    (tmp_path / "link").symlink_to(ensure_private(tmp_path / "mine"))
    with pytest.raises(NotPrivate, match="link"):
        claim_gpu(["GPU-a"], tmp_path / "link")
    theirs = ensure_private(tmp_path / "theirs")
    real_uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 1)  # as another user would see it
    with pytest.raises(NotPrivate, match=f"belongs to uid {real_uid}"):
        claim_gpu(["GPU-a"], theirs)


def test_a_stale_lock_is_taken_over_and_another_users_lock_is_ignored(tmp_path):
    locks = ensure_private(tmp_path / "locks")
    (locks / "GPU-a.lock").write_text("")  # left by a job that is gone: nobody holds it
    assert claim_gpu(["GPU-a"], locks) == 0
    if ROOT:
        foreign = locks / "GPU-b.lock"
        foreign.write_text("")
        os.chown(foreign, NOBODY, NOBODY)
        holder = subprocess.Popen(  # holds it, as another user's job would
            [
                sys.executable,
                "-c",
                f"import fcntl,os,sys;f=open({str(foreign)!r});fcntl.flock(f,2);print(1,flush=True);sys.stdin.read()",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout.readline() == "1\n"
            said = []
            assert claim_gpu(["GPU-b"], locks, log=said.append, poll_seconds=0.05) == 0
            assert said and f"belongs to uid {NOBODY}" in said[0]
        finally:
            holder.kill()
            holder.wait()
