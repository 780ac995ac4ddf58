"""The gradient noise scale (McCandlish et al., "An Empirical Model of Large-Batch Training", 2018),
exact for the least-squares model.

A training set's loss is L(W) = (1/N) sum_i l_i(W) with l_i = 0.5 * ||W^T x_i - y_i||^2. Example i's
gradient is the outer product g_i = x_i r_i^T, r_i = W^T x_i - y_i, and the Hessian is the same for
every W: H = I_10 (x) A with A = X^T X / N (one copy of A per output column). With G = (1/N) sum_i g_i
the full-batch gradient and Sigma = (1/N) sum_i g_i g_i^T - G G^T the per-example covariance:

    B_simple = tr(Sigma) / |G|^2,     tr(Sigma)   = (1/N) sum_i |x_i|^2 |r_i|^2 - |G|^2
    B_noise  = tr(H Sigma) / G^T H G, tr(H Sigma) = (1/N) sum_i q_i |r_i|^2 - G^T H G

where q_i = x_i^T A x_i and G^T H G = sum_c G_c^T A G_c. So, given A, q and |x_i|^2 (properties of
the training set, `example_curvature`, computed once with its optimum), a run's measurements are one
pass over the training set (R = X W - Y, then R^T X, for all its weights at once), in blocks: exact, and in
bounded memory.
torch's MSELoss scales every g_i (and G) by the same constant, which both ratios cancel.
"""

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..data.cache import as_images

# Where a run measures them by default, besides the start (the config's noise_points).
NOISE_POINTS = 8
ROWS = 256  # training rows per block of a measurement: 0.8 MB of floats, in cache for both products
CURVATURE_ROWS = 4096


def measurement_iterations(iterations, points):
    """Where a run of `iterations` steps measures its noise scales: at the start (0: W = 0) and at
    `points` iterations spaced evenly in log between 1 and the last, rounded (so fewer for short runs);
    none for `points` 0. Iteration t means the weight after t steps."""
    if points == 0:
        return []
    spaced = np.unique(np.round(np.geomspace(1, iterations, points)).astype(int)) if points > 1 else [iterations]
    return [0, *(int(t) for t in spaced)]


@dataclass
class Curvature:
    """What a training set's noise scales need besides the weight, for its N images x_i (rows of X):
    `hessian` A = X^T X / N (d x d), `curvature` q_i = x_i^T A x_i and `norms` |x_i|^2 (N each)."""

    hessian: torch.Tensor
    curvature: torch.Tensor
    norms: torch.Tensor

    def to(self, device):
        return Curvature(*(tensor.to(device) for tensor in (self.hessian, self.curvature, self.norms)))


def example_curvature(images):
    """The Curvature of the training set `images` (N x d floats, or uint8 pixels), in float32, by
    blocks of rows: two passes of an (N x d) x (d x d) product."""
    n, d = images.shape
    hessian = torch.zeros(d, d, dtype=torch.float64, device=images.device)
    for start in range(0, n, CURVATURE_ROWS):
        x = as_images(images[start : start + CURVATURE_ROWS]).float()
        hessian += (x.T @ x).double()
    hessian = (hessian / n).float()
    curvature, norms = [], []
    for start in range(0, n, CURVATURE_ROWS):
        x = as_images(images[start : start + CURVATURE_ROWS]).float()
        curvature.append(((x @ hessian) * x).sum(dim=1))
        norms.append((x * x).sum(dim=1))
    return Curvature(hessian, torch.cat(curvature), torch.cat(norms))


def noise_scales(pixels, targets, weights, curvature):
    """[(B_simple, B_noise), ...] of the least-squares loss at each of `weights` (k x d x 10) over the
    training set `pixels` (N x d, uint8 pixels or float images) with one-hot `targets` (N x 10), whose
    Curvature is `curvature`. One pass over the training set for all k weights together, in blocks
    small enough to stay in cache: R = X [W_1 .. W_k] - [Y .. Y], then R^T X (a product k times wider
    than one weight's: 4x faster per weight on one CPU thread here). A run passes all its own weights
    and no other run's, so its numbers depend on nothing else. NaN where the gradient is zero or not
    finite."""
    n, device = pixels.shape[0], weights.device
    k, d, classes = weights.shape
    stacked = weights.to(torch.float32).permute(1, 0, 2).reshape(d, k * classes)  # [W_1 .. W_k]
    gradient_t = torch.zeros(k * classes, d, dtype=torch.float64, device=device)  # [G_1 .. G_k]^T
    residual_norms = torch.empty(n, k, device=device)  # |r_i|^2 under each weight
    for start in range(0, n, ROWS):
        x = as_images(pixels[start : start + ROWS])
        residual = torch.addmm(targets[start : start + ROWS].repeat(1, k), x, stacked, beta=-1)
        gradient_t += (residual.T @ x).double()  # R^T X: the layout BLAS is fast at here
        residual_norms[start : start + ROWS] = (residual * residual).view(-1, k, classes).sum(dim=2)
    gradients = (gradient_t / n).view(k, classes, d).transpose(1, 2)  # (k, d, 10)
    residual_norms = residual_norms.double()
    norm2 = (gradients * gradients).sum(dim=(1, 2))
    g_h_g = ((curvature.hessian.double() @ gradients) * gradients).sum(dim=(1, 2))  # G^T H G, H = I_10 (x) A
    b_simple = ((curvature.norms.double() @ residual_norms) / n - norm2) / norm2
    b_noise = ((curvature.curvature.double() @ residual_norms) / n - g_h_g) / g_h_g
    return list(zip(b_simple.tolist(), b_noise.tolist()))


class NoiseRecorder:
    """A run's noise scales at its `measurement_iterations` (`iterations`), kept for its record.

    Measurements never feed back into training, so the weights are kept as they are reached and
    measured together at the end (`record`), in one pass over the training set.
    """

    def __init__(self, pixels, targets, curvature, iterations, points):
        self.pixels, self.targets, self.curvature = pixels, targets, curvature
        self.iterations = measurement_iterations(iterations, points)
        self.weights = []
        self.seconds = 0.0

    def measure(self, done, weight):
        """Keep `weight`, the weight after `done` steps (the next of `iterations`), to measure it."""
        assert done == self.iterations[len(self.weights)], (done, self.iterations)
        self.weights.append(weight.clone())

    def record(self):
        """{"iteration": [...], "b_simple": [...], "b_noise": [...]} of the weights kept so far (None
        where not finite); the seconds it took are added to `seconds`."""
        start = time.perf_counter()
        scales = (
            noise_scales(self.pixels, self.targets, torch.stack(self.weights), self.curvature) if self.weights else []
        )
        self.seconds += time.perf_counter() - start
        finite = lambda value: value if np.isfinite(value) else None  # noqa: E731
        return {
            "iteration": self.iterations[: len(scales)],
            "b_simple": [finite(b_simple) for b_simple, _ in scales],
            "b_noise": [finite(b_noise) for _, b_noise in scales],
        }
