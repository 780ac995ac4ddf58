"""The study's math against autograd and plain references."""

import numpy as np
import pytest
import torch

from mnist_sgd.data.cache import as_images
from mnist_sgd.data.idx import NUM_CLASSES, NUM_FEATURES
from mnist_sgd.training.accuracy import EVAL_BLOCK, SETTLE_SPAN, AccuracyRecorder
from mnist_sgd.training.reference import seed_gradient, seed_loss
from mnist_sgd.training.sgd import (
    UPDATERS,
    ScratchSGD,
    TorchSGD,
    epoch_batches,
    uniform_batches,
)


def random_problem(batch_size=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 784, generator=g, dtype=torch.float64)
    targets = torch.nn.functional.one_hot(torch.randint(10, (batch_size,), generator=g), 10).double()
    weight = torch.randn(784, 10, generator=g, dtype=torch.float64) * 0.01
    return images, targets, weight


def test_gradient_is_the_autograd_gradient_of_the_loss():
    images, targets, weight = random_problem()
    weight.requires_grad_(True)
    loss = seed_loss(images, targets, weight)
    (autograd,) = torch.autograd.grad(loss, weight)
    torch.testing.assert_close(seed_gradient(images, targets, weight.detach()), autograd)


def test_loss_is_half_the_mean_squared_row_norm():
    images, targets, weight = random_problem(batch_size=5)
    expected = 0.5 * sum(((targets[i] - images[i] @ weight) ** 2).sum() for i in range(5)) / 5
    torch.testing.assert_close(seed_loss(images, targets, weight), expected)


@pytest.mark.parametrize(
    "batch",
    [torch.tensor([3, 0, 3, 5]), torch.tensor([0, 1, 2, 2, 3, 4, 5, 6, 6, 6])],
    ids=["gathered", "weighted-by-count"],
)
def test_scratch_step_returns_the_loss_before_and_takes_one_gradient_step(batch):
    images, targets, _ = random_problem(batch_size=7)
    images, targets = images.float(), targets.float()
    sgd = ScratchSGD(images, targets, lr=0.05)
    sgd.weight += 0.01
    before = sgd.weight.clone()
    loss = sgd.step(batch)
    batch_images, batch_targets = images[batch], targets[batch]  # repeats count as often as drawn
    torch.testing.assert_close(loss, seed_loss(batch_images, batch_targets, before))
    expected = before - 0.05 * seed_gradient(batch_images, batch_targets, before)
    torch.testing.assert_close(sgd.weight, expected)


def test_torch_sgd_is_scratch_sgd_with_the_mse_scaling():
    # MSELoss averages over batch * 10 outputs and has no 1/2: its gradient is 2/10 of the scratch one,
    # so torch.optim with lr equals the scratch update with lr * 0.2, both from zero.
    images, targets, _ = random_problem(batch_size=20)
    images, targets = images.float(), targets.float()
    scratch, torch_sgd = ScratchSGD(images, targets, lr=0.02), TorchSGD(images, targets, lr=0.1)
    assert torch.equal(torch_sgd.weight, scratch.weight)
    for step in range(5):
        batch = torch.arange(step, step + 8)
        scratch_loss = scratch.step(batch)
        torch_loss = torch_sgd.step(batch)
        torch.testing.assert_close(torch_loss, scratch_loss * 2 / 10)
        torch.testing.assert_close(torch_sgd.weight, scratch.weight)


@pytest.mark.parametrize("snapshots", [1, EVAL_BLOCK - 1, EVAL_BLOCK, 2 * EVAL_BLOCK + 3])
def test_blocked_accuracy_equals_one_evaluation_per_snapshot(snapshots):
    g = torch.Generator().manual_seed(snapshots)
    test_images = torch.rand(50, 784, generator=g)
    test_labels = torch.randint(10, (50,), generator=g)
    weights = torch.randn(snapshots, 784, 10, generator=g)
    recorder = AccuracyRecorder(test_images, test_labels, iterations=snapshots + 2, capacity=EVAL_BLOCK)
    for start in range(0, snapshots, EVAL_BLOCK):  # iteration 0 and the last are left out
        chunk = weights[start : start + EVAL_BLOCK]
        recorder.buffer[: len(chunk)] = chunk
        recorder.score(list(range(start + 1, start + 1 + len(chunk))))
    counts = recorder.correct()
    assert isinstance(counts, np.ndarray)
    expected = [int(((test_images @ w).argmax(1) == test_labels).sum()) for w in weights]
    assert counts.tolist() == [-1] + expected + [-1]


