"""The dual form of the test accuracy (mnist_sgd.training.accuracy) against one plain evaluation per weight,
with its products computed per chunk and read from a data set's kernel table (mnist_sgd.data.kernel)."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import mnist_sgd.training.accuracy as accuracy
import mnist_sgd.training.train as train_module
from conftest import GRAPH_CONFIGS
from mnist_sgd.data.cache import as_images
from mnist_sgd.data.kernel import compute_table
from mnist_sgd.training.accuracy import AccuracyRecorder, Steps, TestKernel
from mnist_sgd.training.sgd import ScratchSGD
from mnist_sgd.training.steps import run_steps
from mnist_sgd.training.train import train

QUIET = {"log": lambda message: None}


def run_chunk(
    pixels, labels, test_pixels, test_labels, batch, count, lr, weight=None, indices=None, seed=0, table=False
):
    """Train `count` steps of batch `batch` (the batches `indices`, else random ones) from `weight` (the
    used pixels' rows), else W = 0, keeping every snapshot: (the recorder, holding them, and the Steps).
    With `table`, the dual form reads its products from the kernel table of a data set whose training
    images are `pixels` in reverse order, as a run's subset would."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.nn.functional.one_hot(labels, 10).float()
    updater = ScratchSGD(pixels, targets, lr)
    if weight is not None:
        updater.weight.copy_(weight(updater.weight.shape, g))
    test = test_pixels.index_select(1, updater.features)
    kernel = TestKernel(test)
    if table:
        order = torch.arange(len(pixels) - 1, -1, -1)  # the run's row i is the data set's row order[i]
        made = compute_table(SimpleNamespace(train_pixels=pixels.index_select(0, order), test_pixels=test_pixels))
        kernel = TestKernel(None, made.products, order, made.exact)
    recorder = AccuracyRecorder(as_images(test), test_labels, count, capacity=count, kernel=kernel)
    indices = torch.randint(len(pixels), (count * batch,), generator=g) if indices is None else indices
    updater.residuals = []
    run_steps(updater, torch.split(indices, batch), [True] * count, recorder.buffer, torch.empty(count))
    steps = Steps(updater.images.index_select(0, indices), indices, torch.stack(updater.residuals), lr / batch)
    return recorder, steps


def plain_counts(recorder):
    """Correct test images under each snapshot of `recorder`, one plain evaluation each."""
    return [int(((recorder.test_images @ w).argmax(1) == recorder.test_labels).sum()) for w in recorder.buffer]


def dual_chunk(pixels, labels, test_pixels, test_labels, batch, count, lr, table=False):
    """A chunk from a random weight (no ties at the start), scored in the dual form: (the recorder's
    counts, the plain counts of each snapshot)."""
    recorder, steps = run_chunk(
        pixels,
        labels,
        test_pixels,
        test_labels,
        batch,
        count,
        lr,
        weight=lambda shape, g: 0.02 * torch.randn(shape, generator=g),
        table=table,
    )
    recorder.score(list(range(count)), steps)
    return recorder.correct().tolist(), plain_counts(recorder)


def synthetic(rows, pixels, seed, high=256):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, high, (rows, pixels), generator=g, dtype=torch.uint8)
    images[:, :3] = 0  # pixels dark in every image, which the weight leaves out
    return images, torch.randint(10, (rows,), generator=g)


@pytest.mark.parametrize("table", [False, True], ids=["computed", "table"])
@pytest.mark.parametrize("batch", [1, 2, 5, 32])
@pytest.mark.parametrize("count", [1, 9, 10, 61])  # one snapshot, under a span, a span, several and a short one
def test_the_dual_form_scores_every_snapshot_as_one_plain_evaluation_does(batch, count, table, monkeypatch):
    pixels, labels = synthetic(300, 40, seed=count)
    test_pixels, test_labels = synthetic(500, 40, seed=count + 1)
    scored = []
    dense = accuracy._count_correct
    monkeypatch.setattr(accuracy, "_count_correct", lambda images, *a: scored.append(len(images)) or dense(images, *a))
    counts, plain = dual_chunk(pixels, labels, test_pixels, test_labels, batch, count, lr=0.05, table=table)
    assert counts == plain
    assert len(set(plain)) > 1 or count == 1  # predictions do change within the chunk
    assert scored[0] < 0.2 * len(test_pixels)  # the dual form decided the rest: few scored densely


