"""What a change of the config, the code or the data cache plans and reruns on the small study
(tests/small_study.py): exactly the jobs whose results it changes."""

import json
import re
import shutil

import pytest
from small_study import RUNS, changed_config, planned_jobs

from conftest import copy_of, copy_workflow, job_stats, snakemake

FIGURES_ONLY = {
    "plot_run": 5,
    "plot_group": 3,
    "plot_noise_scale": 3,
    "plot_steps_to_target": 1,
    "plot_wall_time": 1,
    "all": 1,
}
# A new run of the batch-size sweep, and its figures: its own, its sweep's and the analysis.
BATCH_SWEEP = {"plot_group": 1, "plot_noise_scale": 1, "plot_steps_to_target": 1}


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda c: c["figures"].update(dpi=50), FIGURES_ONLY),
        (lambda c: c["figures"]["formats"].append("pdf"), FIGURES_ONLY),
        (lambda c: c["figures"].update(smoothing=5), {"plot_group": 3, "all": 1}),
        (
            lambda c: c["figures"].update(
                comparisons={
                    "b1_vs_torch": {"runs": [{"sweep": "batch_size", "batch_size": 1}, {"sweep": "torch_optim"}]}
                }
            ),
            {"plot_group": 1, "plot_noise_scale": 1, "all": 1},
        ),
        (lambda c: c["sweeps"]["batch_size"].update(title="Batch sizes, again"), {**BATCH_SWEEP, "all": 1}),
        # Steps to target are read from the metrics: new targets retrain nothing.
        (
            lambda c: c.update(targets=[0.5, 0.6], target_window=5),
            {"summarize": 1, "plot_wall_time": 1, "plot_steps_to_target": 1, "all": 1},
        ),
    ],
    ids=["dpi", "format", "style", "compared-runs", "title", "targets"],
)
def test_a_figure_option_redraws_only_the_figures_it_affects(completed, tmp_path, change, expected):
    workdir, _ = completed
    assert planned_jobs(workdir, changed_config(workdir, change), tmp_path) == expected


TRAIN_ONE = {
    "train": 1,
    "plot_run": 1,
    "plot_group": 1,
    "plot_noise_scale": 1,
    "summarize": 1,
    "plot_wall_time": 1,
    "all": 1,
}
RETRAIN_ALL = {"train": 5, **FIGURES_ONLY, "summarize": 1}


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda c: c["sweeps"]["batch_size"]["batch_sizes"].append(20), {**TRAIN_ONE, **BATCH_SWEEP}),
        (
            lambda c: c["sweeps"]["train_size"]["train_sizes"].append(150),
            {**TRAIN_ONE, "optimum": 1, "plot_train_size": 1},  # three sizes: now a curve
        ),
        (
            lambda c: c["sweeps"]["batch_size"].update(lr=0.02),
            {**TRAIN_ONE, **BATCH_SWEEP, "train": 2, "plot_run": 2},
        ),
        (
            lambda c: c["sweeps"]["train_size"].update(iterations=30),
            {**TRAIN_ONE, "train": 2, "plot_run": 2},
        ),
        (lambda c: c["sweeps"]["torch_optim"].update(seeds=[2]), TRAIN_ONE),
        # Where runs measure their noise scales is what they compute: every run trains again.
        (lambda c: c.update(noise_points=3), RETRAIN_ALL),
    ],
    ids=["batch-size", "subset-size", "lr", "iterations", "seed", "noise-points"],
)
def test_a_sweep_change_trains_only_that_sweeps_new_runs(completed, tmp_path, change, expected):
    workdir, _ = completed
    assert planned_jobs(workdir, changed_config(workdir, change), tmp_path) == expected


ANALYSIS = {"summarize": 1, "plot_wall_time": 1, "plot_steps_to_target": 1, "all": 1}


