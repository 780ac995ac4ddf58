"""The training program: reproducibility, subsets, the reference algorithm, outputs and errors."""

import dataclasses
import json
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

import mnist_sgd.training.noise
import mnist_sgd.training.steps
from conftest import GRAPH_CONFIGS
from mnist_sgd.study.records import RunInfo, git_state, write_metrics
from mnist_sgd.study.runs import MAX_LR, ConfigError, TrainConfig
from mnist_sgd.training.noise import measurement_iterations, noise_scales
from mnist_sgd.training.reference import reference_train
from mnist_sgd.training.sgd import UPDATERS, epoch_batches, seeded_generator, training_set, uniform_batches
from mnist_sgd.training.steps import CudaGraphSteps, chunks
from mnist_sgd.training.train import main, parse_args, train

QUIET = dict(log=lambda message: None)


def assert_same_curves(result, reference):
    np.testing.assert_allclose(result.train_loss, reference.train_loss, rtol=1e-5, atol=1e-7)
    assert np.array_equal(result.test_correct, reference.test_correct)


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(impl="scratch", batch_size=1, iterations=120, lr=0.01),
        TrainConfig(impl="scratch", batch_size=16, iterations=250, lr=0.01),
        TrainConfig(impl="scratch", train_size=40, batch_size=40, iterations=120, lr=0.01, seed=3),
        TrainConfig(impl="torch", batch_size=32, iterations=120, lr=0.05),
    ],
    ids=["batch1", "batch16", "subset40", "torch"],
)
def test_training_equals_the_seeds_algorithm(small_data, config):
    result = train(small_data, config, **QUIET)
    reference = reference_train(small_data, config)
    assert_same_curves(result, reference)
    assert result.test_accuracy[-1] > 0.5  # the synthetic classes are learnable: a real run, not noise


def test_same_seed_same_curves_other_seed_other_curves(small_data):
    config = TrainConfig(batch_size=8, iterations=50, lr=0.01, seed=5)
    first, second = train(small_data, config, **QUIET), train(small_data, config, **QUIET)
    assert np.array_equal(first.train_loss, second.train_loss)
    assert np.array_equal(first.test_correct, second.test_correct)
    other = train(small_data, TrainConfig(batch_size=8, iterations=50, lr=0.01, seed=6), **QUIET)
    assert not np.array_equal(first.train_loss, other.train_loss)


def test_subsets_are_seeded_and_of_the_requested_size(small_data):
    def subset(seed, size=50):
        images, targets = training_set(small_data, size, seeded_generator(seed))
        assert images.shape == (size, 784) and targets.shape == (size, 10)
        return images

    assert torch.equal(subset(0), subset(0))
    assert not torch.equal(subset(0), subset(1))
    rows = {tuple(r) for r in small_data.train_pixels.tolist()}
    assert all(tuple(r) in rows for r in subset(0).tolist())
    assert len({tuple(r) for r in subset(0, size=300).tolist()}) == len(rows)  # all: every image


@pytest.mark.parametrize("sampler, batch_size", [(uniform_batches, 3), (epoch_batches, 7)])
def test_chunks_regroup_the_sampler_blocks_without_changing_a_batch(monkeypatch, sampler, batch_size):
    monkeypatch.setattr("mnist_sgd.training.sgd.SAMPLE_BLOCK_ELEMENTS", 40)  # sampler blocks that chunks straddle
    blocks = list(sampler(50, batch_size, 97, torch.Generator().manual_seed(0)))
    assert len(blocks) > 2
    regrouped = list(chunks(iter(blocks), 10))
    assert [len(sizes) for _, sizes in regrouped] == [10] * 9 + [7]
    assert [s for _, sizes in regrouped for s in sizes] == [s for _, sizes in blocks for s in sizes]
    assert all(len(indices) == sum(sizes) for indices, sizes in regrouped)
    assert torch.equal(torch.cat([i for i, _ in regrouped]), torch.cat([i for i, _ in blocks]))


