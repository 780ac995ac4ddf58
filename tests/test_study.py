"""Expanding the configured sweeps into runs."""

import pytest
import yaml

from conftest import REPO
from mnist_sgd.study import SweepError, parse_run, run_config, run_labels, sweep_runs


def default_config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_the_default_study_is_the_seeds():
    config = default_config()
    assert sweep_runs(config, "batch_size") == [
        f"scratch/trainall_batch{b}_lr0.001_it6000_seed0" for b in (1, 10, 100, 1000)
    ]
    assert sweep_runs(config, "train_size") == [
        f"scratch/train{n}_batch{n}_lr0.001_it6000_seed0" for n in (100, 500, 1000, 10000)
    ]
    assert sweep_runs(config, "torch_optim") == ["torch/trainall_batch100_lr0.001_it6000_seed0"]


def test_every_combination_of_a_sweeps_lists_is_a_run():
    config = {"sweeps": {"grid": {"impl": "scratch", "train_sizes": [50, "all"], "batch_sizes": [1, 5],
                                  "iterations": 10, "lr": 1e-5, "seeds": [0, 7]}}}
    runs = sweep_runs(config, "grid")
    assert len(runs) == 8 and len(set(runs)) == 8
    assert runs[0] == "scratch/train50_batch1_lr1e-05_it10_seed0"
    assert runs[-1] == "scratch/trainall_batch5_lr1e-05_it10_seed7"


def test_a_run_name_round_trips_to_its_training_parameters():
    config = run_config("torch/train500_batch25_lr0.0015_it300_seed4", eval_every=3, device="cpu")
    assert (config.impl, config.train_size, config.batch_size, config.iterations) == ("torch", 500, 25, 300)
    assert (config.lr, config.seed, config.eval_every, config.device) == (0.0015, 4, 3, "cpu")
    assert run_config("scratch/trainall_batch1_lr0.001_it6000_seed0").train_size is None
    assert parse_run("scratch/trainall_batch1_lr0.001_it6000_seed0")["lr"] == "0.001"


def test_batch_equal_to_train_size_needs_a_size():
    config = {"sweeps": {"bad": {"impl": "scratch", "train_sizes": ["all"], "batch_sizes": ["train_size"],
                                 "iterations": 10, "lr": 0.1}}}
    with pytest.raises(SweepError, match="sweeps.bad.batch_sizes"):
        sweep_runs(config, "bad")


def test_labels_name_what_varies():
    config = default_config()
    assert run_labels(sweep_runs(config, "batch_size")) == ["batch 1", "batch 10", "batch 100", "batch 1000"]
    assert run_labels(sweep_runs(config, "train_size")) == ["train 100", "train 500", "train 1000", "train 10000"]
    assert run_labels(sweep_runs(config, "torch_optim")) == ["torch"]
