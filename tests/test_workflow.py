"""End to end: the real `snakemake` CLI on the small study (tests/small_study.py), what it writes, and
what it refuses before any job. What a change reruns: test_reruns; lost or damaged files: test_recovery."""

import base64
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from small_study import GROUPS, RUNS, changed_config

from conftest import REPO, make_workdir, snakemake, sweep, train_directly, trained_runs
from mnist_sgd.analysis.scaling import steps_to_target
from mnist_sgd.study.config import ConfigFileError, check_config_text
from mnist_sgd.study.packs import PACK_PREFIX, read_plan
from mnist_sgd.study.records import Optimum, RunInfo
from mnist_sgd.study.runs import LOSS_SCALE, training_set_name
from mnist_sgd.training.noise import measurement_iterations


@pytest.fixture(scope="module")
def workdir(completed):
    return completed[0]


def test_every_expected_output_is_written(completed):
    workdir, log = completed
    assert "Using workflow specific profile profiles/default" in log
    results = workdir / "results"
    for run in RUNS:
        for name in ("metrics.csv", "run.json", "weights.npy"):
            assert (results / "runs" / run / name).stat().st_size > 0
        assert (results / "logs" / "train" / f"{run}.log").exists()
    packs = read_plan(results / "packs" / "plan.json")
    assert sorted(run for pack in packs for run in pack.runs) == sorted(RUNS)
    for pack in packs:
        assert (results / "benchmarks" / "train" / "packs" / f"{pack.name}.tsv").exists()
    for training_set in ("trainall", "train50_seed0", "train100_seed0"):
        assert (results / "optimum" / f"{training_set}.json").stat().st_size > 0
    figures = (
        [f"runs/{run}{kind}" for run in RUNS for kind in ("", "/weights", "/confusion")]
        + [f"{sweep}/{kind}" for sweep in GROUPS for kind in ("curves", "final_accuracy", "noise_scale")]
        # two batch sizes on one training set: steps to target; two subset sizes are too few for a curve
        + ["batch_size/steps_to_target", "wall_time"]
    )
    for figure in figures:
        assert (results / "figures" / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (results / "figures" / f"{figure}.svg").read_bytes()[:1000]
    assert not list(results.glob("figures/**/*.pdf"))  # only the configured formats
    produced = {
        p.relative_to(results / "figures").with_suffix("").as_posix() for p in (results / "figures").rglob("*.png")
    }
    assert produced == set(figures)


def test_summary_has_one_row_per_run_matching_its_metrics(completed):
    workdir, _ = completed
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    assert summary["run"].tolist() == RUNS
    required = (
        "impl train_size batch_size seed iterations lr final_train_loss final_test_accuracy best_test_accuracy "
        "wall_seconds seconds_per_iteration device"
    ).split()
    assert set(required) <= set(summary.columns)
    assert summary["train_size"].tolist() == [300, 300, 50, 100, 300]
    assert summary["batch_size"].tolist() == [1, 10, 50, 100, 25]
    assert summary["sweeps"].tolist() == ["batch_size"] * 2 + ["train_size"] * 2 + ["torch_optim"]
    assert (summary["device"] == "cpu").all()
    for row in summary.itertuples():
        metrics = pd.read_csv(workdir / "results" / "runs" / row.run / "metrics.csv")
        assert len(metrics) == row.iterations == 40
        assert row.final_test_accuracy == metrics["test_accuracy"].iloc[-1]
        assert row.best_test_accuracy == metrics["test_accuracy"].max()
        assert row.final_train_loss == pytest.approx(metrics["train_loss"].iloc[-1], rel=1e-6)
        assert row.seconds_per_iteration == pytest.approx(row.wall_seconds / 40)
        assert row.final_test_accuracy > 0.5  # the synthetic digits are learnable
        optimum = Optimum.read(workdir / "results" / "optimum" / f"{training_set_name(row.run)}.json")
        assert row.optimum_test_accuracy == optimum.test_accuracy
        assert row.optimum_train_loss == optimum.train_loss * LOSS_SCALE[row.impl]
        assert row.optimum_accuracy_gap == pytest.approx(optimum.test_accuracy - row.final_test_accuracy)
        assert (row.optimum_rank, row.optimum_min_singular_value) == (optimum.rank, optimum.min_singular_value)
        # The analysis columns (mnist_sgd.analysis.scaling, mnist_sgd.training.noise): the default targets of MNIST.
        evaluated = metrics.dropna(subset=["test_accuracy"])
        for target in (0.8, 0.84):
            steps = steps_to_target(evaluated["iteration"], evaluated["test_accuracy"], target, window=21)
            found = summary.set_index("run").loc[row.run, f"steps_to_{target:g}"]
            assert found == steps if steps is not None else pd.isna(found)
        noise = RunInfo.read(workdir / "results" / "runs" / row.run / "run.json").noise_scale
        assert noise["iteration"] == measurement_iterations(40, 8) and noise["iteration"][-1] == 40
        assert (row.b_noise_start, row.b_noise_end) == (noise["b_noise"][0], noise["b_noise"][-1])
        assert 0 < row.noise_seconds < row.wall_seconds
    # One row per batch size and target of the batch-size sweep's training set, and a fit that needs three.
    scaling = pd.read_csv(workdir / "results" / "batch_scaling.csv")
    on_all = scaling[(scaling["train_size"] == 300) & (scaling["impl"] == "scratch")]
    assert sorted(zip(on_all["target"], on_all["batch_size"])) == [(0.8, 1), (0.8, 10), (0.84, 1), (0.84, 10)]
    fits = pd.read_csv(workdir / "results" / "critical_batch.csv")
    assert fits["b_crit"].isna().all() and (fits["n_batch_sizes"] <= 2).all()


def test_a_run_through_the_workflow_equals_the_program_run_directly(completed, tmp_path):
    workdir, _ = completed
    run = workdir / "results" / "runs" / RUNS[2]
    options = "--train-size 50 --batch-size 50 --iterations 40 --lr 0.01 --seed 0".split()
    train_directly(workdir, tmp_path / "m.csv", *options)
    assert (tmp_path / "m.csv").read_bytes() == (run / "metrics.csv").read_bytes()
    assert RunInfo.read(tmp_path / "m.json").params == RunInfo.read(run / "run.json").params


def test_a_second_run_has_nothing_to_do(completed):
    workdir, _ = completed
    result = snakemake(workdir, "-n", "all")
    assert result.returncode == 0, result.stdout
    assert "Nothing to be done" in result.stdout


def test_every_job_writes_a_log_and_training_logs_progress(completed):
    workdir, _ = completed
    logs = workdir / "results" / "logs"
    expected = ["download_mnist/idx_files.log"]
    expected += ["format_mnist/mnist.log", "summarize.log", "plot_wall_time.log"]
    expected += [f"{rule}/{run}.log" for run in RUNS for rule in ("train", "plot_run")]
    expected += [f"optimum/{name}.log" for name in ("trainall", "train50_seed0", "train100_seed0")]
    expected += [f"train/packs/{pack.name}.log" for pack in read_plan(workdir / "results" / "packs" / "plan.json")]
    expected += [f"{rule}/{sweep}.log" for sweep in GROUPS for rule in ("plot_group", "plot_noise_scale")]
    expected += ["plot_steps_to_target/batch_size.log"]
    assert sorted(p.relative_to(logs).as_posix() for p in logs.rglob("*.log")) == sorted(expected)
    for run in RUNS:
        log = (logs / "train" / f"{run}.log").read_text()
        assert "device=auto: using cpu" in log
        assert "results/data/mnist.pt: loaded and verified in " in log  # its pack's, once for its runs
        assert "iteration 40/40  loss " in log and " it/s  eta 0.0 s" in log
        assert "done (ok): final test accuracy " in log


def test_the_report_holds_every_figure_with_its_caption_and_the_summary(completed, tmp_path):
    workdir, _ = completed
    assert snakemake(workdir, "--report", str(tmp_path / "report.html")).returncode == 0
    assert snakemake(workdir, "--report", str(tmp_path / "report.zip")).returncode == 0
    html = (tmp_path / "report.html").read_text()
    figures = sorted((workdir / "results" / "figures").rglob("*.png"))
    # each run's three, each group's curves, final accuracy and noise scales, steps to target, wall time
    assert len(figures) == 5 * 3 + 3 * 3 + 1 + 1
    for path in figures:  # self-contained: every figure is embedded
        assert base64.b64encode(path.read_bytes()).decode()[:2000] in html, path
    assert "learning rate 0.05" in html and "seed 1" in html  # a run's caption names its parameters
    assert "Batch sizes: training loss" in html and "Subsets: test accuracy at the last iteration" in html
    assert "Minibatch SGD for a linear least-squares MNIST classifier" in html  # the methods text
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        members = {n: archive.read(n) for n in archive.namelist() if "/data/raw/" in n}
    assert len(members) == len(figures) + 2  # every figure and the two summary tables, nothing else
    for path in figures:
        assert path.read_bytes() in members.values(), path
    table = next(content for name, content in members.items() if name.endswith("/summary.html")).decode()
    assert "<table" in table and all(run in table for run in RUNS)


def test_training_jobs_never_outnumber_the_cpus_whatever_cores_says(workdir):
    cpus = len(os.sched_getaffinity(0))
    for cores, held in [(cpus, 1), (4 * cpus, 4)]:
        result = snakemake(workdir, "-n", "--forceall", "--cores", str(cores), "all")
        assert result.returncode == 0, result.stdout
        trains = result.stdout.split(f"\nrule {PACK_PREFIX}")[1:]
        # No two runs of the small study differ only in lr and seed: a pack each.
        assert len(trained_runs(result.stdout)) == len(trains) == len(RUNS)
        for job in trains:
            threads = re.search(r"\n    threads: (\d+)", job.split("\n\n")[0].split("\n[")[0])  # this job's lines
            assert (int(threads.group(1)) if threads else 1) == held, job


def test_every_copy_of_the_workflow_runs_its_own_code_in_one_shared_worker(tmp_path):
    # Copies of the workflow (a benchmark's scratch copies, a colleague's checkout, an edit): one warm
    # worker serves them all, and each job's code comes from its own copy, also after the copy that started
    # the worker is gone.
    workers = []
    for name in ("first", "second"):
        copy = make_workdir(tmp_path / name, {"s": sweep()})
        with open(copy / "workflow" / "mnist_sgd" / "data" / "cache.py", "a") as source:  # an edit, in each copy
            source.write(
                f"\nprint('{name}:', __file__, 'in', __import__('os').getppid(), file=__import__('sys').stderr)\n"
            )
        result = snakemake(copy, "--cores", "1", "results/data/mnist.pt")
        assert result.returncode == 0, result.stdout
        log = (copy / "results" / "logs" / "format_mnist" / "mnist.log").read_text()
        assert "own process" not in log, log  # it did run in a worker
        [(path, worker)] = re.findall(rf"^{name}: (\S+) in (\d+)$", log, re.M)
        assert Path(path).resolve() == (copy / "workflow" / "mnist_sgd" / "data" / "cache.py").resolve()
        workers.append(worker)
        shutil.rmtree(copy)
    assert workers[0] == workers[1]  # the child's parent: the worker


def test_lint_is_clean(workdir):
    result = snakemake(workdir, "--lint")
    assert result.returncode == 0, result.stdout
    assert "Congratulations, your workflow is in a good condition!" in result.stdout, result.stdout


def test_snakefmt_is_clean():
    files = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", *map(str, files)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]], ids=["format", "lint"])
def test_the_python_code_is_formatted_and_lint_clean(command):
    # ruff, configured in pyproject.toml: `ruff format` and `ruff check --fix` fix what this finds.
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "workflow", "tests", "bench"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "override, message",
    [
        ("batch_szie=3", "batch_szie"),
        ("device=tpu", "'tpu' is not one of ['auto', 'cpu', 'cuda']"),
        ("eval_every=0", "0 is less than the minimum of 1"),
        ("data_mirror=/nonexistent/mnist", "data_mirror='/nonexistent/mnist': no such folder"),
        ("mirrors=[/nonexistent/mnist]", "mirrors[0]='/nonexistent/mnist': no such folder"),
    ],
)
def test_a_bad_command_line_value_fails_before_any_job(workdir, override, message):
    result = snakemake(workdir, "-n", "--config", override)
    assert result.returncode != 0
    assert message in result.stdout, result.stdout
    assert "Job stats" not in result.stdout


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda c: c["sweeps"]["batch_size"].update(batch_szie=[3]),
            "Additional properties are not allowed ('batch_szie' was unexpected)",
        ),
        (
            lambda c: c["sweeps"]["batch_size"].update(batch_sizes=[0]),
            "On instance['sweeps']['batch_size']['batch_sizes'][0]",
        ),
        (lambda c: c["sweeps"]["batch_size"].update(lr=0), "0 is less than or equal to the minimum of 0"),
        (
            lambda c: c.update(custom_datasets={"mnist": {"path": "/tmp", "sha256": c["data_sha256"]}}),
            "config error: custom_datasets.mnist: a built-in data set has that name; choose another",
        ),
        (
            lambda c: c.update(custom_datasets={"mine": {"path": "/nonexistent/mine", "sha256": c["data_sha256"]}}),
            "config error: custom_datasets.mine.path='/nonexistent/mine': no such folder",
        ),
        (
            lambda c: c["sweeps"]["batch_size"].update(datasets=["nope"]),
            "config error: sweeps.batch_size.datasets has 'nope': not a data set; built in: ['mnist', 'fashion-mnist']",
        ),
        (
            lambda c: c["sweeps"]["batch_size"].update(datasets=["fashion-mnist"]),
            "config error: data_sha256 has no checksums for data set 'fashion-mnist'; add data_sha256.fashion-mnist",
        ),
        (
            lambda c: c["sweeps"]["batch_size"].update(lr=float("inf")),
            "sweeps.batch_size.lr has inf: must be a finite number > 0",
        ),
        (
            lambda c: c["sweeps"]["batch_size"].update(lr=float("nan")),
            "sweeps.batch_size.lr has nan: must be a finite number > 0",
        ),
        (
            lambda c: c["sweeps"]["batch_size"].update(lr=[0.01, 1.0e308]),
            "sweeps.batch_size.lr has 1e+308: larger than 3.402823e+38, the largest float32 number",
        ),
        (lambda c: c["sweeps"]["batch_size"].update(iterations=0), "0 is less than the minimum of 1"),
        (lambda c: c["sweeps"]["batch_size"].update(impl="jax"), "'jax' is not one of ['scratch', 'torch']"),
        (
            lambda c: c["sweeps"]["train_size"].update(train_sizes=[50, 301]),
            "sweeps.train_size.train_sizes has 301: larger than the 300 training images",
        ),
        (
            lambda c: c["sweeps"]["batch_size"].update(train_sizes=["all"], batch_sizes=["train_size"]),
            "sweeps.batch_size.batch_sizes='train_size' needs integer train_sizes",
        ),
        (
            lambda c: c["figures"].update(comparisons={"x": {"runs": [{"sweep": "nope"}]}}),
            "figures.comparisons.x.runs[0]: sweep='nope' is not a sweep",
        ),
        (
            lambda c: c["figures"].update(comparisons={"x": {"runs": [{"sweep": "batch_size", "batch_size": 7}]}}),
            "figures.comparisons.x.runs[0]: no run of sweep 'batch_size' has {'batch_size': '7'}",
        ),
        (
            lambda c: c["figures"].update(comparisons={"batch_size": {"runs": [{"sweep": "batch_size"}]}}),
            "figures.comparisons.batch_size: the name is taken",
        ),
        # What a training job would crash on, or could not hold, is refused at planning.
        (lambda c: c["sweeps"]["batch_size"].update(batch_sizes=[10**12]), "1000000000000 is not valid under any"),
        (lambda c: c["sweeps"]["batch_size"].update(iterations=10**12), "1000000000000 is greater than the maximum"),
        (
            lambda c: c["sweeps"]["torch_optim"].update(train_sizes=[20]),
            "sweeps.torch_optim.batch_sizes has 25: impl torch draws each epoch's batches without replacement",
        ),
        (
            lambda c: c["sweeps"]["batch_size"].update(train_sizes=["all", 300]),
            "sweeps.batch_size.train_sizes has 300: the whole training set; write all",
        ),
        (lambda c: c["sweeps"]["batch_size"].update(lr=5e-324), "rounds to 0 in float32"),
        (
            lambda c: c["sweeps"].update({"newline_at_end\n": c["sweeps"]["batch_size"]}),  # the schema's $ admits it
            "sweeps.'newline_at_end\\n': a sweep's name is letters, digits and _ only",
        ),
    ],
    ids=[
        "typo",
        "batch-0",
        "lr-0",
        "custom-shadows-built-in",
        "custom-no-folder",
        "unknown-data-set",
        "data-set-without-checksums",
        "lr-inf",
        "lr-nan",
        "lr-overflow",
        "iterations-0",
        "impl",
        "subset-too-large",
        "batch-train-size-all",
        "comparison-sweep",
        "comparison-no-match",
        "comparison-name",
        "batch-huge",
        "iterations-huge",
        "torch-batch-above-subset",
        "whole-set-twice",
        "lr-underflows-float32",
        "sweep-name-newline",
    ],
)
def test_a_bad_config_file_fails_before_any_job(completed, tmp_path, change, message):
    workdir, _ = completed
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(changed_config(workdir, change), sort_keys=False))
    result = snakemake(workdir, "-n", "--configfile", str(path))
    assert result.returncode != 0
    assert message in result.stdout, result.stdout
    assert "Job stats" not in result.stdout


