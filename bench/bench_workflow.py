"""Wall time of the whole default study through Snakemake, from cached data, and cost per job.

    python bench/bench_workflow.py [--mnist ../shared/mnist] [--cores 2] [--keep DIR] [-- SNAKEMAKE ARGS]

Copies the workflow into a scratch folder, builds the data cache from the MNIST files in `--mnist`
(not timed), then times `snakemake --cores N all` (plus any arguments after `--`) and prints, per training job, the wall seconds and
peak resident memory Snakemake's `benchmark:` files recorded.
"""

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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

    print(f"{'training job':<52} {'seconds':>8} {'max RSS MB':>10}")
    for path in sorted((workdir / "results" / "benchmarks" / "train").rglob("*.tsv")):
        with path.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        run = f"{path.parent.name}/{path.stem}"
        print(f"{run:<52} {float(row['s']):8.2f} {float(row['max_rss']):10.0f}")
    print(f"snakemake --cores {args.cores} all {' '.join(args.extra)}, from cached data: {wall:.1f} s wall")
    if not args.keep:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