def test_chunks_also_end_at_each_cut_and_keep_their_regular_boundaries():
    blocks = list(uniform_batches(50, 3, 97, torch.Generator().manual_seed(0)))
    regrouped = list(chunks(iter(blocks), 10, cuts=[0, 1, 3, 25, 30, 97]))
    ends = np.cumsum([len(sizes) for _, sizes in regrouped]).tolist()
    assert ends == [1, 3, 10, 20, 25, 30, 40, 50, 60, 70, 80, 90, 97]
    assert torch.equal(torch.cat([i for i, _ in regrouped]), torch.cat([i for i, _ in blocks]))


@pytest.mark.parametrize("config", GRAPH_CONFIGS.values(), ids=GRAPH_CONFIGS.keys())
def test_noise_scales_are_measured_at_their_iterations_without_changing_a_number(small_data, config, monkeypatch):
    plain = train(small_data, config, **QUIET)
    weights = {}

    def measured(stacked, curvature):  # the real measurement, and the weights it saw
        weights.update(enumerate(stacked.clone()))
        return noise_scales(stacked, curvature)

    monkeypatch.setattr(mnist_sgd.training.noise, "noise_scales", measured)
    monkeypatch.setattr(mnist_sgd.training.steps, "CudaGraphSteps", EmulatedGraphs)  # chunk shapes vary with the cuts
    result = train(small_data, config, noise_points=4, **QUIET)
    assert np.array_equal(result.train_loss, plain.train_loss)
    assert np.array_equal(result.test_correct, plain.test_correct)
    iterations = result.noise_scale["iteration"]
    assert iterations == measurement_iterations(config.iterations, 4) and iterations[-1] == config.iterations
    # Each measurement saw the weight after that many steps: rerun that many steps and compare.
    for k, steps_done in enumerate(iterations[1:], start=1):
        shorter = train(small_data, dataclasses.replace(config, iterations=steps_done), **QUIET)
        np.testing.assert_array_equal(weights[k].cpu().numpy(), shorter.weight)
    assert not weights[0].any()  # at the start, W = 0
    assert all(b > 0 for b in result.noise_scale["b_noise"] + result.noise_scale["b_simple"])
    assert 0 < result.noise_seconds < result.wall_seconds


class EmulatedGraphs(CudaGraphSteps):
    """CudaGraphSteps on the CPU, with CUDA emulated: a capture records the steps without running them,
    and a replay runs them. Everything else (chunk shapes, static inputs and outputs) is the real code."""

    device_type = "cpu"
    replays = 0

    def _warm_up(self, steps):
        steps()

    def _capture(self, steps):
        def replay():
            EmulatedGraphs.replays += 1
            steps()

        return replay


@pytest.mark.parametrize("config", GRAPH_CONFIGS.values(), ids=GRAPH_CONFIGS.keys())
def test_graph_replays_of_chunks_give_the_eager_curves(small_data, config, monkeypatch):
    eager = train(small_data, config, **QUIET)
    monkeypatch.setattr(mnist_sgd.training.steps, "CudaGraphSteps", EmulatedGraphs)
    EmulatedGraphs.replays = 0
    replayed = train(small_data, config, **QUIET)
    assert EmulatedGraphs.replays >= 5  # of the 10 chunks (a tenth of the run each): most were replays
    assert np.array_equal(replayed.train_loss, eager.train_loss)
    assert np.array_equal(replayed.test_correct, eager.test_correct)
    assert replayed.cuda_graphs and replayed.cuda_graphs_error is None


class FailingCapture(EmulatedGraphs):
    """Emulated CUDA graphs whose capture number `fail_at` raises, as an operation capture does not allow would."""

    captures, fail_at = 0, 1

    def _capture(self, steps):
        FailingCapture.captures += 1
        if FailingCapture.captures == FailingCapture.fail_at:
            raise RuntimeError("operation not permitted when stream is capturing\nmore detail")
        return super()._capture(steps)