def test_scalars_on_the_command_line_and_exponents_without_a_sign_mean_what_they_say(completed, tmp_path):
    """`--config worker=false` is the boolean; `lr: 1e-2` and `lr: 1.0e-2` (strings to YAML 1.1) are 0.01,
    the completed sweep's."""
    workdir, _ = completed
    result = snakemake(workdir, "-n", "--config", "worker=false", "cuda_graphs=false", "jobs_per_gpu=2")
    assert "Nothing to be done" in result.stdout, result.stdout
    (tmp_path / "lr.yaml").write_text("sweeps:\n  batch_size:\n    lr: [1.0e-2]\n")
    result = snakemake(workdir, "-n", "--configfile", str(tmp_path / "lr.yaml"))
    assert "Nothing to be done" in result.stdout, result.stdout


# 400 bytes whose aliases expand to 9^8 (43 million) strings: validating them took 90 s and 1.1 GB.
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefg", "bcdefgh")
)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "sweeps:\n  mine:\n    lr: 0.1\n    batch_sizes: [1]\n    lr: 0.2\n",
            "key 'lr' is given twice, at line 3 and at line 5",
        ),
        (ALIAS_BOMB, "its aliases (*name) expand it to more than 100,000 values (at line 6)"),
    ],
    ids=["duplicate-key", "alias-bomb"],
)
def test_a_config_file_that_says_a_key_twice_or_expands_without_bound_is_refused_at_once(
    completed, tmp_path, text, message
):
    workdir, _ = completed
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = snakemake(workdir, "-n", "--configfile", str(path))
    assert result.returncode != 0
    assert f"{path}: {message}" in result.stdout, result.stdout
    assert "Job stats" not in result.stdout


def test_an_alias_bomb_is_sized_without_being_expanded():
    with pytest.raises(ConfigFileError, match="expand it to more than 100,000 values"):
        check_config_text(ALIAS_BOMB, "bomb.yaml")
    with pytest.raises(ConfigFileError, match="--config sweeps: its aliases"):  # on the command line too
        check_config_text(
            "{a: &a [1,1,1,1,1,1,1,1,1,1], " + ALIAS_BOMB.split("\n", 1)[1].replace("\n", ", ") + "}", "--config sweeps"
        )
    with pytest.raises(ConfigFileError, match="line 1: an alias refers to a value that holds it"):
        check_config_text("a: &a [1, *a]\n", "self.yaml")
    check_config_text("a: &a [1, 2]\nb: [*a, *a]\n", "fine.yaml")  # a few aliases are fine