def test_uniform_batches_draw_with_replacement_reproducibly():
    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        return [(i, s) for i, s in uniform_batches(20, batch_size=50, iterations=30, generator=g)]

    blocks = draw(0)
    indices = torch.cat([i for i, _ in blocks])
    assert sum(sum(s) for _, s in blocks) == indices.numel() == 30 * 50
    assert all(size == 50 for _, sizes in blocks for size in sizes)
    assert 0 <= indices.min() and indices.max() < 20
    assert len(indices.unique()) == 20  # 1500 draws from 20: every sample appears, repeats happen
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(blocks, draw(0)))
    assert not torch.equal(indices, torch.cat([i for i, _ in draw(1)]))


def test_uniform_batches_come_in_bounded_blocks():
    g = torch.Generator().manual_seed(0)
    blocks = list(uniform_batches(10, batch_size=100_000, iterations=25, generator=g))
    assert sum(len(s) for _, s in blocks) == 25
    assert all(i.numel() <= max(100_000, 1 << 20) for i, _ in blocks)


def test_epoch_batches_visit_every_sample_once_per_epoch():
    g = torch.Generator().manual_seed(0)
    blocks = list(epoch_batches(10, batch_size=4, iterations=7, generator=g))
    sizes = [s for _, sizes in blocks for s in sizes]
    assert sizes == [4, 4, 2, 4, 4, 2, 4]  # the last batch of an epoch keeps the remainder
    first, second = (torch.sort(i).values for i, _ in blocks[:2])
    assert torch.equal(first, torch.arange(10)) and torch.equal(second, torch.arange(10))
    assert not torch.equal(blocks[0][0], blocks[1][0])  # reshuffled every epoch
    assert blocks[2][0].numel() == 4


def test_a_weighted_step_in_row_blocks_is_the_seeds_step(monkeypatch):
    import mnist_sgd.training.accuracy

    monkeypatch.setattr(mnist_sgd.training.sgd, "ROW_BLOCK", 64)  # 300 rows: five blocks, the last one short
    images, targets, _ = random_problem(batch_size=300, seed=3)
    images, targets = images.float(), targets.float()
    batch = torch.randint(300, (300,), generator=torch.Generator().manual_seed(0))
    sgd = ScratchSGD(images, targets, lr=0.05)
    sgd.weight += 0.01
    before = sgd.weight.clone()
    loss = sgd.step(batch)
    torch.testing.assert_close(loss, seed_loss(images[batch], targets[batch], before))
    expected = before - 0.05 * seed_gradient(images[batch], targets[batch], before)
    torch.testing.assert_close(sgd.weight, expected)


