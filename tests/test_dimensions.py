"""The study's further dimensions end to end through the `snakemake` CLI: seeds aggregated, learning-rate
grids with a diverging learning rate in them."""

import pandas as pd
import pytest
import yaml

from conftest import job_stats, make_workdir, snakemake, sweep

LRS = [0.01, 0.05, 50.0]  # 50 diverges on the small data
SEEDS = [0, 1, 2]
SWEEPS = {"grid": sweep(title="Grid", batch_sizes=[10], lr=LRS, seeds=SEEDS)}


@pytest.fixture(scope="module")
def completed(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("dimensions"), SWEEPS)
    result = snakemake(workdir, "--cores", "2", "all")  # no --keep-going: divergence is an outcome
    assert result.returncode == 0, result.stdout
    return workdir


def run(lr, seed):
    return f"scratch/trainall_batch10_lr{lr!r}_it40_seed{seed}"


def test_a_learning_rate_grid_with_seeds_trains_one_run_each_and_a_divergence_does_not_stop_it(completed):
    summary = pd.read_csv(completed / "results" / "summary.csv")
    assert summary["run"].tolist() == [run(lr, seed) for lr in LRS for seed in SEEDS]
    assert summary["lr"].tolist() == [lr for lr in LRS for _ in SEEDS]
    assert (summary["status"] == "diverged").tolist() == [lr == 50.0 for lr in LRS for _ in SEEDS]
    assert (summary["dataset"] == "mnist").all() and (summary["sampling"] == "with_replacement").all()
    figures = completed / "results" / "figures" / "grid"
    for kind in ("curves", "final_accuracy", "learning_rate"):
        assert (figures / f"{kind}.png").read_bytes()[:4] == b"\x89PNG"


def test_summary_by_config_aggregates_each_configurations_seeds(completed):
    summary = pd.read_csv(completed / "results" / "summary.csv")
    by_config = pd.read_csv(completed / "results" / "summary_by_config.csv")
    assert by_config["configuration"].tolist() == [f"scratch/trainall_batch10_lr{lr!r}_it40" for lr in LRS]
    assert by_config["n_seeds"].tolist() == [3, 3, 3] and by_config["n_diverged"].tolist() == [0, 0, 3]
    assert set(by_config.columns) >= {"dataset", "impl", "train_size", "batch_size", "lr", "iterations", "sweeps"}
    for row, lr in zip(by_config.itertuples(), LRS):
        runs = summary[summary["lr"] == lr]
        for metric in ("final_test_accuracy", "best_test_accuracy", "wall_seconds"):
            values = runs[metric]
            assert getattr(row, f"{metric}_mean") == pytest.approx(values.mean())
            assert getattr(row, f"{metric}_std") == pytest.approx(values.std(ddof=1))
            assert getattr(row, f"{metric}_min") == values.min() and getattr(row, f"{metric}_max") == values.max()
    assert by_config["final_train_loss_mean"].isna().tolist() == [False, False, True]  # no finite final loss
    assert (completed / "results" / "summary_by_config.html").read_text().count("<tr") == 1 + 3  # header, rows


def test_adding_a_seed_trains_exactly_the_new_runs_and_redraws_what_holds_them(completed, tmp_path):
    config = yaml.safe_load((completed / "config" / "config.yaml").read_text())
    config["sweeps"]["grid"]["seeds"] = SEEDS + [3]
    (tmp_path / "more.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(completed, "-n", "--configfile", str(tmp_path / "more.yaml"))
    assert result.returncode == 0, result.stdout
    new = {"train": 3, "plot_run": 3, "plot_model": 3}  # one per learning rate
    figures = {"plot_group": 1, "plot_learning_rate": 1, "summarize": 1, "plot_wall_time": 1, "all": 1}
    assert job_stats(result.stdout) == {**new, **figures}


def test_the_report_shows_the_learning_rate_figure_and_the_table_by_configuration(completed, tmp_path):
    assert snakemake(completed, "--report", str(tmp_path / "report.html")).returncode == 0
    html = (tmp_path / "report.html").read_text()
    assert "Grid: final test accuracy against the learning rate" in html
    assert "One row per configuration: the runs that differ only in their seed" in html