@pytest.mark.parametrize("fail_at", [1, 2])
@pytest.mark.parametrize("config", GRAPH_CONFIGS.values(), ids=GRAPH_CONFIGS.keys())
def test_a_failed_capture_goes_on_eagerly_from_its_chunk_with_no_iteration_lost_or_repeated(
    small_data, config, fail_at, monkeypatch
):
    eager = train(small_data, config, **QUIET)
    monkeypatch.setattr(mnist_sgd.training.steps, "CudaGraphSteps", FailingCapture)
    FailingCapture.captures, FailingCapture.fail_at = 0, fail_at
    lines = []
    result = train(small_data, config, log=lines.append)
    assert np.array_equal(result.train_loss, eager.train_loss)
    assert np.array_equal(result.test_correct, eager.test_correct)
    if FailingCapture.captures < fail_at:  # a run with fewer chunk shapes: nothing failed
        assert result.cuda_graphs
        return
    assert not result.cuda_graphs
    assert result.cuda_graphs_error == "RuntimeError: operation not permitted when stream is capturing"
    failures = [line for line in lines if "capture failed" in line]
    assert failures == [
        "CUDA graph capture failed (RuntimeError: operation not permitted when stream is "
        "capturing); going on with eager launches"
    ]


def test_the_first_row_is_the_zero_model(small_data):
    result = train(small_data, TrainConfig(batch_size=4, iterations=3), **QUIET)
    assert result.train_loss[0] == pytest.approx(0.5)  # 0.5 * ||Y||^2 / b with one-hot rows
    zeros = int((small_data.test_labels == 0).sum())  # argmax of all-zero logits is class 0
    assert result.test_correct[0] == zeros


def test_eval_every_skips_evaluations_but_keeps_the_last(small_data):
    every = train(small_data, TrainConfig(batch_size=4, iterations=23, eval_every=1), **QUIET)
    sparse = train(small_data, TrainConfig(batch_size=4, iterations=23, eval_every=5), **QUIET)
    evaluated = np.flatnonzero(sparse.test_correct >= 0)
    assert evaluated.tolist() == [0, 5, 10, 15, 20, 22]
    assert np.array_equal(sparse.test_correct[evaluated], every.test_correct[evaluated])
    assert np.isnan(sparse.test_accuracy[1])


@pytest.mark.parametrize(
    "config, message",
    [
        (TrainConfig(impl="adam"), "impl='adam'"),
        (TrainConfig(batch_size=0), "batch_size=0"),
        (TrainConfig(iterations=0), "iterations=0"),
        (TrainConfig(eval_every=0), "eval_every=0"),
        (TrainConfig(lr=float("nan")), "lr=nan"),
        (TrainConfig(lr=-1.0), "lr=-1.0"),
        (TrainConfig(train_size=301), "larger than the 300 training images"),
        (TrainConfig(device="tpu"), "device='tpu'"),
        (TrainConfig(batch_size=10**12), "batch_size=1000000000000: must be an integer from 1 to 100000"),
        (TrainConfig(iterations=10**12), "iterations=1000000000000: must be an integer from 1 to 10000000"),
        (TrainConfig(seed=2**64), "seed=18446744073709551616: must be an integer from 0 to"),
        (TrainConfig(batch_size=True), "batch_size=True"),
        (
            TrainConfig(impl="torch", train_size=100, batch_size=1000),
            "batch_size=1000: impl torch draws each epoch's batches without replacement from the 100 training",
        ),
        (TrainConfig(impl="torch", batch_size=301), "without replacement from the 300 training images"),
    ],
)
def test_bad_parameters_are_refused_with_the_key_and_the_rule(small_data, config, message):
    with pytest.raises(ConfigError, match=message):
        train(small_data, config, **QUIET)


def test_cuda_graphs_are_switched_off_by_flag():
    required = ["--data", "d", "--metrics", "m", "--info", "i"]
    assert parse_args(required).cuda_graphs
    assert not parse_args(required + ["--no-cuda-graphs"]).cuda_graphs


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit, match="CUDA is not available"):
        main(["--data", "x.pt", "--metrics", "m.csv", "--info", "i.json", "--device", "cuda"])


