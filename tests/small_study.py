"""The small study most end-to-end modules test: three sweeps (five runs) on a small MNIST the tests write,
run once per test session by `snakemake --cores 2 all`, and the helpers that ask it what a change plans."""

import pytest
import yaml

from conftest import built_once, copy_of, job_stats, make_workdir, snakemake, sweep

RUNS = [
    "scratch/trainall_batch1_lr0.01_it40_seed0",
    "scratch/trainall_batch10_lr0.01_it40_seed0",
    "scratch/train50_batch50_lr0.01_it40_seed0",
    "scratch/train100_batch100_lr0.01_it40_seed0",
    "torch/trainall_batch25_lr0.05_it40_seed1",
]


GROUPS = ("batch_size", "train_size", "torch_optim")
SWEEPS = {
    "batch_size": sweep(title="Batch sizes", batch_sizes=[1, 10]),
    "train_size": sweep(title="Subsets", train_sizes=[50, 100], batch_sizes=["train_size"]),
    "torch_optim": sweep(impl="torch", batch_sizes=[25], lr=0.05, seeds=[1]),
}


def build(folder):
    """A copy of the workflow on a small MNIST mirror, after `snakemake --cores 2 all`; its log."""
    make_workdir(folder, SWEEPS, {"formats": ["png", "svg"], "dpi": 40})
    result = snakemake(folder, "--cores", "2", "all")
    assert result.returncode == 0, result.stdout
    return result.stdout


@pytest.fixture(scope="module")
def completed(tmp_path_factory):
    """(folder, log): the module's own copy of the completed small study (built once per session)."""
    folder, log = built_once(tmp_path_factory, "small_study", build)
    return copy_of(folder, tmp_path_factory.mktemp("small_study") / "workflow"), log


def planned_jobs(workdir, config, tmp_path):
    """Jobs per rule that `snakemake -n` schedules on the completed run under `config`."""
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(workdir, "-n", "--configfile", str(path))
    assert result.returncode == 0, result.stdout
    return job_stats(result.stdout)


def changed_config(workdir, change):
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    change(config)
    return config
