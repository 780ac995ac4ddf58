"""`snakemake tensorboard` (mnist_sgd.analysis.tensorboard): the runs' event files, read back with
TensorBoard's own reader and compared with their records; written once, and only where they change."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
from small_study import RUNS

from conftest import copy_of, snakemake
from mnist_sgd.analysis import tensorboard
from mnist_sgd.study.records import RunInfo, read_metrics

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read_events(path):
    accumulator = event_accumulator.EventAccumulator(str(path), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def written(completed, tmp_path_factory):
    """The completed small study after `snakemake tensorboard`; (folder, its output)."""
    folder = copy_of(completed[0], tmp_path_factory.mktemp("tensorboard") / "workflow")
    result = snakemake(folder, "--cores", "1", "tensorboard")
    assert result.returncode == 0, result.stdout
    return folder, result.stdout


def event_file(folder, summary, run):
    sweep = summary.set_index("run").loc[run, "sweeps"].split(";")[0]
    return folder / "results" / "tensorboard" / sweep / run / tensorboard.EVENT_FILE


def test_every_run_reads_back_as_its_records(written):
    folder, _ = written
    summary = pd.read_csv(folder / "results" / "summary.csv")
    for run in RUNS:
        events = read_events(event_file(folder, summary, run))
        metrics = read_metrics(folder / "results" / "runs" / run / "metrics.csv")
        loss = events.Scalars("train/loss")
        assert [e.step for e in loss] == metrics["iteration"].tolist()
        np.testing.assert_array_equal([e.value for e in loss], metrics["train_loss"].to_numpy(np.float32))
        accuracy = metrics.dropna(subset=["test_accuracy"])
        found = events.Scalars("test/accuracy")
        assert [e.step for e in found] == accuracy["iteration"].tolist()
        np.testing.assert_array_equal([e.value for e in found], accuracy["test_accuracy"].to_numpy(np.float32))
        noise = RunInfo.read(folder / "results" / "runs" / run / "run.json").noise_scale
        measured = events.Scalars("noise/b_noise")
        assert [e.step for e in measured] == noise["iteration"]  # the weight after t steps
        np.testing.assert_allclose([e.value for e in measured], noise["b_noise"], rtol=1e-6)
        row = summary.set_index("run").loc[run]
        assert events.Scalars("hparams/final_test_accuracy")[0].value == np.float32(row["final_test_accuracy"])
        assert events.Scalars("hparams/best_test_accuracy")[0].value == np.float32(row["best_test_accuracy"])
        session = events.PluginTagToContent("hparams")
        assert "_hparams_/session_start_info" in session
        assert run.encode() in session["_hparams_/session_start_info"]  # its trial id
        times = [e.wall_time for e in loss]
        assert times[0] == 0 and all(b > a for a, b in zip(times, times[1:]))  # its own seconds, from 0
    experiment = read_events(folder / "results" / "tensorboard" / tensorboard.EVENT_FILE)
    content = experiment.PluginTagToContent("hparams")["_hparams_/experiment"]
    for name, _, _ in tensorboard.HPARAMS:
        assert name.encode() in content
    assert b"hparams/steps_to_" in content  # the summary's targets are metrics of the table


def test_a_rerun_writes_nothing(written):
    folder, output = written
    files = sorted((folder / "results" / "tensorboard").rglob(tensorboard.EVENT_FILE))
    assert len(files) == len(RUNS) + 1  # and the experiment's
    before = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in files}
    again = snakemake(folder, "--cores", "1", "tensorboard")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, again.stdout
    forced = snakemake(folder, "--cores", "1", "--forcerun", "tensorboard", "--", "tensorboard")
    assert forced.returncode == 0, forced.stdout
    assert "event files 0 written" in (folder / "results" / "logs" / "tensorboard.log").read_text()
    assert {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in files} == before


def test_adding_a_run_writes_that_runs_events_alone(written, tmp_path):
    folder, _ = written
    summary = pd.read_csv(folder / "results" / "summary.csv")
    logdir = tmp_path / "tensorboard"
    runs_dir = folder / "results" / "runs"
    tensorboard.write_logdir(summary.iloc[:-1], runs_dir, logdir, log=lambda line: None)
    outcome = tensorboard.write_logdir(summary, runs_dir, logdir, log=lambda line: None)
    written_now = {name for name, what in outcome.items() if what == "written"}
    added = summary["run"].iloc[-1]
    assert written_now == {tensorboard.EVENT_FILE, next(n for n in outcome if f"/{added}/" in n)}
    assert sorted(json.loads((logdir / tensorboard.MANIFEST).read_text())) == sorted(outcome)
    # A run left out goes, with the folders it leaves empty.
    outcome = tensorboard.write_logdir(summary.iloc[1:], runs_dir, logdir, log=lambda line: None)
    gone = next(name for name, what in outcome.items() if what == "removed")
    assert not (logdir / gone).parent.exists()


def test_without_tensorboard_the_error_names_the_extra(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorboard"] + ["tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails
    with pytest.raises(tensorboard.TensorBoardMissing, match=r"pip install -e '\.\[tensorboard\]'"):
        tensorboard.write_logdir(pd.DataFrame(), tmp_path, tmp_path / "tb")
