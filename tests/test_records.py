"""A run's records prove themselves (mnist_sgd.study.records): run.json holds the size and SHA-256 of the files
the run wrote and a digest of itself, and every reader refuses a torn, edited or malformed record by name."""

import dataclasses
import json
import re

import pytest

from conftest import IDX_NAMES, write_small_mnist
from mnist_sgd.analysis.summary import summarize
from mnist_sgd.data.cache import build_cache
from mnist_sgd.study.records import (
    DamagedRecord,
    RunInfo,
    TrainingInputs,
    set_aside_untrusted,
    untrusted_run,
)
from mnist_sgd.study.runs import TrainConfig
from mnist_sgd.training.train import run

# What the workflow would have trained the run from (rule train's parameters).
INPUTS = TrainingInputs(code="c0de", data="da7a", noise_points=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder holding one finished run's records (metrics.csv, weights.npy, run.json)."""
    root = tmp_path_factory.mktemp("records")
    write_small_mnist(root / "raw", compress=False)
    build_cache(*(root / "raw" / name for name in IDX_NAMES), root / "mnist.pt")
    folder = root / "runs" / "scratch" / "trainall_batch10_lr0.01_it200_seed0"
    folder.mkdir(parents=True)
    config = TrainConfig(impl="scratch", batch_size=10, iterations=200, lr=0.01)
    run(
        root / "mnist.pt",
        folder / "metrics.csv",
        folder / "run.json",
        config,
        weights_path=folder / "weights.npy",
        threads=1,
        inputs=INPUTS,
        log=lambda m: None,
    )
    return folder


def damaged_copy(trained, tmp_path, damage):
    folder = tmp_path / "runs" / "scratch" / trained.name
    folder.mkdir(parents=True)
    for name in ("metrics.csv", "weights.npy", "run.json"):
        (folder / name).write_bytes((trained / name).read_bytes())
    damage(folder)
    return folder


def test_a_whole_record_lists_its_files_and_reads_back(trained):
    info = RunInfo.read(trained / "run.json")
    assert set(info.files) == {"metrics.csv", "weights.npy"}
    assert info.files["metrics.csv"]["bytes"] == (trained / "metrics.csv").stat().st_size
    assert untrusted_run(trained) is None


def torn_metrics(folder):
    (folder / "metrics.csv").write_bytes((folder / "metrics.csv").read_bytes()[:3000])


def edited_accuracy(folder):
    fields = json.loads((folder / "run.json").read_text())
    fields["final_test_accuracy"] = 0.99
    (folder / "run.json").write_text(json.dumps(fields, indent=2))


def malformed_info(folder):
    (folder / "run.json").write_bytes((folder / "run.json").read_bytes()[:200])


def flipped_weights(folder):
    data = bytearray((folder / "weights.npy").read_bytes())
    data[-1] ^= 1
    (folder / "weights.npy").write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, file, says",
    [
        (torn_metrics, "metrics.csv", "torn since the run wrote it (3000 bytes"),
        (edited_accuracy, "run.json", "edited since the run wrote it"),
        (malformed_info, "run.json", "not a whole run record"),
        (flipped_weights, "weights.npy", "changed since the run wrote it"),
    ],
    ids=["torn-metrics", "edited-info", "malformed-info", "flipped-weights"],
)
def test_every_reader_refuses_a_damaged_record_naming_the_file(trained, tmp_path, damage, file, says):
    folder = damaged_copy(trained, tmp_path, damage)
    with pytest.raises(DamagedRecord, match=f"{re.escape(f'{folder / file}: {says}')}.*retrains that run"):
        RunInfo.read(folder / "run.json")
    kind, reason = untrusted_run(folder)
    assert kind == "damaged" and f"{folder / file}: {says}" in reason
    with pytest.raises(DamagedRecord, match=re.escape(str(folder / file))):
        summarize([folder / "run.json"], metrics_paths=[folder / "metrics.csv"])
    # The partial summary of a failed run lists it as damaged, with the reason, instead of crashing.
    table = summarize([folder / "run.json"], damaged_ok=True)
    assert table["status"].tolist() == ["damaged"] and says in table["log"].iloc[0]


def test_the_summary_takes_final_and_best_accuracy_from_the_metrics(trained):
    table = summarize([trained / "run.json"], metrics_paths=[trained / "metrics.csv"])
    metrics = (trained / "metrics.csv").read_text().splitlines()[1:]
    accuracies = [float(line.split(",")[2]) for line in metrics if line.split(",")[2]]
    assert table["final_test_accuracy"].iloc[0] == accuracies[-1]
    assert table["best_test_accuracy"].iloc[0] == max(accuracies)


def test_planning_sets_aside_only_a_damaged_record_and_only_outside_a_dry_run(trained, tmp_path):
    damaged = damaged_copy(trained, tmp_path, edited_accuracy)
    said = []
    set_aside_untrusted([trained, damaged], dry_run=True, log=said.append)
    assert len(said) == 1 and str(damaged / "run.json") in said[0] and "a real run sets it aside" in said[0]
    assert (damaged / "run.json").exists()
    set_aside_untrusted([trained, damaged], log=said.append)
    assert not (damaged / "run.json").exists() and (damaged / "run.json.damaged").exists()
    assert (trained / "run.json").exists()


@pytest.mark.parametrize(
    "changed, says",
    [
        ({"code": "0ther"}, "code 'c0de', now '0ther'"),
        ({"data": "fa5h"}, "data 'da7a', now 'fa5h'"),
        ({"noise_points": 8}, "noise_points 0, now 8"),
    ],
    ids=["code", "data", "noise-points"],
)
def test_a_record_made_from_other_inputs_is_outdated_and_set_aside_by_name(trained, tmp_path, changed, says):
    # What a results folder copied from another version of the workflow holds: whole records, of other code.
    folder = damaged_copy(trained, tmp_path, lambda folder: None)
    now = TrainingInputs(**{**INPUTS.as_record(), **changed})
    assert untrusted_run(folder, INPUTS) is None and untrusted_run(folder) is None
    kind, reason = untrusted_run(folder, now)
    assert (
        kind == "outdated" and reason == f"{folder / 'run.json'}: made from other inputs than this workflow's ({says})"
    )
    said = []
    set_aside_untrusted([folder], [now], dry_run=True, log=said.append)
    assert said == [f"warning: {reason} (a real run sets it aside and retrains)"] and (folder / "run.json").exists()
    set_aside_untrusted([folder], [now], log=said.append)
    assert said[1] == f"warning: {reason}"
    assert not (folder / "run.json").exists() and (folder / "run.json.outdated").exists()


def test_a_record_without_its_inputs_is_outdated_for_the_workflow(tmp_path, trained):
    # A record of the command line (python -m mnist_sgd.training.train) names no inputs: the workflow retrains it.
    folder = damaged_copy(trained, tmp_path, lambda folder: None)
    info = RunInfo.read(folder / "run.json")
    dataclasses.replace(info, inputs=None).write(folder / "run.json")
    kind, reason = untrusted_run(folder, INPUTS)
    assert kind == "outdated" and "code None, now 'c0de'" in reason
