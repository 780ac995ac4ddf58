"""Packs: the training jobs. A pack is one Snakemake job (one process, one SLURM job) that trains several
runs one after the other on data it loads once; each run's records are still its own files, with the
same bytes as that run trained alone (each run starts from its own seed: nothing passes between runs).

Planning packs only the runs whose records are missing (set aside as damaged or outdated included): a
finished run is a file no rule makes, so adding a seed, an lr or a batch size packs only the new runs.
Runs are packed with those that differ from them only in lr and seed (`pack_key`), in (seed, lr) order,
up to about `pack_seconds` of estimated training a pack.

A pack's outputs are all its runs' records, and Snakemake deletes a failed job's outputs: so each run,
once written, is also hard-linked into `results/packs/done/<run>/` (`keep_finished`), from where the
next planning puts back the runs a killed or failed pack had finished (`restore_finished`).
"""

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .cost import COST_SECONDS, estimated_seconds, reads_kernel_table, table_pays
from .files import write_text_atomic
from .layout import RUN_RECORDS, run_records
from .runs import parse_run, run_config

PACKS_DIR = "results/packs"
# Where a pack keeps the runs it finished until it ends (see the module's docstring).
DONE_DIR = f"{PACKS_DIR}/done"
# The packs the last planning made, for the cluster jobs, whose Snakemake reads the Snakefile again
# and must define the same rules (finished runs, meanwhile, would change what is pending).
PLAN_FILE = f"{PACKS_DIR}/plan.json"
# A pack rule's name: a sweep's name (letters, digits and underscores) can never be one.
PACK_PREFIX = "train-"


@dataclass(frozen=True)
class Pack:
    """One training job: its rule's name, its runs in the order it trains them, and why each trains
    (its records are missing, or were found damaged or outdated: a rule parameter, so that a dry run
    shows a pack whose untrusted records are still in place as one to run)."""

    name: str
    runs: tuple
    reasons: tuple
    kernel: bool = False  # whether its runs read their data set's kernel table (mnist_sgd.data.kernel)

    @property
    def dataset(self):
        """The data set all its runs train on."""
        return parse_run(self.runs[0])["dataset"]


def pack_key(run):
    """What the runs of one pack share: everything in the run's name but its lr and seed."""
    params = parse_run(run)
    return tuple((name, value) for name, value in sorted(params.items()) if name not in ("lr", "seed"))


def _order(run):
    params = parse_run(run)
    return int(params["seed"]), float(params["lr"])


def pack_seconds(runs, num_train, kernel=False):
    """The estimated seconds of a pack of `runs` (`num_train`: {data set: training images}; `kernel`:
    whether they read the kernel table): one start-up, then each run's training."""
    start = COST_SECONDS["start"]
    return start + sum(estimated_seconds(run, _images(num_train, run), kernel) - start for run in runs)


def _images(num_train, run):
    """The training images of run `run`'s data set, from `num_train` (MNIST's 60000 where unknown)."""
    return num_train[parse_run(run)["dataset"]] or 60000


def reads_table(run, num_train):
    """Whether run `run` would read its data set's kernel table, on the CPU (mnist_sgd.study.cost)."""
    config = run_config(run)
    return reads_kernel_table(config, config.train_size or _images(num_train, run))


def plan_packs(reasons, num_train, seconds, cpu=True, table="auto"):
    """The packs that train the runs of `reasons` ({run: why it trains}): runs of one `pack_key`
    together, in (seed, lr) order, in as few packs of about equal size as keep each pack's estimated
    training within `seconds` (a pack holds one run at least). The runs of a pack key cost the same
    (the estimate does not depend on lr or seed). Where they may train on the `cpu`, the runs that can
    read their data set's kernel table do: with `table` "auto", if it saves them more than it costs
    (cost.table_pays); "always"; or "never"."""
    readers = {}
    for run in reasons:
        if cpu and reads_table(run, num_train):
            readers.setdefault(parse_run(run)["dataset"], []).append(run)
    tables = {
        dataset: table == "always" or (table == "auto" and table_pays(runs, _images(num_train, runs[0])))
        for dataset, runs in readers.items()
    }
    groups = {}
    for run in reasons:
        groups.setdefault(pack_key(run), []).append(run)
    packs = []
    for members in groups.values():
        members.sort(key=_order)
        kernel = tables.get(parse_run(members[0])["dataset"], False) and reads_table(members[0], num_train)
        cost = pack_seconds(members[:1], num_train, kernel) - COST_SECONDS["start"]
        count = min(len(members), max(1, math.ceil(len(members) * cost / seconds)))
        size, extra = divmod(len(members), count)
        start = 0
        for i in range(count):
            end = start + size + (i < extra)
            packs.append(_pack(members[start:end], reasons, kernel))
            start = end
    return packs


