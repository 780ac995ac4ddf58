"""The exact least-squares optimum: the solver against numpy.linalg.lstsq, and SGD converging to it."""

import numpy as np
import pytest
import torch

from mnist_sgd.data.cache import MNIST
from mnist_sgd.data.idx import NUM_CLASSES, NUM_FEATURES
from mnist_sgd.study.runs import TrainConfig, parse_training_set, training_set_name
from mnist_sgd.training.optimum import min_norm_solution, optimum
from mnist_sgd.training.train import train


def problem(rows, columns, rank=None, seed=0):
    """Random float64 images (rows x columns) of the given rank, with one-hot targets."""
    rng = np.random.default_rng(seed)
    rank = rank or min(rows, columns)
    images = rng.normal(size=(rows, rank)) @ rng.normal(size=(rank, columns))
    targets = np.eye(NUM_CLASSES)[rng.integers(0, NUM_CLASSES, rows)]
    return images, targets


def rank_deficient_pixels(rows, seed=0):
    """MNIST-like: many pixels 0 in every image, and one pixel a copy of another."""
    images, targets = problem(rows, 40, seed=seed)
    images[:, 30:] = 0
    images[:, 29] = images[:, 3]
    return images, targets


@pytest.mark.parametrize(
    "images, targets, rank",
    [
        (*problem(200, 30), 30),  # overdetermined, full rank
        (*rank_deficient_pixels(200), 29),  # overdetermined, rank-deficient Gram matrix
        (*problem(20, 50), 20),  # underdetermined: fewer images than pixels
        (*problem(30, 50, rank=12), 12),  # underdetermined and rank-deficient
    ],
    ids=["full-rank", "rank-deficient", "underdetermined", "underdetermined-rank-deficient"],
)
def test_the_solver_is_numpys_least_norm_least_squares_solution(images, targets, rank):
    expected, _, expected_rank, singular_values = np.linalg.lstsq(images, targets, rcond=None)
    weight, eigenvalues = min_norm_solution(torch.from_numpy(images), torch.from_numpy(targets))
    assert weight.dtype == torch.float64
    assert len(eigenvalues) == expected_rank == np.linalg.matrix_rank(images) == rank
    # The Gram matrix's nonzero eigenvalues are the squared singular values: the smallest nonzero one
    # (what the optimum record keeps) and the largest, against numpy's SVD.
    nonzero = singular_values[:rank]
    np.testing.assert_allclose(eigenvalues.sqrt()[[0, -1]].numpy(), [nonzero.min(), nonzero.max()], rtol=1e-6)
    np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-7, atol=1e-9)


def test_the_solver_works_in_float64_from_float32_data():
    images, targets = rank_deficient_pixels(300, seed=3)
    weight, _ = min_norm_solution(torch.from_numpy(images).float(), torch.from_numpy(targets).float())
    expected = np.linalg.lstsq(images.astype(np.float32).astype(np.float64), targets, rcond=None)[0]
    np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-7, atol=1e-9)


def small_linear_data(train_rows=400, test_rows=200, pixels=60, seed=0):
    """An MNIST-shaped data set a linear model cannot fit exactly: `pixels` lit pixels (the rest 0 in
    every image), more images than pixels, noisy labels."""
    rng = np.random.default_rng(seed)

    def split(rows):
        labels = rng.integers(0, NUM_CLASSES, rows)
        images = np.zeros((rows, NUM_FEATURES), dtype=np.float32)
        images[:, :pixels] = rng.uniform(0, 0.4, (rows, pixels))
        images[np.arange(rows), 5 * labels] += 0.6  # each class lights its own pixel
        return torch.from_numpy(images), torch.from_numpy(labels)

    train_images, train_labels = split(train_rows)
    test_images, test_labels = split(test_rows)
    targets = torch.nn.functional.one_hot(train_labels, NUM_CLASSES).float()
    targets[::7] = targets[::7].roll(1, dims=1)  # label noise: no exact fit
    return MNIST(train_images, targets, test_images, test_labels)


def full_loss(data, weight):
    residual = data.train_targets.double() - data.train_images.double() @ torch.as_tensor(weight).double()
    return float(0.5 * (residual * residual).sum() / data.train_images.shape[0])


def test_full_batch_sgd_from_zero_converges_to_the_optimum():
    """Full-batch SGD (one shuffled epoch = one batch of every image) from W = 0 approaches the optimum's
    loss, accuracy and the least-norm weights themselves."""
    data = small_linear_data()
    best = optimum(data, "trainall")
    exact, _ = min_norm_solution(data.train_images, data.train_targets)
    assert best.train_loss == pytest.approx(full_loss(data, exact), rel=1e-12)
    assert best.train_loss > 0.01  # the label noise keeps it away from 0
    curvature = torch.linalg.eigvalsh(data.train_images.double().T @ data.train_images.double()).max() / 400
    distances, gaps = [], []
    for iterations in (100, 1000, 2000):
        config = TrainConfig(
            batch_size=400, iterations=iterations, lr=float(1.9 / curvature), sampling="epochs", eval_every=iterations
        )
        result = train(data, config, log=lambda message: None)
        distances.append(np.linalg.norm(result.weight - exact.numpy()) / np.linalg.norm(exact.numpy()))
        gaps.append(full_loss(data, result.weight) - best.train_loss)
    assert distances[0] > distances[1] > distances[2] and distances[2] < 1e-3
    assert gaps[0] > gaps[1] > gaps[2] >= -1e-6 and gaps[2] < 1e-4 * best.train_loss
    assert result.test_accuracy[-1] == best.test_accuracy


def test_the_optimum_of_a_subset_is_that_of_the_runs_subset(small_data):
    """Same seed, same images: the optimum of train50_seed3 is the least-squares fit of the subset a run
    with train_size 50 and seed 3 trains on."""
    config = TrainConfig(train_size=50, batch_size=50, iterations=3000, lr=0.02, seed=3, sampling="epochs")
    name = "train50_seed3"
    assert training_set_name("scratch/train50_batch50_lr0.02_it3000_seed3_epochs") == name
    assert parse_training_set(name) == ("mnist", 50, 3) and parse_training_set("trainall") == ("mnist", None, 0)
    assert parse_training_set("fashion-mnist/train50_seed3") == ("fashion-mnist", 50, 3)
    assert training_set_name("fashion-mnist/torch/trainall_batch10_lr0.1_it5_seed2") == "fashion-mnist/trainall"
    best = optimum(small_data, name)
    assert (best.train_size, best.rank) == (50, 50)  # 50 images, fewer than the pixels: an exact fit
    assert best.train_loss < 1e-20
    result = train(small_data, config, log=lambda message: None)
    assert result.train_loss[-1] < 1e-3  # full-batch SGD on those 50 images fits them too
    other = optimum(small_data, "train50_seed4")
    assert other.test_accuracy != best.test_accuracy or other.train_loss != best.train_loss