@pytest.mark.parametrize(
    "module, expected",
    [
        ("figures/common", FIGURES_ONLY),
        ("analysis/summary", ANALYSIS),
        ("analysis/scaling", ANALYSIS),
        ("figures/scaling", {"plot_steps_to_target": 1, "plot_noise_scale": 3, "all": 1}),
        # the noise scales' code: what the runs measure, and the curvature the optima save for them
        ("training/noise", {**RETRAIN_ALL, "optimum": 3}),
        # the training math, the subset sampling among it: the optima too
        ("training/sgd", {**RETRAIN_ALL, "optimum": 3}),
        # imported only through mnist_sgd.training.train (the package's version) and through the rule's script
        ("__init__", RETRAIN_ALL),
        ("study/runs", {**RETRAIN_ALL, "optimum": 3}),
        # the data code: the runs and optima, not the data (pinned by checksums, the cache by its version)
        ("data/cache", {**RETRAIN_ALL, "optimum": 3}),
        (
            "training/optimum",
            {"optimum": 3, "plot_run": 5, "plot_group": 3, "summarize": 1, "plot_wall_time": 1, "all": 1},
        ),
    ],
)
def test_a_code_edit_reruns_exactly_the_rules_that_run_that_code(completed, tmp_path, module, expected):
    workdir, _ = completed
    source = workdir / "workflow" / "mnist_sgd" / f"{module}.py"
    original = source.read_text()
    try:
        source.write_text(original + "\n# an edit\n")
        assert planned_jobs(workdir, changed_config(workdir, lambda c: None), tmp_path) == expected
    finally:
        source.write_text(original)
    result = snakemake(workdir, "-n", "all")
    assert "Nothing to be done" in result.stdout, result.stdout


def test_a_recreated_data_cache_with_the_same_content_retrains_nothing(completed):
    workdir, _ = completed
    cache = workdir / "results" / "data" / "mnist.pt"
    before = cache.stat().st_mtime_ns, cache.read_bytes()
    result = snakemake(workdir, "--cores", "1", "--forcerun", "format_mnist", "--", str(cache.relative_to(workdir)))
    assert result.returncode == 0, result.stdout
    assert cache.stat().st_mtime_ns > before[0] and cache.read_bytes() == before[1]
    result = snakemake(workdir, "-n", "all")
    assert "Nothing to be done" in result.stdout, result.stdout
    # --summary agrees: every output is up to date, with nothing planned. Finished runs are files no
    # rule makes (only the packs of pending runs are rules), so it lists none of them.
    summary = snakemake(workdir, "--summary", "all")
    rows = [line.split("\t") for line in summary.stdout.splitlines() if line.startswith("results/")]
    assert len(rows) > 20 and not any(row[0].startswith("results/runs/") for row in rows), summary.stdout
    assert all(row[-2:] == ["ok", "no update"] for row in rows), summary.stdout


@pytest.mark.parametrize("title", ["'Batch sizes #2'", '"Batch: 1"', '"2024-01-01"'])
def test_quoted_command_line_values_stay_the_strings_quoted(completed, title):
    result = snakemake(completed[0], "-n", "--config", f"sweeps={{batch_size: {{title: {title}}}}}")
    assert result.returncode == 0, result.stdout
    assert job_stats(result.stdout) == {**BATCH_SWEEP, "all": 1}  # a new title, as written: redrawn


def test_a_learning_rate_written_without_a_dot_is_the_number_it_means(completed, tmp_path):
    """YAML 1.1 reads 1e-2 as a string; in a config file or on the command line it is 0.01, the
    completed sweeps' learning rate."""
    workdir, _ = completed
    (tmp_path / "lr.yaml").write_text("sweeps:\n  batch_size:\n    lr: [1e-2]\n")
    for options in (["--configfile", str(tmp_path / "lr.yaml")], ["--config", "sweeps={batch_size: {lr: 1E-2}}"]):
        result = snakemake(workdir, "-n", *options)
        assert "Nothing to be done" in result.stdout, result.stdout


