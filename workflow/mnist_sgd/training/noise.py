"""The gradient noise scale (McCandlish et al., "An Empirical Model of Large-Batch Training", 2018),
exact for the least-squares model.

A training set's loss is L(W) = (1/N) sum_i l_i(W) with l_i = 0.5 * ||W^T x_i - y_i||^2. Example i's
gradient is the outer product g_i = x_i r_i^T, r_i = W^T x_i - y_i, and the Hessian is the same for
every W: H = I_10 (x) A with A = X^T X / N (one copy of A per output column). With G = (1/N) sum_i g_i
the full-batch gradient and Sigma = (1/N) sum_i g_i g_i^T - G G^T the per-example covariance:

    B_simple = tr(Sigma) / |G|^2,     tr(Sigma)   = (1/N) sum_i |x_i|^2 |r_i|^2 - |G|^2
    B_noise  = tr(H Sigma) / G^T H G, tr(H Sigma) = (1/N) sum_i q_i |r_i|^2 - G^T H G

where q_i = x_i^T A x_i and G^T H G = sum_c G_c^T A G_c. Both sums over i, and G, are quadratic and
linear forms in W whose matrices are moments of the training set (`Curvature`, `example_curvature`,
computed once with its optimum): so a run's measurements cost no pass over the training set
(`noise_scales`).
torch's MSELoss scales every g_i (and G) by the same constant, which both ratios cancel.
"""

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..data.cache import as_images

# Where a run measures them by default, besides the start (the config's noise_points).
NOISE_POINTS = 8
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
    """What a training set's noise scales need besides the weight, for its N images x_i (rows of X) and
    one-hot targets y_i (rows of Y): `hessian` A = X^T X / N (d x d), `curvature` q_i = x_i^T A x_i and
    `norms` |x_i|^2 (N each); and the moments that make a measurement independent of N (`noise_scales`):
    `cross` X^T Y / N (d x 10), and for the weights w_i = |x_i|^2 and w_i = q_i (in that order)
    `weighted_hessian` X^T diag(w) X / N (2 x d x d), `weighted_cross` X^T diag(w) Y / N (2 x d x 10)
    and `weighted_mean` sum_i w_i |y_i|^2 / N (2)."""

    hessian: torch.Tensor
    curvature: torch.Tensor
    norms: torch.Tensor
    cross: torch.Tensor
    weighted_hessian: torch.Tensor
    weighted_cross: torch.Tensor
    weighted_mean: torch.Tensor

    def to(self, device):
        return Curvature(*(getattr(self, field.name).to(device) for field in dataclasses.fields(self)))


def example_curvature(images, targets):
    """The Curvature of the training set `images` (N x d floats, or uint8 pixels) with one-hot `targets`
    (N x 10), in float32 (sums of blocks in float64), by blocks of rows: two passes, of an (N x d) x
    (d x 2d) and an (N x d) x (d x d) product."""
    n, d = images.shape
    device = images.device
    sums = torch.zeros(2 * d, d, dtype=torch.float64, device=device)  # [X; diag(|x|^2) X]^T X
    crosses = torch.zeros(3, d, targets.shape[1], dtype=torch.float64, device=device)
    means = torch.zeros(2, dtype=torch.float64, device=device)
    norms = []
    for x, y in _blocks(images, targets):
        norm = (x * x).sum(dim=1)
        norms.append(norm)
        weighted = x * norm[:, None]
        sums += (torch.cat([x, weighted], dim=1).T @ x).double()
        crosses[0] += (x.T @ y).double()
        crosses[1] += (weighted.T @ y).double()
        means[0] += (norm * (y * y).sum(dim=1)).double().sum()
    hessian = (sums[:d] / n).float()
    curvature_hessian = torch.zeros(d, d, dtype=torch.float64, device=device)
    curvature = []
    for x, y in _blocks(images, targets):
        q = ((x @ hessian) * x).sum(dim=1)
        curvature.append(q)
        weighted = x * q[:, None]
        curvature_hessian += (weighted.T @ x).double()
        crosses[2] += (weighted.T @ y).double()
        means[1] += (q * (y * y).sum(dim=1)).double().sum()
    return Curvature(
        hessian,
        torch.cat(curvature),
        torch.cat(norms),
        (crosses[0] / n).float(),
        (torch.stack([sums[d:], curvature_hessian]) / n).float(),
        (crosses[1:] / n).float(),
        (means / n).float(),
    )


def _blocks(images, targets):
    """(images as floats, targets as floats) of `images` and `targets`, CURVATURE_ROWS rows at a time."""
    for start in range(0, images.shape[0], CURVATURE_ROWS):
        rows = slice(start, start + CURVATURE_ROWS)
        yield as_images(images[rows]).float(), targets[rows].float()


def noise_scales(weights, curvature):
    """[(B_simple, B_noise), ...] of the least-squares loss at each of `weights` (k x d x 10) on the
    training set whose Curvature is `curvature`, from its moments alone (in float64): with A the
    hessian's block and r_i = W^T x_i - y_i,

        G = X^T (X W - Y) / N = A W - X^T Y / N,
        (1/N) sum_i w_i |r_i|^2 = tr(W^T X^T diag(w) X W) - 2 tr(W^T X^T diag(w) Y) + sum_i w_i |y_i|^2 / N

    for w_i = |x_i|^2 and q_i: d^2 x 10 per weight, where a pass over the training set would cost
    N d x 10 (60000 rows: 0.4 s a run on one CPU thread, 2026-12-06). A run passes its own weights;
    no other run's enter its numbers. NaN where the gradient is zero or not finite."""
    w = weights.double()  # (k, d, 10)
    hessian = curvature.hessian.double()
    gradients = hessian @ w - curvature.cross.double()  # (k, d, 10)
    norm2 = (gradients * gradients).sum(dim=(1, 2))
    g_h_g = ((hessian @ gradients) * gradients).sum(dim=(1, 2))  # G^T H G, H = I_10 (x) A
    weighted = [
        ((m.double() @ w) * w).sum(dim=(1, 2)) - 2 * (c.double() * w).sum(dim=(1, 2)) + float(mean)
        for m, c, mean in zip(curvature.weighted_hessian, curvature.weighted_cross, curvature.weighted_mean)
    ]
    b_simple = (weighted[0] - norm2) / norm2
    b_noise = (weighted[1] - g_h_g) / g_h_g
    return list(zip(b_simple.tolist(), b_noise.tolist()))


class NoiseRecorder:
    """A run's noise scales at its `measurement_iterations` (`iterations`), kept for its record.

    Measurements never feed back into training, so the weights are kept as they are reached and
    measured together at the end (`record`).
    """

    def __init__(self, curvature, iterations, points):
        self.curvature = curvature
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
        scales = noise_scales(torch.stack(self.weights), self.curvature) if self.weights else []
        self.seconds += time.perf_counter() - start
        finite = lambda value: value if np.isfinite(value) else None  # noqa: E731
        return {
            "iteration": self.iterations[: len(scales)],
            "b_simple": [finite(b_simple) for b_simple, _ in scales],
            "b_noise": [finite(b_noise) for _, b_noise in scales],
        }
