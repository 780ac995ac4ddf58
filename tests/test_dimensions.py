"""The study's further dimensions end to end through the `snakemake` CLI: seeds aggregated, a learning-rate
grid with a diverging learning rate in it, and two data sets side by side in one results folder."""

import gzip
import hashlib
import struct

import pandas as pd
import pytest
import yaml

from conftest import job_stats, make_workdir, snakemake, sweep, write_small_mnist

LRS = [0.01, 50.0]  # 50 diverges on the small data
SEEDS = [0, 1, 2]
DATASETS = ["mnist", "fashion-mnist"]


def grid(datasets):
    return {"grid": sweep(title="Grid", batch_sizes=[10], lr=LRS, seeds=SEEDS, datasets=datasets)}


def run(dataset, lr, seed):
    folder = "" if dataset == "mnist" else f"{dataset}/"
    return f"{folder}scratch/trainall_batch10_lr{lr!r}_it40_seed{seed}"


RUNS = [run(dataset, lr, seed) for dataset in DATASETS for lr in LRS for seed in SEEDS]


def fingerprints(results):
    """(content digest, mtime) of every file of every run, by path."""
    return {
        path.relative_to(results).as_posix(): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in (results / "runs").rglob("*")
        if path.is_file()
    }


@pytest.fixture(scope="module")
def completed(tmp_path_factory):
    """The grid on MNIST alone, then with Fashion-MNIST added: (workdir, MNIST's files before and after)."""
    workdir = make_workdir(tmp_path_factory.mktemp("dimensions"), grid(["mnist"]), datasets=DATASETS)
    first = snakemake(workdir, "--cores", "2", "all")  # no --keep-going: divergence is an outcome
    assert first.returncode == 0, first.stdout
    before = fingerprints(workdir / "results")
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["sweeps"] = grid(DATASETS)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    second = snakemake(workdir, "--cores", "2", "all")
    assert second.returncode == 0, second.stdout
    assert job_stats(second.stdout)["train"] == 6, second.stdout  # Fashion-MNIST's runs, no other
    return workdir, before, fingerprints(workdir / "results")


def test_a_second_data_set_trains_beside_the_first_and_changes_none_of_its_files(completed):
    workdir, before, after = completed
    assert before and all(path.startswith("runs/scratch/") for path in before)
    assert {path: after[path] for path in before} == before  # same bytes, not even rewritten
    assert sorted(set(after) - set(before)) == sorted(
        f"runs/{r}/{name}" for r in RUNS[6:] for name in ("metrics.csv", "run.json", "weights.npy")
    )
    results = workdir / "results"
    assert (results / "data" / "mnist.pt").exists() and (results / "data" / "fashion-mnist.pt").exists()
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        mnist, fashion = (results / "data" / "raw" / name), (results / "data" / "raw" / "fashion-mnist" / name)
        assert mnist.read_bytes() != fashion.read_bytes()  # each data set's own files
    assert (results / "optimum" / "trainall.json").exists()
    assert (results / "optimum" / "fashion-mnist" / "trainall.json").exists()


def test_a_learning_rate_grid_with_seeds_and_data_sets_trains_one_run_each_and_a_divergence_does_not_stop_it(
    completed,
):
    workdir, _, _ = completed
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    assert summary["run"].tolist() == RUNS
    assert summary["dataset"].tolist() == [d for d in DATASETS for _ in LRS for _ in SEEDS]
    assert summary["lr"].tolist() == [lr for _ in DATASETS for lr in LRS for _ in SEEDS]
    assert (summary["status"] == "diverged").tolist() == [lr == 50.0 for _ in DATASETS for lr in LRS for _ in SEEDS]
    assert (summary["sampling"] == "with_replacement").all()
    assert summary.loc[summary["status"] == "ok", "final_test_accuracy"].min() > 0.5  # both are learnable
    figures = workdir / "results" / "figures"
    for kind in ("curves", "final_accuracy", "learning_rate"):
        assert (figures / "grid" / f"{kind}.png").read_bytes()[:4] == b"\x89PNG"
    for name in ("", "/weights", "/confusion"):
        assert (figures / "runs" / f"{RUNS[-1]}{name}.png").exists()


def test_summary_by_config_aggregates_each_configurations_seeds(completed):
    workdir, _, _ = completed
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    by_config = pd.read_csv(workdir / "results" / "summary_by_config.csv")
    assert by_config["configuration"].tolist() == [r.replace("_seed0", "") for r in RUNS[::3]]
    assert by_config["dataset"].tolist() == ["mnist", "mnist", "fashion-mnist", "fashion-mnist"]
    assert by_config["n_seeds"].tolist() == [3] * 4 and by_config["n_diverged"].tolist() == [0, 3, 0, 3]
    assert set(by_config.columns) >= {"impl", "train_size", "batch_size", "lr", "iterations", "sweeps"}
    for row in by_config.itertuples():
        runs = summary[(summary["lr"] == row.lr) & (summary["dataset"] == row.dataset)]
        for metric in ("final_test_accuracy", "best_test_accuracy", "wall_seconds"):
            values = runs[metric]
            assert getattr(row, f"{metric}_mean") == pytest.approx(values.mean())
            assert getattr(row, f"{metric}_std") == pytest.approx(values.std(ddof=1))
            assert getattr(row, f"{metric}_min") == values.min() and getattr(row, f"{metric}_max") == values.max()
    assert by_config["final_train_loss_mean"].isna().tolist() == [False, True, False, True]  # no finite final loss
    assert (workdir / "results" / "summary_by_config.html").read_text().count("<tr") == 1 + 4  # header, rows