@pytest.mark.parametrize("table", [False, True], ids=["computed", "table"])
def test_a_kernel_past_float32s_exact_integers_is_bounded_as_inexact(table):
    # 300 bright pixels: pixel products sum past 2^24, where float32 no longer holds every integer.
    pixels, labels = synthetic(200, 300, seed=3, high=256)
    pixels[:, 3:] |= 0xF0
    test_pixels, test_labels = synthetic(400, 300, seed=4)
    test_pixels[:, 3:] |= 0xF0
    assert (test_pixels.double() @ pixels.double().T).max() >= 2**24
    counts, plain = dual_chunk(pixels, labels, test_pixels, test_labels, batch=1, count=30, lr=0.001, table=table)
    assert counts == plain


def test_the_first_snapshots_ties_are_scored_densely():
    """At W = 0 every logit is 0: a tie the dual form cannot decide, left to the dense product."""
    pixels, labels = synthetic(100, 30, seed=5)
    test_pixels, test_labels = synthetic(200, 30, seed=6)
    recorder, steps = run_chunk(pixels, labels, test_pixels, test_labels, 1, 10, 0.05, indices=torch.arange(10))
    undecided, _ = recorder._dual(recorder.buffer, steps)
    assert undecided.all()
    recorder.score(list(range(10)), steps)
    assert recorder.correct().tolist() == plain_counts(recorder)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_training_with_the_dual_form_gives_the_curves_of_the_settled_margins(small_data, batch_size, monkeypatch):
    config = dataclasses.replace(GRAPH_CONFIGS["batch1"], batch_size=batch_size, iterations=260)
    used = []
    dual = AccuracyRecorder._dual
    monkeypatch.setattr(AccuracyRecorder, "_dual", lambda self, *a: used.append(1) or dual(self, *a))
    with_dual = train(small_data, config, **QUIET)
    assert len(used) == 10  # every chunk (a tenth of the run each)
    monkeypatch.setattr(train_module, "DUAL_BATCH", 0)
    without = train(small_data, config, **QUIET)
    assert len(used) == 10
    assert np.array_equal(with_dual.test_correct, without.test_correct)
    assert np.array_equal(with_dual.train_loss, without.train_loss)
    assert np.array_equal(with_dual.weight, without.weight)


def test_near_ties_are_left_to_the_dense_product(monkeypatch):
    """Classes 0 and 1 with weights a hair apart, the top two for every test image: which one wins is
    float32 rounding, so the dual form must leave every such image to the dense product."""
    pixels, labels = synthetic(300, 40, seed=7)
    labels = 2 + labels % 8  # no training image of class 0 or 1: their columns move alike
    test_pixels, _ = synthetic(400, 40, seed=8)
    test_labels = torch.zeros(400, dtype=torch.int64)

    def hair_apart(shape, g):
        weight = 0.01 * torch.rand(shape, generator=g)
        weight[:, 0] = weight[:, 1] = 1.0
        weight[:, 0] += 1e-6 * torch.randn(shape[0], generator=g)
        return weight

    recorder, steps = run_chunk(pixels, labels, test_pixels, test_labels, 1, 30, 0.001, weight=hair_apart, seed=9)
    undecided, _ = recorder._dual(recorder.buffer, steps)
    assert undecided.float().mean() > 0.5  # most are within rounding of the tie
    recorder.score(list(range(30)), steps)
    dense = accuracy._count_correct(recorder.test_images, test_labels, recorder.buffer)
    assert recorder.correct().tolist() == dense.tolist()


@pytest.mark.parametrize("train_size,batch_size", [(None, 1), (None, 10), (200, 4)])
def test_training_with_the_kernel_table_gives_the_curves_without(small_data, train_size, batch_size, monkeypatch):
    """The table changes only where the dual form's products come from (and so up to which batch it
    is used): every number of the run is the one it trains to without it, on a subset too."""
    config = dataclasses.replace(
        GRAPH_CONFIGS["batch1"], train_size=train_size, batch_size=batch_size, iterations=200, lr=0.01
    )
    table = compute_table(small_data)
    read = []
    products = TestKernel.products
    monkeypatch.setattr(
        TestKernel, "products", lambda self, steps: read.append(self.table is not None) or products(self, steps)
    )
    with_table = train(small_data, config, kernel=table, **QUIET)
    assert len(read) == 10 and all(read)  # every chunk read the table
    read.clear()
    without = train(small_data, config, **QUIET)
    assert not any(read)  # computed products at batch 1, the dense product from batch 3
    assert np.array_equal(with_table.test_correct, without.test_correct)
    assert np.array_equal(with_table.train_loss, without.train_loss)
    assert np.array_equal(with_table.weight, without.weight)