def _pack(runs, reasons, kernel):
    digest = hashlib.sha256("\n".join(runs).encode()).hexdigest()[:12]
    return Pack(f"{PACK_PREFIX}{digest}", tuple(runs), tuple(reasons[run] for run in runs), kernel)


def pending_runs(runs):
    """The runs of `runs` whose records are not all there: what the packs train."""
    return [run for run in runs if not all(map(os.path.exists, run_records([run], optima=False)))]


def write_plan(packs, path=PLAN_FILE):
    """Save `packs` for the cluster jobs (read_plan), atomically, beside those of an earlier planning
    that still have runs to train (another Snakemake's in this folder, whose jobs may still run)."""
    plan = {name: pack for name, pack in _read(path).items() if pending_runs(pack["runs"])}
    plan.update(
        {pack.name: {"runs": list(pack.runs), "reasons": list(pack.reasons), "kernel": pack.kernel} for pack in packs}
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(plan, indent=1) + "\n")


def _read(path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


def read_plan(path=PLAN_FILE):
    """The packs the submitting Snakemake planned (write_plan)."""
    return [
        Pack(name, tuple(pack["runs"]), tuple(pack["reasons"]), pack.get("kernel", False))
        for name, pack in _read(path).items()
    ]


def keep_finished(run, files):
    """Hard-link the records `files` of `run`, just written, into the side store, so that they
    outlive their pack's failure (Snakemake then deletes all its outputs)."""
    store = Path(DONE_DIR) / run
    for file in files:
        kept = store / Path(file).name
        for attempt in range(3):  # another pack's forget_finished may remove an empty folder meanwhile
            store.mkdir(parents=True, exist_ok=True)
            kept.unlink(missing_ok=True)
            try:
                _link(file, kept)
                break
            except FileNotFoundError:
                if attempt == 2 or not os.path.exists(file):
                    raise


def _link(source, target):
    """Hard-link `source` as `target`; copy it where the file system has no hard links."""
    try:
        os.link(source, target)
    except FileNotFoundError:
        raise
    except OSError:  # EPERM, EXDEV, ENOTSUP: some network and FUSE file systems
        shutil.copy2(source, target)


def forget_finished(runs):
    """Empty the side store of `runs`, and remove the folders that leaves empty: their pack ended well,
    and Snakemake keeps their records."""
    done = Path(DONE_DIR)
    for run in runs:
        shutil.rmtree(done / run, ignore_errors=True)
        folder = (done / run).parent
        while folder != done.parent:
            try:
                folder.rmdir()
            except OSError:  # not empty (another pack's runs), or gone
                break
            folder = folder.parent


def restore_finished(log=print):
    """Put back the records of every run a failed or killed pack had finished, where they are gone,
    and empty the side store. Planning checks them next, as every record (records.untrusted_run)."""
    done = Path(DONE_DIR)
    if not done.is_dir():
        return
    for info in sorted(done.rglob("run.json")):
        store = info.parent
        run = store.relative_to(done).as_posix()
        folder = Path("results/runs") / run
        kept = [store / name for name in RUN_RECORDS]
        if all(path.exists() for path in kept) and not all((folder / name).exists() for name in RUN_RECORDS):
            folder.mkdir(parents=True, exist_ok=True)
            for path in kept:
                target = folder / path.name
                staged = folder / f".{path.name}.restored"
                staged.unlink(missing_ok=True)
                _link(path, staged)
                os.replace(staged, target)
            log(f"restored {run}: its pack had finished it before it stopped")
    shutil.rmtree(done, ignore_errors=True)