def test_adding_a_seed_trains_exactly_the_new_runs_and_redraws_what_holds_them(completed, tmp_path):
    workdir, _, _ = completed
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["sweeps"]["grid"]["seeds"] = SEEDS + [3]
    (tmp_path / "more.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n", "--configfile", str(tmp_path / "more.yaml"))
    assert result.returncode == 0, result.stdout
    new = {"train": 4, "plot_run": 4}  # one per learning rate and data set
    figures = {"plot_group": 1, "plot_learning_rate": 1, "plot_noise_scale": 1, "summarize": 1, "plot_wall_time": 1}
    assert job_stats(result.stdout) == {**new, **figures, "all": 1}


def test_the_report_names_the_data_sets_and_shows_the_new_figure_and_table(completed, tmp_path):
    workdir, _, _ = completed
    assert snakemake(workdir, "--report", str(tmp_path / "report.html")).returncode == 0
    html = (tmp_path / "report.html").read_text()
    assert "Grid: final test accuracy against the learning rate" in html
    assert "One row per configuration: the runs that differ only in their seed" in html
    assert "SGD on data set fashion-mnist," in html and "SGD on data set mnist," in html  # the run captions


def test_a_custom_data_set_is_declared_once_trained_like_a_built_in_one_and_checked(tmp_path):
    workdir = make_workdir(tmp_path, {"mine": sweep(datasets=["mydigits"], train_sizes=[50, "all"])})
    sha256 = write_small_mnist(tmp_path / "mydigits", other=True, compress=False)
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["custom_datasets"] = {"mydigits": {"path": str(tmp_path / "mydigits"), "sha256": sha256}}
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stdout
    runs = ["mydigits/scratch/train50_batch10_lr0.01_it40_seed0", "mydigits/scratch/trainall_batch10_lr0.01_it40_seed0"]
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    assert summary["run"].tolist() == runs and (summary["dataset"] == "mydigits").all()
    assert (workdir / "results" / "optimum" / "mydigits" / "train50_seed0.json").exists()
    log = (workdir / "results" / "logs" / "download_mnist" / "mydigits" / "idx_files.log").read_text()
    assert f"from {tmp_path / 'mydigits' / 't10k-labels-idx1-ubyte'}" in log
    # A changed byte in the custom folder is refused, naming the file and what it should hash to.
    (tmp_path / "mydigits" / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\x01\x07")
    raw = workdir / "results" / "data" / "raw" / "mydigits" / "t10k-labels-idx1-ubyte"
    raw.unlink()
    result = snakemake(workdir, "--cores", "1", str(raw.relative_to(workdir)))
    assert result.returncode != 0
    assert "no verified copy of mydigits file 't10k-labels-idx1-ubyte' found" in result.stdout
    assert "SHA-256 of the content is" in result.stdout and sha256["t10k-labels-idx1-ubyte"] in result.stdout
    assert "custom_datasets.mydigits.path" in result.stdout  # where its files go (no mirror has them)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_planning_knows_a_custom_data_sets_size_before_its_first_download(tmp_path, compress):
    """Its files are local: planning reads the images file's header, so a plan that could not be run is
    refused at once, and the plan never changes after the download."""
    workdir = make_workdir(tmp_path, {"mine": sweep(datasets=["mydigits"], train_sizes=["all", 120, 150])})
    sha256 = write_small_mnist(tmp_path / "mydigits", num_train=120, other=True, compress=compress)
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["custom_datasets"] = {"mydigits": {"path": str(tmp_path / "mydigits"), "sha256": sha256}}
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n")
    assert result.returncode != 0 and "Job stats" not in result.stdout
    assert "sweeps.mine.train_sizes has 120: the whole training set; write all" in result.stdout, result.stdout
    config["sweeps"]["mine"]["train_sizes"] = ["all", 150]
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n")
    assert "sweeps.mine.train_sizes has 150: larger than the 120 training images" in result.stdout, result.stdout
    # A damaged file in the folder is named, with what is wrong and the fix, before any job.
    images = tmp_path / "mydigits" / ("train-images-idx3-ubyte" + (".gz" if compress else ""))
    content = gzip.decompress(images.read_bytes()) if compress else images.read_bytes()
    images.write_bytes(gzip.compress(content[:-10]) if compress else content[:-10])
    result = snakemake(workdir, "-n")
    assert (
        f"{images}: its header says 120 images of 28x28 pixels (94096 bytes), but it holds 94086 bytes: truncated or damaged"
        in result.stdout
    )
    assert "replace it with a good copy (custom_datasets.mydigits.path)" in result.stdout
    # Images of another size, and a training set without an image, are refused as what they are.
    for count, side, problem in [
        (120, 32, "its images are 32x32 pixels; the model takes 28x28 (784 pixels), as MNIST's"),
        (0, 28, "its header says it holds no image; a training set needs at least one"),
    ]:
        content = b"\0\0\x08\x03" + struct.pack(">III", count, side, side) + bytes(count * side * side)
        images.write_bytes(gzip.compress(content) if compress else content)
        result = snakemake(workdir, "-n")
        assert result.returncode != 0 and "Job stats" not in result.stdout
        assert f"{images}: {problem}; replace it with a good copy (custom_datasets.mydigits.path)" in result.stdout
