"""What planning does before and around `mnist_sgd.study.plan`, as the rules call it: the config read as
meant (mnist_sgd.study.config), the results layout (mnist_sgd.study.layout), the figure targets
(mnist_sgd.study.targets), and the partial summary after a failure (mnist_sgd.analysis.summary)."""

import gzip
import struct

import pandas as pd
import pytest

from mnist_sgd.analysis.summary import write_partial_summary
from mnist_sgd.study.config import (
    ConfigFileError,
    added_sweeps_note,
    check_mirrors,
    learning_rates_as_numbers,
    reparse_command_line,
)
from mnist_sgd.study.layout import run_records, training_set_size
from mnist_sgd.study.targets import FigureTargets, rst_text


def test_command_line_values_are_read_as_a_config_file_reads_them():
    config = {"worker": "false", "jobs_per_gpu": "2", "title": "2024", "sweeps": {"tiny": {"iterations": "300"}}}
    given = dict(config, sweeps={"tiny": {"iterations": "300", "title": "2024-01-01"}})
    args = ["worker=false", "jobs_per_gpu=2", "title=2024", "sweeps={tiny: {iterations: 300, title: '2024-01-01'}}"]
    schema = {"worker": {"type": "boolean"}, "jobs_per_gpu": {"type": "integer"}, "title": {"type": "string"}}
    reparse_command_line(config, args, given, schema)
    assert config["worker"] is False and config["jobs_per_gpu"] == 2 and config["title"] == "2024"
    assert config["sweeps"]["tiny"] == {"iterations": 300, "title": "2024-01-01"}
    with pytest.raises(ConfigFileError, match="--config sweeps: key 'lr' is given twice"):
        reparse_command_line({}, ["sweeps={a: {lr: 1, lr: 2}}"], {"sweeps": {}}, schema)


def test_learning_rates_written_without_a_dot_or_a_sign_are_numbers():
    config = {
        "sweeps": {"a": {"lr": "1e-3"}, "b": {"lr": ["1.5e2", 0.1, "fast"]}},
        "figures": {"comparisons": {"c": {"runs": [{"lr": "1E-2"}]}}},
    }
    learning_rates_as_numbers(config)
    assert config["sweeps"]["a"]["lr"] == 0.001 and config["sweeps"]["b"]["lr"] == [150.0, 0.1, "fast"]
    assert config["figures"]["comparisons"]["c"]["runs"][0]["lr"] == 0.01


def test_a_local_mirror_must_exist_and_a_url_is_taken_as_it_is(tmp_path):
    check_mirrors({"data_mirror": str(tmp_path), "mirrors": ["https://example.org/mnist", ""]})
    with pytest.raises(ConfigFileError, match=r"mirrors\[1\]='/nonexistent': no such folder"):
        check_mirrors({"data_mirror": None, "mirrors": ["https://example.org/", "/nonexistent"]})


def test_sweeps_of_ones_own_config_file_say_which_default_sweeps_run_too(tmp_path):
    own = tmp_path / "own.yaml"
    own.write_text("sweeps:\n  mine: {lr: 0.1}\n")
    config = {"sweeps": {"mine": {}, "batch_size": {}, "train_size": {}}}
    assert "sweeps ['batch_size', 'train_size'] run too" in added_sweeps_note(config, [own], replaced=False)
    assert added_sweeps_note(config, [own], replaced=True) is None
    assert added_sweeps_note(config, [], replaced=False) is None


def test_a_training_sets_size_comes_from_its_images_header_or_is_mnists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"custom_datasets": {"mine": {"path": str(tmp_path / "mine")}}}
    assert training_set_size(config, "fashion-mnist") == 60000  # not downloaded yet: every built-in has 60000
    assert training_set_size(config, "mine") is None  # its folder is missing: plan() says so
    (tmp_path / "mine").mkdir()
    header = b"\0\0\x08\x03" + struct.pack(">III", 3, 28, 28)
    (tmp_path / "mine" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(3 * 784)))
    assert training_set_size(config, "mine") == 3


RUN = "scratch/train{size}_batch{batch}_lr{lr}_it40_seed0"


def test_a_groups_figures_follow_what_its_runs_vary():
    config = {"figures": {"formats": ["png", "svg"], "run_figures": 2}, "noise_points": 0}
    two_batches = [RUN.format(size="all", batch=b, lr=0.01) for b in (1, 10)]
    three_lrs = [RUN.format(size="all", batch=10, lr=lr) for lr in (0.1, 0.01, 0.001)]
    groups = {"batches": ("Batches", two_batches), "lrs": ("Rates", three_lrs)}
    figures = FigureTargets(config, groups, {"mnist": [0.8]})
    batches = figures.group_figures("batches")
    assert batches[:6] == [
        f"results/figures/batches/{kind}.{ext}"
        for kind in ("curves", "final_accuracy", "steps_to_target")
        for ext in ("png", "svg")
    ]
    assert batches[6:] == figures.run_figures(two_batches) and len(batches[6:]) == 2 * 3 * 2
    lrs = figures.group_figures("lrs")  # three runs: over run_figures, so no per-run figures
    assert lrs == [
        f"results/figures/lrs/{k}.{e}" for k in ("curves", "final_accuracy", "learning_rate") for e in ("png", "svg")
    ]
    assert figures.all_figures()[-2:] == ["results/figures/wall_time.png", "results/figures/wall_time.svg"]
    assert len(figures.all_figures()) == len(set(figures.all_figures())) == len(batches) + len(lrs) + 2
    assert FigureTargets(config, groups, {"mnist": []}).scaling_figures(two_batches) == []  # no targets
    sizes = [RUN.format(size=s, batch=10, lr=0.01) for s in (50, 100, "all")]
    assert FigureTargets({**config, "noise_points": 3}, groups, {}).scaling_figures(sizes) == [
        "noise_scale",
        "train_size",
    ]


def test_report_text_from_the_config_is_never_markup():
    assert rst_text("lr `1e-3` *fast*\n.. raw:: html") == r"lr \`1e\-3\` \*fast\* \.\. raw\:\: html"


def test_the_partial_summary_names_every_run_without_a_result_and_why(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    failed, missing, damaged = (RUN.format(size="all", batch=b, lr=0.01) for b in (1, 10, 100))
    log = tmp_path / "results" / "logs" / "train" / f"{failed}.log"
    log.parent.mkdir(parents=True)
    log.write_text("Traceback: killed\n")
    for name in ("metrics.csv", "weights.npy"):
        assert f"results/runs/{damaged}/{name}" in run_records([damaged])
    record = tmp_path / "results" / "runs" / damaged / "run.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"params": ')  # torn
    lines = []
    table = write_partial_summary([failed, missing, damaged], {failed: ["bs"]}, log=lines.append)
    written = pd.read_csv(tmp_path / "results" / "summary_partial.csv")
    assert written["status"].tolist() == table["status"].tolist() == ["failed", "missing", "damaged"]
    assert lines[0] == "3 of 3 runs have no result; every run's status is in results/summary_partial.csv"
    assert lines[1] == f"  failed: {failed} (log: results/logs/train/{failed}.log)"
    assert lines[2] == f"  missing: {missing}"
    assert lines[3].startswith(f"  damaged: {damaged} (") and "run.json" in lines[3]
