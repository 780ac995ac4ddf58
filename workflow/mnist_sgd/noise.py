"""The gradient noise scale (McCandlish et al., "An Empirical Model of Large-Batch Training", 2018),
exact for the least-squares model.

A training set's loss is L(W) = (1/N) sum_i l_i(W) with l_i = 0.5 * ||W^T x_i - y_i||^2. Example i's
gradient is the outer product g_i = x_i r_i^T, r_i = W^T x_i - y_i, and the Hessian is the same for
every W: H = I_10 (x) A with A = X^T X / N (one copy of A per output column). With G = (1/N) sum_i g_i
the full-batch gradient and Sigma = (1/N) sum_i g_i g_i^T - G G^T the per-example covariance:

    B_simple = tr(Sigma) / |G|^2,     tr(Sigma)   = (1/N) sum_i |x_i|^2 |r_i|^2 - |G|^2
    B_noise  = tr(H Sigma) / G^T H G, tr(H Sigma) = (1/N) sum_i q_i |r_i|^2 - G^T H G

where q_i = x_i^T A x_i and G^T H G = ||X G||^2 / N. So, given q (a property of the training set,
`example_curvature`, computed once with its optimum), each measurement is three passes of an
(N x 784) x (784 x 10) product over the training set, in blocks: exact, and in bounded memory.
torch's MSELoss scales every g_i (and G) by the same constant, which both ratios cancel.
"""

import time

import numpy as np
import torch

from .data import as_images

# Where a run measures them by default, besides the start (the config's noise_points).
NOISE_POINTS = 10
ROWS = 4096  # training rows per block of a measurement (16 MB of floats at 784 pixels)


def measurement_iterations(iterations, points):
    """Where a run of `iterations` steps measures its noise scales: at the start (0: W = 0) and at
    `points` iterations spaced evenly in log between 1 and the last, rounded (so fewer for short runs);
    none for `points` 0. Iteration t means the weight after t steps."""
    if points == 0:
        return []
    spaced = np.unique(np.round(np.geomspace(1, iterations, points)).astype(int)) if points > 1 else [iterations]
    return [0, *(int(t) for t in spaced)]


def example_curvature(images):
    """q_i = x_i^T (X^T X / N) x_i for each row x_i of `images` (N x d floats), in float64: the
    curvature of the loss along example i. Through the smaller Gram matrix: X^T X (d x d) when N >= d,
    q = rowsum((X A) * X); else K = X X^T (N x N), q_i = sum_j K_ij^2 / N."""
    x = images.to(torch.float64)
    n = x.shape[0]
    if n >= x.shape[1]:
        return ((x @ (x.T @ x)) * x).sum(dim=1) / n
    kernel = x @ x.T
    return (kernel * kernel).sum(dim=1) / n


def noise_scales(pixels, targets, weight, curvature):
    """(B_simple, B_noise) of the least-squares loss at `weight` (d x 10) over the training set
    `pixels` (N x d, uint8 pixels or float images) with one-hot `targets` (N x 10); `curvature` is
    the training set's `example_curvature`. NaN where the gradient is zero or not finite."""
    n, device = pixels.shape[0], weight.device
    weight = weight.to(torch.float32)
    gradient = torch.zeros(weight.shape, dtype=torch.float64, device=device)
    squares = curved = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, n, ROWS):
        x = as_images(pixels[start : start + ROWS])
        residual = x @ weight - targets[start : start + ROWS]
        gradient += (x.T @ residual).double()
        residual_norms = (residual * residual).sum(dim=1).double()
        squares = squares + ((x * x).sum(dim=1).double() * residual_norms).sum()
        curved = curved + (curvature[start : start + ROWS] * residual_norms).sum()
    gradient /= n
    flat = gradient.to(torch.float32)
    along = torch.zeros((), dtype=torch.float64, device=device)  # ||X G||^2
    for start in range(0, n, ROWS):
        along = along + ((as_images(pixels[start : start + ROWS]) @ flat).double() ** 2).sum()
    norm2, g_h_g = (gradient * gradient).sum(), along / n
    b_simple = (squares / n - norm2) / norm2
    b_noise = (curved / n - g_h_g) / g_h_g
    return float(b_simple), float(b_noise)


class NoiseRecorder:
    """Measures a run's noise scales at `measurement_iterations` and keeps them for its record."""

    def __init__(self, pixels, targets, curvature, iterations, points):
        self.pixels, self.targets, self.curvature = pixels, targets, curvature
        self.iterations = measurement_iterations(iterations, points)
        self.record = {"iteration": [], "b_simple": [], "b_noise": []}
        self.seconds = 0.0

    def measure(self, done, weight):
        """Measure at the weight after `done` steps, if the run measures there."""
        if done not in self.iterations:
            return
        start = time.perf_counter()
        b_simple, b_noise = noise_scales(self.pixels, self.targets, weight, self.curvature)
        self.seconds += time.perf_counter() - start
        self.record["iteration"].append(done)
        self.record["b_simple"].append(b_simple if np.isfinite(b_simple) else None)
        self.record["b_noise"].append(b_noise if np.isfinite(b_noise) else None)