def test_command_line_writes_metrics_and_info(tmp_path, small_data):
    metrics, info = tmp_path / "out" / "metrics.csv", tmp_path / "out" / "run.json"
    main(
        [
            "--data",
            str(tmp_path / "mnist.pt"),
            "--metrics",
            str(metrics),
            "--info",
            str(info),
            "--weights",
            str(tmp_path / "out" / "weights.npy"),
            "--impl",
            "scratch",
            "--train-size",
            "100",
            "--batch-size",
            "10",
            "--iterations",
            "30",
            "--lr",
            "0.01",
            "--seed",
            "2",
            "--device",
            "cpu",
            "--threads",
            "1",
        ]
    )
    table = pd.read_csv(metrics)
    assert list(table.columns) == ["iteration", "train_loss", "test_accuracy"]
    assert table["iteration"].tolist() == list(range(1, 31))
    record = json.loads(info.read_text())
    assert record["params"]["train_size"] == 100 and record["resolved"]["device"] == "cpu"
    assert record["resolved"]["cuda_graphs"] is False
    assert record["final_test_accuracy"] == table["test_accuracy"].iloc[-1]
    assert record["best_test_accuracy"] == table["test_accuracy"].max()
    assert record["final_train_loss"] == pytest.approx(table["train_loss"].iloc[-1], rel=1e-7)
    expected = train(
        small_data, TrainConfig(train_size=100, batch_size=10, iterations=30, lr=0.01, seed=2, device="cpu"), **QUIET
    )
    np.testing.assert_array_equal(table["train_loss"].to_numpy(np.float32), expected.train_loss)
    assert record["status"] == "ok" and record["diverged_at_iteration"] is None and record["iterations_done"] == 30
    assert 100 < record["peak_rss_mb"] < 4000 and record["gpu_peak_allocated_mb"] is None
    assert {"git_commit", "git_dirty", "host", "slurm_job_id", "versions", "device_name"} <= set(record)
    assert record["device_name"] and record["host"] and record["versions"]["torch"] == torch.__version__
    assert record["data_sha256"] == small_data.sha256
    assert record["resolved"]["device_index"] is None and record["resolved"]["cuda_graphs_error"] is None
    # The final weight, as the plain algorithm computes it, loadable without pickle; its confusion matrix.
    weight = np.load(tmp_path / "out" / "weights.npy", allow_pickle=False)
    plain = reference_train(small_data, TrainConfig(train_size=100, batch_size=10, iterations=30, lr=0.01, seed=2))
    assert weight.shape == (784, 10) and weight.dtype == np.float32
    np.testing.assert_allclose(weight, plain.weight, rtol=1e-5, atol=1e-7)
    predictions = (small_data.test_images.numpy() @ weight).argmax(axis=1)
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (small_data.test_labels.numpy(), predictions), 1)
    assert record["confusion"] == confusion.tolist() and confusion.sum() == 100
    read = RunInfo.read(info)  # how the summary and the figures read it
    assert read.params == TrainConfig(train_size=100, batch_size=10, iterations=30, lr=0.01, seed=2, device="cpu")
    assert (
        read.resolved.train_size == 100
        and not read.diverged
        and read.final_test_accuracy == record["final_test_accuracy"]
    )


@pytest.mark.parametrize("impl", ["scratch", "torch"])
def test_a_diverging_run_stops_at_the_first_non_finite_loss(tmp_path, small_data, impl):
    config = TrainConfig(impl=impl, batch_size=10, iterations=3000, lr=50.0)
    result = train(small_data, config, **QUIET)
    reference = reference_train(small_data, config) if impl == "scratch" else None
    losses = result.train_loss
    assert result.status == "diverged" and result.diverged_at == len(losses) < config.iterations
    assert np.isfinite(losses[:-1]).all() and not np.isfinite(losses[-1])
    assert len(result.test_correct) == len(losses)
    if reference is not None:  # the same iteration the plain algorithm first goes non-finite
        assert result.diverged_at == 1 + np.flatnonzero(~np.isfinite(reference.train_loss))[0]
    write_metrics(tmp_path / "m.csv", result)
    table = pd.read_csv(tmp_path / "m.csv")
    assert len(table) == result.diverged_at and not np.isfinite(table["train_loss"].iloc[-1])


