"""The `snakemake` CLI for the tests, without paying for its start each call.

`python -m snakemake` spends about 0.9 s of CPU (2-core AMD EPYC) importing Snakemake and its plugins
before it reads a Snakefile, and the suite calls it about 150 times. Here one process per test process
imports them once; for each call it forks a child that runs `snakemake.cli.main()` on the call's
arguments, in the call's folder and environment, with its output in a file: what `python -m snakemake`
runs after its imports. Each child starts from the same state, with nothing of this project imported
before the call's Snakefile imports it. Tests that signal or watch Snakemake's own process start it with
`subprocess` instead.
"""

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import traceback

TESTS = os.path.dirname(os.path.abspath(__file__))


def serve():
    """The forking process: import Snakemake, then for each request on stdin (a JSON line) fork a child,
    reply with its pid, wait for it, and reply with its exit status."""
    sys.path.remove(TESTS)  # as in `python -m snakemake`, the working folder comes first (see _child)
    import smart_open  # noqa: F401  (Snakemake's source cache imports it on first use)
    from snakemake.cli import get_argument_parser

    get_argument_parser()  # collects (imports) the executor, storage, report and logger plugins
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        replies.write(f"{pid}\n".encode())
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(f"{os.waitstatus_to_exitcode(status)}\n".encode())
        replies.flush()


def _child(request):
    """Become `snakemake <args>` in the request's folder and environment, writing to its output file."""
    code = 1
    try:
        os.setsid()  # a process group of its own: a timeout kills it with its jobs
        output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [os.path.join(os.path.dirname(sys.modules["snakemake"].__file__), "__main__.py"), *request["args"]]
        sys.path[0] = request["cwd"]
        from snakemake.cli import main

        main()
    except SystemExit as end:  # as Python ends on it: the status, or the message and 1
        if isinstance(end.code, int) or end.code is None:
            code = end.code or 0
        else:
            print(end.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # what a process's normal end runs (logging's shutdown among them)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class Snakemake:
    """The client: one forking process, started on the first call."""

    def __init__(self):
        self.process = None

    def run(self, workdir, args, output, timeout):
        """Exit status of `snakemake <args>` in `workdir`, its output (stdout and stderr) in file `output`;
        124 if it ran past `timeout` seconds (then it and its jobs are killed), as `timeout` says."""
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    f"import sys; sys.path.insert(0, {TESTS!r}); import snakemake_fork; snakemake_fork.serve()",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
            )
        request = {"cwd": str(workdir), "args": [str(a) for a in args], "env": dict(os.environ), "output": str(output)}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        pid = int(self._line(timeout=60))
        try:
            return int(self._line(timeout))
        except TimeoutError:
            os.killpg(pid, signal.SIGKILL)
            self._line(timeout=60)
            return 124

    def _line(self, timeout):
        line = b""
        while not line.endswith(b"\n"):
            if not select.select([self.process.stdout], [], [], timeout)[0]:
                raise TimeoutError
            chunk = self.process.stdout.read(1)
            if not chunk:
                raise RuntimeError(f"the forking snakemake process ended (exit status {self.process.wait()})")
            line += chunk
        return line.decode()
