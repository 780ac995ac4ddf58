"""The training program on a CUDA device; skipped where there is none (CI has none)."""

import warnings

import numpy as np
import pytest
import torch

import mnist_sgd.training.steps
from conftest import GRAPH_CONFIGS
from mnist_sgd.study.runs import TrainConfig
from mnist_sgd.training.steps import CudaGraphSteps
from mnist_sgd.training.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CONFIGS = {name: GRAPH_CONFIGS[name] for name in ("batch1", "subset", "torch")}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_cuda_runs_see_the_same_batches_and_give_the_same_curves(small_data, config):
    cpu = train(small_data, config, log=lambda m: None)
    cuda = train(small_data.to("cuda"), config, log=lambda m: None)
    np.testing.assert_allclose(cuda.train_loss, cpu.train_loss, rtol=1e-4, atol=1e-6)
    assert np.array_equal(cuda.test_correct, cpu.test_correct)


@pytest.mark.parametrize("config", GRAPH_CONFIGS.values(), ids=GRAPH_CONFIGS.keys())
def test_cuda_graphs_replay_the_eager_steps_bit_for_bit(small_data, config, monkeypatch):
    data = small_data.to("cuda")
    eager = train(data, config, log=lambda m: None, cuda_graphs=False)
    replays = []

    class Counting(CudaGraphSteps):
        def _capture(self, steps):
            replay = super()._capture(steps)
            return lambda: replays.append(1) or replay()

    monkeypatch.setattr(mnist_sgd.training.steps, "CudaGraphSteps", Counting)
    graphed = train(data, config, log=lambda m: None)
    assert len(replays) >= 5  # of 10 chunks
    assert np.array_equal(graphed.train_loss, eager.train_loss)
    assert np.array_equal(graphed.test_correct, eager.test_correct)


def test_training_does_not_synchronise_with_the_host_every_iteration(small_data):
    data = small_data.to("cuda")

    def synchronisations(iterations):
        config = TrainConfig(batch_size=8, iterations=iterations, lr=0.01)
        train(data, config, log=lambda m: None)  # warm-up: CUDA context, kernels, allocator, graphs
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                train(data, config, log=lambda m: None)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return [str(w.message) for w in caught if "synchroniz" in str(w.message)]

    # Both runs have 10 chunks (a chunk per progress line): a few synchronisations per chunk (the
    # divergence check, the progress line) and at the end are the design, whatever the torch version
    # counts among them (47 for 400 iterations under torch 2.11 on an H200). Twice the iterations in
    # the same chunks must add none; one per iteration would add 400.
    short, long = synchronisations(400), synchronisations(800)
    assert len(short) < 100, short[:5]
    assert len(long) <= len(short) + 5, long[:5]
