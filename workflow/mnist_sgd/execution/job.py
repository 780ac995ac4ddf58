"""The start that every rule script (workflow/scripts/*.py) shares: its log, then the warm worker."""

import os
import sys

from .client import IN_CHILD, delegate


def start_job(snakemake):
    """Send this job's stderr to its log, and run its script in the warm worker where it can
    (mnist_sgd.execution.worker): exit when it ran there, return where the script must go on in this process.

    The log is emptied once, by the job, then only appended to, by the job and its child in the worker
    alike: the job's last words (a failure, a worker that died) follow the child's, never overwrite them."""
    log = snakemake.log[0]
    if not os.environ.get(IN_CHILD):
        open(log, "w").close()
    sys.stderr = open(log, "a", buffering=1)
    if delegate(sys.argv[0], log, snakemake.config["worker"]):
        sys.exit(0)  # the worker's child ran this script
