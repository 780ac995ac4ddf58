"""The gradient noise scales (mnist_sgd.training.noise) against a brute force from per-example autograd gradients."""

import numpy as np
import pytest
import torch

from mnist_sgd.training.noise import example_curvature, measurement_iterations, noise_scales


def brute_force(images, targets, weight):
    """B_simple and B_noise from each example's gradient (autograd) and the Hessian (autograd), as the
    definitions say: Sigma the per-example covariance, G the mean gradient, H the mean loss's Hessian."""
    x, y, w = images.double(), targets.double(), weight.double()

    def loss(flat, xi, yi):
        return 0.5 * ((xi @ flat.view_as(w) - yi) ** 2).sum()

    per_example = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(w.flatten(), x, y)
    gradient = per_example.mean(dim=0)
    centred = per_example - gradient
    sigma = centred.T @ centred / len(x)
    hessian = torch.autograd.functional.hessian(
        lambda flat: torch.func.vmap(loss, in_dims=(None, 0, 0))(flat, x, y).mean(), w.flatten()
    )
    b_simple = torch.trace(sigma) / (gradient @ gradient)
    b_noise = torch.trace(hessian @ sigma) / (gradient @ hessian @ gradient)
    return float(b_simple), float(b_noise)


@pytest.mark.parametrize("rows, columns", [(300, 20), (12, 20)], ids=["more rows than pixels", "fewer"])
@pytest.mark.parametrize("pixels", [True, False], ids=["uint8 pixels", "floats"])
def test_noise_scales_equal_the_brute_force_from_per_example_gradients(rows, columns, pixels, monkeypatch):
    monkeypatch.setattr("mnist_sgd.training.noise.CURVATURE_ROWS", 64)  # several blocks, the last one short
    generator = torch.Generator().manual_seed(rows)
    raw = torch.randint(0, 256, (rows, columns), generator=generator, dtype=torch.uint8)
    raw[:, 0] = 0  # a pixel that is dark in every image, as MNIST's border
    images = raw.float() / 255
    targets = torch.nn.functional.one_hot(torch.randint(0, 10, (rows,), generator=generator), 10).float()
    curvature = example_curvature(raw if pixels else images, targets)
    weights = [0.05 * torch.randn(columns, 10, generator=generator) for _ in range(3)]
    weights.insert(1, torch.zeros(columns, 10))  # W = 0, between others
    if rows > columns:  # near the least-squares optimum: a gradient small beside the terms it is the difference of
        optimum = torch.linalg.lstsq(images.double(), targets.double()).solution.float()
        weights.append(optimum + 1e-3 * torch.randn(columns, 10, generator=generator))
    measured = noise_scales(torch.stack(weights), curvature)
    assert len(measured) == len(weights)
    for weight, scales in zip(weights, measured):
        np.testing.assert_allclose(scales, brute_force(images, targets, weight), rtol=1e-4)
    # One weight alone gives what it gives among others, to rounding.
    np.testing.assert_allclose(noise_scales(weights[2][None], curvature), measured[2:3], rtol=1e-6)


def test_example_curvature_is_each_rows_quadratic_form_in_the_gram_matrix(monkeypatch):
    monkeypatch.setattr("mnist_sgd.training.noise.CURVATURE_ROWS", 7)  # several blocks, the last one short
    images = torch.rand(30, 8, dtype=torch.float64)
    labels = torch.nn.functional.one_hot(torch.arange(30) % 10, 10).double()
    for x, y in ((images, labels), (images[:5], labels[:5])):  # more images than pixels, and fewer
        hessian = x.T @ x / len(x)
        found = example_curvature(x, y)
        q, norms = torch.einsum("id,de,ie->i", x, hessian, x), (x * x).sum(dim=1)
        torch.testing.assert_close(found.hessian, hessian.float())
        torch.testing.assert_close(found.curvature, q.float())
        torch.testing.assert_close(found.norms, norms.float())
        torch.testing.assert_close(found.cross, (x.T @ y / len(x)).float())
        for i, w in enumerate((norms, q)):
            torch.testing.assert_close(found.weighted_hessian[i], (x.T @ (w[:, None] * x) / len(x)).float())
            torch.testing.assert_close(found.weighted_cross[i], (x.T @ (w[:, None] * y) / len(x)).float())
            torch.testing.assert_close(found.weighted_mean[i], (w * (y * y).sum(dim=1)).mean().float())


@pytest.mark.parametrize(
    "iterations, points, expected",
    [
        (6000, 5, [0, 1, 9, 77, 682, 6000]),
        (5, 10, [0, 1, 2, 3, 4, 5]),  # fewer iterations than points: each once
        (40, 1, [0, 40]),
        (40, 0, []),
    ],
)
def test_measurements_are_at_the_start_and_log_spaced_to_the_end(iterations, points, expected):
    assert measurement_iterations(iterations, points) == expected
