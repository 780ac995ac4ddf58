"""Wall time of the whole default study through Snakemake, from cached data, and cost per job.

    python bench/bench_workflow.py [--mnist ../shared/mnist] [--cores 2] [--keep DIR] [-- SNAKEMAKE ARGS]

Copies the workflow into a scratch folder, builds the data cache from the MNIST files in `--mnist`
(not timed), then times `snakemake --cores N all` (plus any arguments after `--`) and prints, per training job, the
wall seconds Snakemake's `benchmark:` files recorded and the peak resident memory its run.json records, beside the cost model's
estimate (mnist_sgd.study.cost.estimated_seconds, which orders the jobs), and how close the wall time is to
the schedule's floor: the larger of the jobs' seconds over the cores and the longest job.
"""

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
from mnist_sgd.execution.host import usable_cpus  # noqa: E402
from mnist_sgd.study.cost import estimated_seconds  # noqa: E402
from mnist_sgd.study.packs import PLAN_FILE, pack_seconds, read_plan  # noqa: E402
from mnist_sgd.study.records import RunInfo, cpu_name  # noqa: E402

WORKFLOW_PARTS = ["Snakefile", "workflow", "config", "envs", "profiles"]


def copy_workflow(destination):
    """Copy the workflow (not its results) into `destination`, replacing the parts an earlier copy left."""
    destination.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        source, target = REPO / part, destination / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)


def snakemake(workdir, *args):
    command = [sys.executable, "-m", "snakemake", *args]
    result = subprocess.run(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed:\n{result.stdout[-4000:]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mnist", default=str(REPO.parent / "shared" / "mnist"), help="folder with the MNIST IDX files"
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder)")
    parser.add_argument("extra", nargs="*", help="more snakemake arguments, after --")
    args = parser.parse_args(argv)

    workdir = Path(args.keep or tempfile.mkdtemp(prefix="bench-workflow-"))
    copy_workflow(workdir)
    mirror = f"data_mirror={Path(args.mnist).resolve()}"
    snakemake(workdir, "--cores", str(args.cores), "results/data/mnist.pt", "--config", mirror)
    start = time.perf_counter()
    snakemake(workdir, "--cores", str(args.cores), "all", "--config", mirror, *args.extra)
    wall = time.perf_counter() - start

    seconds = {}
    # Each training job's seconds (its benchmark file), then the trainer's own for each of its runs
    # (run.json): its setup (the pack loads the data once, before its runs: the job's seconds hold
    # it), then the training loop; on a GPU the difference is mostly the CUDA context.
    print(
        f"{'training job (pack) / run':<52} {'seconds':>8} {'estimate':>8} {'max RSS MB':>10} {'setup s':>8} {'train s':>8}  device"
    )
    packs = {pack.name: pack for pack in read_plan(workdir / PLAN_FILE)}
    for path in sorted((workdir / "results" / "benchmarks" / "train" / "packs").glob("*.tsv")):
        with path.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        pack = packs[path.stem]
        seconds[pack.name] = float(row["s"])
        print(f"{pack.name:<52} {seconds[pack.name]:8.2f} {pack_seconds(pack.runs, {'mnist': 60000}):8.1f}")
        for run in pack.runs:
            # The trainer's own peak (run.json): the job's process only waits for the worker's child.
            info = RunInfo.read(workdir / "results" / "runs" / run / "run.json")  # checked: DamagedRecord if not whole
            device = info.resolved.device + (" (CUDA graphs)" if info.resolved.cuda_graphs else "")
            print(
                f"  {run:<50} {'':8} {estimated_seconds(run):8.1f} {info.peak_rss_mb:10.0f} "
                f"{info.setup_seconds:8.2f} {info.wall_seconds:8.2f}  {device}"
            )
    # What the noise scales cost: each run's measurements, and each training set's curvature (optimum jobs).
    infos = [RunInfo.read(p) for p in (workdir / "results" / "runs").rglob("run.json")]
    optima = [json.loads(p.read_text()) for p in (workdir / "results" / "optimum").glob("*.json")]
    measuring = sum(info.noise_seconds or 0 for info in infos)
    curvature = sum(optimum.get("curvature_seconds") or 0 for optimum in optima)
    training = sum(info.wall_seconds for info in infos) - measuring
    print(
        f"noise scales: {measuring:.1f} s measuring in the runs + {curvature:.1f} s of training-set curvature "
        f"in the optimum jobs = {100 * (measuring + curvature) / training:.1f}% of the runs' {training:.1f} s of training"
    )
    # The schedule's floor: no schedule beats the training jobs' own seconds spread over every core it
    # may use (no more than the machine's CPUs), nor the longest job.
    cores = min(args.cores, usable_cpus())
    floor = max(sum(seconds.values()) / cores, max(seconds.values()))
    print(
        f"training jobs' seconds / {cores} cores: {sum(seconds.values()) / cores:.1f} s; "
        f"longest job: {max(seconds.values()):.1f} s; so the floor: {floor:.1f} s"
    )
    print(
        f"snakemake --cores {args.cores} all {' '.join(args.extra)}, from cached data, on {cpu_name()}: "
        f"{wall:.1f} s wall, {wall / floor:.2f}x the floor"
    )
    if not args.keep:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