def test_touched_code_and_results_copied_into_a_fresh_clone_retrain_nothing(completed, tmp_path):
    """Reruns follow content, not dates: a `touch` of every script and module, and the results copied
    (`cp -a`) into a fresh copy of the workflow, whose code is newer than every output, plan no job."""
    workdir, _ = completed
    for path in [*(workdir / "workflow" / "scripts").glob("*.py"), *(workdir / "workflow" / "mnist_sgd").glob("*.py")]:
        path.touch()
    result = snakemake(workdir, "-n", "all")
    assert "Nothing to be done" in result.stdout, result.stdout
    clone = tmp_path / "clone"
    copy_workflow(clone)
    for part in ("results", "config"):
        shutil.rmtree(clone / part, ignore_errors=True)
        shutil.copytree(workdir / part, clone / part, symlinks=True)  # cp -a: times kept
    result = snakemake(clone, "-n", "all")
    assert "Nothing to be done" in result.stdout, result.stdout


def test_results_copied_into_a_clone_of_other_training_code_retrain_every_run(completed, tmp_path):
    """Snakemake's record of each job's parameters stays in .snakemake, which a copied results folder
    leaves behind: the runs' own record of their inputs (code, data, noise points) says that another
    version of the training code made them."""
    workdir, _ = completed
    clone = tmp_path / "clone"
    copy_workflow(clone)
    for part in ("results", "config"):
        shutil.rmtree(clone / part, ignore_errors=True)
        shutil.copytree(workdir / part, clone / part, symlinks=True)
    sgd = clone / "workflow" / "mnist_sgd" / "training" / "sgd.py"
    sgd.write_text(sgd.read_text() + "\n# an edit\n")
    dry = snakemake(clone, "-n", "all")
    runs = clone / "results" / "runs"
    for run in RUNS:
        said = f"warning: results/runs/{run}/run.json: made from other inputs than this workflow's (code '"
        assert said in dry.stdout and "(a real run sets it aside and retrains)" in dry.stdout, dry.stdout
        assert (runs / run / "run.json").exists()
    # A real invocation sets them aside, whatever its target: the next one retrains every run.
    assert snakemake(clone, "--cores", "1", "results/data/mnist.pt").returncode == 0
    assert all((runs / run / "run.json.outdated").exists() and not (runs / run / "run.json").exists() for run in RUNS)
    assert job_stats(snakemake(clone, "-n", "all").stdout)["train"] == len(RUNS)


def test_damaged_records_retrain_exactly_the_damaged_runs(completed, tmp_path):
    workdir = copy_of(completed[0], tmp_path / "workflow")
    torn, edited, malformed = (workdir / "results" / "runs" / run for run in RUNS[:3])
    (torn / "metrics.csv").write_bytes((torn / "metrics.csv").read_bytes()[:300])
    fields = json.loads((edited / "run.json").read_text())
    fields["final_test_accuracy"] = 0.99
    (edited / "run.json").write_text(json.dumps(fields, indent=2))
    (malformed / "run.json").write_bytes((malformed / "run.json").read_bytes()[:200])
    dry = snakemake(workdir, "-n", "all")
    for said in (f"{RUNS[0]}/metrics.csv: torn", f"{RUNS[1]}/run.json: edited", f"{RUNS[2]}/run.json: not a whole"):
        assert f"warning: results/runs/{said}" in dry.stdout, dry.stdout
    result = snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stdout
    assert job_stats(result.stdout)["train"] == 3, result.stdout
    outputs = re.findall(r"^\s+output: (.*)$", result.stdout, re.M)
    retrained = {run for run in RUNS for line in outputs if f"results/runs/{run}/metrics.csv" in line}
    assert retrained == set(RUNS[:3]), outputs
    assert snakemake(workdir, "-n", "all").stdout.count("Nothing to be done") == 1
    summary = (workdir / "results" / "summary.csv").read_text()
    assert "0.99," not in summary
