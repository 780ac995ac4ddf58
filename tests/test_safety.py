"""Everyday gestures through the real CLI: no setting deletes a finished run, a damaged cache is never
trained on, a study of one's own, named targets, nested --config values, titles that are not markup."""

import re

import pandas as pd
import pytest
import torch
import yaml
from test_data import damage

from conftest import job_stats, make_workdir, snakemake, sweep

# A title a user could paste: reStructuredText that would be raw HTML in the report, and $...$ that
# matplotlib would parse as (bad) math.
HOSTILE = "Price $x_{$ (bad math)\n\n.. raw:: html\n\n   <script>alert('sweep')</script>\n"
SWEEPS = {"s": sweep(title=HOSTILE), "t": sweep(impl="torch", batch_sizes=[25], lr=0.05)}
COMPARISONS = {
    "c": {"title": "`x <javascript:alert('link')>`_ and <b>bold</b>", "runs": [{"sweep": "s"}, {"sweep": "t"}]}
}
RUNS = ["scratch/trainall_batch10_lr0.01_it40_seed0", "torch/trainall_batch25_lr0.05_it40_seed0"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A small study after `snakemake --cores 2 all`."""
    workdir = make_workdir(
        tmp_path_factory.mktemp("safety"), SWEEPS, {"formats": ["png"], "dpi": 40, "comparisons": COMPARISONS}
    )
    result = snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stdout
    return workdir


def finished_runs(workdir):
    """Every file of the finished runs RUNS, by path, with its bytes."""
    return {path: path.read_bytes() for run in RUNS for path in (workdir / "results" / "runs" / run).iterdir()}


def test_titles_from_the_config_are_drawn_as_written_and_are_text_in_the_report(workdir, tmp_path):
    assert snakemake(workdir, "--report", str(tmp_path / "report.html")).returncode == 0
    html = (tmp_path / "report.html").read_text()
    assert "alert(" in html  # the titles are there, as text
    assert not re.search(r"<script>\s*alert|alert\('sweep'\)</script|<a [^>]*javascript:|<b>bold", html)


@NO_CUDA
def test_a_device_setting_valid_or_refused_retrains_nothing_and_deletes_nothing(workdir):
    before = finished_runs(workdir)
    result = snakemake(workdir, "--cores", "2", "--keep-going", "--config", "device=cuda")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout, result.stdout
    assert "Nothing to be done" in snakemake(workdir, "-n", "--config", "device=cpu").stdout
    assert finished_runs(workdir) == before


@NO_CUDA
def test_a_new_run_its_job_refuses_leaves_every_finished_run_in_place(workdir):
    before = finished_runs(workdir)
    result = snakemake(
        workdir, "--cores", "2", "--keep-going", "--config", "device=cuda", "sweeps={s: {batch_sizes: [10, 20]}}"
    )  # a nested --config value, too
    assert result.returncode != 0
    assert "device='cuda': CUDA is not available here; use device=auto or device=cpu" in result.stdout
    assert job_stats(result.stdout)["train"] == 1, result.stdout
    assert finished_runs(workdir) == before
    assert not (workdir / "results" / "runs" / "scratch" / "trainall_batch20_lr0.01_it40_seed0").exists()


def test_evaluating_less_often_trains_new_runs_beside_the_finished_ones(workdir):
    before = finished_runs(workdir)
    result = snakemake(workdir, "--cores", "2", "--config", "eval_every=4")
    assert result.returncode == 0, result.stdout
    assert job_stats(result.stdout)["train"] == 2, result.stdout
    assert finished_runs(workdir) == before
    for run in RUNS:
        metrics = pd.read_csv(workdir / "results" / "runs" / f"{run}_every4" / "metrics.csv")
        assert metrics["test_accuracy"].notna().sum() == 11  # iterations 1, 5, ..., 37 and the last
    back = snakemake(workdir, "-n")  # back to every iteration: the finished runs are still current
    assert "train" not in job_stats(back.stdout), back.stdout


def test_a_damaged_cache_is_named_refused_and_rebuilt_by_the_first_job_that_needs_it(workdir):
    cache = workdir / "results" / "data" / "mnist.pt"
    before, original = finished_runs(workdir), cache.read_bytes()
    damage(cache)
    result = snakemake(workdir, "--cores", "2", "--config", "sweeps={s: {batch_sizes: [10, 30]}}")
    assert result.returncode == 0, result.stdout
    assert job_stats(result.stdout)["train"] == 1, result.stdout  # the new run only
    log = (workdir / "results" / "logs" / "train" / "scratch" / "trainall_batch30_lr0.01_it40_seed0.log").read_text()
    assert "results/data/mnist.pt: damaged data cache: its tensors hash to SHA-256" in log
    assert "refused it" in log and "rebuilding it from results/data/raw/train-images-idx3-ubyte" in log
    assert cache.read_bytes() == original and finished_runs(workdir) == before
    assert "Nothing to be done" in snakemake(workdir, "-n", "--config", "sweeps={s: {batch_sizes: [10, 30]}}").stdout


def test_a_config_file_of_ones_own_replaces_the_study_or_is_said_to_add_to_it(workdir, tmp_path):
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    own = {key: config[key] for key in ("data_mirror", "mirrors", "data_sha256")}
    own["sweeps"] = {"mine": sweep(train_sizes=[50], batch_sizes=[5], iterations=20)}
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(own))
    replaced = snakemake(workdir, "-n", "--configfile", str(tmp_path / "own.yaml"), "--replace-workflow-config")
    assert replaced.returncode == 0, replaced.stdout
    assert job_stats(replaced.stdout) == {
        "train": 1,
        "optimum": 1,
        "plot_run": 1,
        "plot_group": 1,
        "plot_noise_scale": 1,
        "summarize": 1,
        "plot_wall_time": 1,
        "all": 1,
    }, replaced.stdout
    added = snakemake(workdir, "-n", "--configfile", str(tmp_path / "own.yaml"))
    assert (
        "config/config.yaml's sweeps ['s', 't'] run too; to run only the sweeps of your config file, "
        "add --replace-workflow-config" in added.stdout
    ), added.stdout


def test_each_sweep_and_comparison_is_a_target_of_its_own(tmp_path):
    workdir = make_workdir(tmp_path, SWEEPS, {"formats": ["png"], "comparisons": COMPARISONS})
    data = {"download_mnist": 1, "format_mnist": 1}
    sweep = snakemake(workdir, "-n", "s")
    figures = {"optimum": 1, "plot_group": 1, "plot_noise_scale": 1}  # the runs all use the same training set
    assert job_stats(sweep.stdout) == {**data, "train": 1, "plot_run": 1, **figures, "s": 1}, sweep.stdout
    comparison = snakemake(workdir, "-n", "c")
    assert job_stats(comparison.stdout) == {**data, "train": 2, "plot_run": 2, **figures, "c": 1}
    clash = make_workdir(tmp_path / "clash", {"train": SWEEPS["s"]})
    result = snakemake(clash, "-n")
    assert result.returncode != 0
    assert "config error: 'train' names a sweep or comparison and a rule of the workflow" in result.stdout


def test_a_bigger_sweeps_own_run_figures_are_drawn_only_when_asked_for(tmp_path):
    sweeps = {"big": sweep(batch_sizes=[10, 20, 30]), "small": sweep(batch_sizes=[5])}
    workdir = make_workdir(tmp_path, sweeps, {"formats": ["png"], "run_figures": 2})
    plan = job_stats(snakemake(workdir, "-n", "all").stdout)
    assert plan["train"] == 4 and plan["plot_run"] == 1 and plan["plot_group"] == 2, plan  # small's run only
    assert job_stats(snakemake(workdir, "-n", "big").stdout).get("plot_run") is None
    asked = snakemake(workdir, "-n", "results/figures/runs/scratch/trainall_batch20_lr0.01_it40_seed0.png")
    assert job_stats(asked.stdout)["plot_run"] == 1, asked.stdout


@pytest.mark.parametrize(
    "override, in_a_file",
    [
        ("figures={dpi: 300}", {"figures": {"dpi": 300}}),
        (
            "figures={smoothing: 7, comparisons: {c: {runs: [{sweep: s, batch_size: 10}]}}}",
            {"figures": {"smoothing": 7, "comparisons": {"c": {"runs": [{"sweep": "s", "batch_size": 10}]}}}},
        ),
    ],
    ids=["dpi", "smoothing-and-a-comparison"],
)
def test_nested_command_line_values_are_read_as_in_a_config_file(workdir, tmp_path, override, in_a_file):
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(in_a_file))
    from_file = snakemake(workdir, "-n", "--configfile", str(tmp_path / "override.yaml"))
    from_command_line = snakemake(workdir, "-n", "--config", override)
    assert from_command_line.returncode == 0, from_command_line.stdout
    assert job_stats(from_command_line.stdout) == job_stats(from_file.stdout)
    assert "plot_group" in job_stats(from_file.stdout)


def test_a_bad_nested_command_line_value_is_refused_by_name(workdir):
    result = snakemake(workdir, "-n", "--config", "figures={dpi: many}")
    assert result.returncode != 0 and "'many' is not of type 'integer'" in result.stdout, result.stdout