@pytest.mark.parametrize("impl", ["scratch", "torch"])
@pytest.mark.parametrize("batch_size", [7, 60], ids=["gathered", "weighted"])
def test_training_on_uint8_pixels_takes_exactly_the_steps_of_training_on_their_floats(impl, batch_size):
    """The cache keeps pixels as bytes; each step makes the rows it reads floats: the same numbers, bit for bit."""
    pixels = torch.randint(0, 256, (64, NUM_FEATURES), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    pixels[:, :50] = 0  # pixels blank in every image, as MNIST's
    targets = torch.nn.functional.one_hot(torch.arange(64) % NUM_CLASSES, NUM_CLASSES).float()
    on_bytes, on_floats = (UPDATERS[impl](images, targets, lr=0.01) for images in (pixels, as_images(pixels)))
    generator = torch.Generator().manual_seed(2)
    for _ in range(5):
        batch = torch.randint(64, (batch_size,), generator=generator)
        assert torch.equal(on_bytes.step(batch), on_floats.step(batch))
    assert torch.equal(on_bytes.weight, on_floats.weight)
    assert torch.equal(as_images(pixels), pixels.float() / 255)


def test_pixels_that_are_zero_in_every_image_keep_zero_weight_and_are_skipped():
    images, targets, _ = random_problem(batch_size=12, seed=4)
    images, targets = images.float(), targets.float()
    images[:, :100] = 0
    images[:, 700:] = 0
    sgd = ScratchSGD(images, targets, lr=0.05)
    assert sgd.features.tolist() == list(range(100, 700))
    full = torch.zeros(784, 10)
    for step in range(3):
        batch = torch.arange(step, step + 5)
        loss = sgd.step(batch)
        torch.testing.assert_close(loss, seed_loss(images[batch], targets[batch], full))
        full = full - 0.05 * seed_gradient(images[batch], targets[batch], full)
        torch.testing.assert_close(sgd.weight, full[100:700])
        assert not full[:100].any() and not full[700:].any()


@pytest.fixture
def scored_rows(monkeypatch):
    """The number of images of each dense product the accuracy recorder computes, in order."""
    import mnist_sgd.training.accuracy

    rows = []
    count_correct = mnist_sgd.training.accuracy._count_correct
    monkeypatch.setattr(
        mnist_sgd.training.accuracy,
        "_count_correct",
        lambda images, *args: rows.append(len(images)) or count_correct(images, *args),
    )
    return rows


def test_images_whose_prediction_cannot_change_are_scored_once(scored_rows):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(784, 10, generator=g)
    # 300 images far from any decision boundary (aligned with one class's weights) and 100 random
    # ones close to boundaries, under snapshots that drift enough to flip some of the latter.
    classes = torch.randint(10, (300,), generator=g)
    aligned = 5 * (base / base.norm(dim=0)).T[classes] + 0.01 * torch.rand(300, 784, generator=g)
    test_images = torch.cat([aligned, torch.rand(100, 784, generator=g)])
    test_labels = torch.randint(10, (400,), generator=g)
    weights = base + torch.cumsum(torch.randn(EVAL_BLOCK, 784, 10, generator=g) * 0.02, dim=0)
    recorder = AccuracyRecorder(test_images, test_labels, iterations=EVAL_BLOCK, capacity=EVAL_BLOCK)
    recorder.buffer[:] = weights
    recorder.score(list(range(EVAL_BLOCK)))
    counts = recorder.correct()
    predictions = torch.stack([(test_images @ w).argmax(1) for w in weights])
    assert (predictions[:, 300:] != predictions[0, 300:]).any()  # some predictions do change
    assert counts.tolist() == (predictions == test_labels).sum(1).tolist()
    segments = -(-(EVAL_BLOCK - 1) // SETTLE_SPAN)
    assert len(scored_rows) == segments and all(rows <= 100 for rows in scored_rows)  # never the settled 300


def test_weights_drifting_along_a_line_settle_the_images_whose_prediction_stays_though_the_weights_move_far(
    scored_rows,
):
    """Within a segment only the weights' distance from the line between its ends counts, not how far
    they move: a bound from one snapshot (|x| |W_t - W_m|) would settle no image of this chunk."""
    g = torch.Generator().manual_seed(1)
    test_images = torch.rand(500, 784, generator=g)
    test_labels = torch.randint(10, (500,), generator=g)
    base, direction = torch.randn(784, 10, generator=g), torch.randn(784, 10, generator=g)
    steps = torch.linspace(0, 1, EVAL_BLOCK).view(-1, 1, 1)
    weights = base + steps * direction + 1e-4 * torch.randn(EVAL_BLOCK, 784, 10, generator=g)
    recorder = AccuracyRecorder(test_images, test_labels, iterations=EVAL_BLOCK, capacity=EVAL_BLOCK)
    recorder.buffer[:] = weights
    recorder.score(list(range(EVAL_BLOCK)))
    predictions = torch.stack([(test_images @ w).argmax(1) for w in weights])
    changed = (predictions != predictions[0]).any(dim=0)
    assert changed.float().mean() > 0.5  # the line crosses the decision boundaries of most images
    assert recorder.correct().tolist() == (predictions == test_labels).sum(1).tolist()
    assert sum(scored_rows) < 0.25 * len(test_images) * len(scored_rows)  # the dense product for under a quarter
    margins = (test_images @ weights[EVAL_BLOCK // 2]).topk(2, dim=1).values.diff(dim=1).abs().squeeze(1)
    move = (weights - weights[EVAL_BLOCK // 2]).norm(dim=1).max()
    assert (margins <= 2 * test_images.norm(dim=1) * move).all()  # the bound from the middle settles none