@pytest.mark.parametrize("impl, batch_size", [("scratch", 1), ("scratch", 300), ("torch", 1)])
def test_the_largest_learning_rate_planning_admits_diverges_instead_of_crashing(small_data, impl, batch_size):
    result = train(small_data, TrainConfig(impl=impl, batch_size=batch_size, iterations=200, lr=MAX_LR), **QUIET)
    assert result.status == "diverged" and result.diverged_at <= 100
    with pytest.raises(ConfigError, match="lr=1e[+]308: larger than 3.402823e[+]38, the largest float32 number"):
        TrainConfig(lr=1e308).validate()


def test_progress_lines_give_iteration_loss_accuracy_speed_and_eta(small_data):
    lines = []
    result = train(small_data, TrainConfig(batch_size=10, iterations=300, lr=0.001), log=lines.append)
    assert len(lines) == 10
    for line in lines:
        match = re.fullmatch(
            r"iteration (\d+)/300  loss ([\d.]+)  test accuracy ([\d.]+) \(iteration (\d+)\)  "
            r"\d+ it/s  eta [\d.]+ s",
            line,
        )
        assert match, line
        done, loss, accuracy, evaluated = match.groups()
        assert float(loss) == pytest.approx(result.train_loss[int(done) - 1], abs=1e-5)
        assert float(accuracy) == pytest.approx(result.test_accuracy[int(evaluated) - 1], abs=1e-4)
        assert evaluated == done  # each line is written after its chunk is scored
    assert lines[-1].startswith("iteration 300/300") and lines[-1].endswith("eta 0.0 s")


def test_git_state_names_the_commit_and_whether_tracked_files_changed(tmp_path):
    assert git_state(tmp_path) == (None, None)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "code.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "untracked.txt").write_text("results")
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path) == (head, True)


def test_metrics_csv_leaves_unevaluated_accuracy_empty(tmp_path, small_data):
    result = train(small_data, TrainConfig(batch_size=4, iterations=4, eval_every=3), **QUIET)
    write_metrics(tmp_path / "m.csv", result)
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines[2].split(",")[2] == "" and lines[4].split(",")[2] != ""


def test_scratch_sgd_on_torchs_batches_at_a_fifth_of_its_learning_rate_is_torch_optim(small_data):
    # MSELoss's gradient is 2/10 of the from-scratch one: lr 0.0002 from scratch is lr 0.001 in torch.optim,
    # once both draw the same shuffled epochs (sampling: epochs).
    scratch = TrainConfig(impl="scratch", sampling="epochs", batch_size=32, iterations=1000, lr=0.0002)
    torch_optim = TrainConfig(impl="torch", batch_size=32, iterations=1000, lr=0.001)
    scratch_result, torch_result = train(small_data, scratch, **QUIET), train(small_data, torch_optim, **QUIET)
    np.testing.assert_allclose(scratch_result.train_loss, 5 * torch_result.train_loss, rtol=1e-5)
    assert np.array_equal(scratch_result.test_correct, torch_result.test_correct)
    # The weights themselves, after the same 1000 batches:
    updaters = [
        UPDATERS[impl](small_data.train_images, small_data.train_targets, lr)
        for impl, lr in (("scratch", 0.0002), ("torch", 0.001))
    ]
    for indices, sizes in epoch_batches(300, 32, 1000, seeded_generator(0)):
        for batch in torch.split(indices, sizes):
            for updater in updaters:
                updater.step(batch)
    scratch_sgd, torch_sgd = updaters
    torch.testing.assert_close(torch_sgd.weight[scratch_sgd.features], scratch_sgd.weight, rtol=1e-4, atol=1e-7)
    assert scratch_sgd.weight.abs().max() > 1e-3  # it moved
