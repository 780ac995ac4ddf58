"""The exact least-squares optimum of a training set: the best any SGD run on it could reach.

Every run minimises the same loss over its training set, images X (n x 784) and one-hot targets Y:

    L(W) = 0.5 * ||Y - X W||^2 / n

(a batch's loss is an unbiased estimate of it). Its minimisers solve the normal equations
X^T X W = X^T Y. X^T X is singular (MNIST has pixels that are 0 in every image, and a subset of 100
images has fewer images than pixels), so there are many; `min_norm_solution` gives the one of least
norm, W* = X^+ Y. It is the one SGD from W = 0 converges to: each step adds X_b^T (...), a matrix whose
columns lie in the row space of X, so W never leaves that space, and W* is the only minimiser in it.
"""

import time

import torch

from ..data.cache import as_images
from ..study.records import Optimum, write_curvature
from ..study.runs import parse_training_set
from .noise import example_curvature
from .sgd import seeded_generator, training_set


def min_norm_solution(images, targets):
    """(W*, the nonzero eigenvalues of the Gram matrix, ascending): the least-norm minimiser of
    ||targets - images W||^2, in float64, and the squared nonzero singular values of `images` (as many
    as its rank).

    Through the eigendecomposition of the smaller Gram matrix: X^T X (d x d) when there are at least
    as many rows as columns, W* = V diag(1/l) V^T X^T Y; else X X^T (n x n), W* = X^T U diag(1/l) U^T Y;
    over the eigenvalues l that are not zero. A computed Gram matrix's eigenvalues are exact to about
    size * eps * l_max, so smaller ones count as zero: on MNIST's 60000 images the largest of those
    is 6e-11 and the smallest kept 5e-5 (l_max 2.3e6), a clear gap. One pass over X (the Gram product)
    and a 784 x 784 eigendecomposition: faster than numpy.linalg.lstsq's SVD, with the same answer
    (bench/bench_optimum.py).
    """
    x, y = images.to(torch.float64), targets.to(torch.float64)
    rows_first = x.shape[0] >= x.shape[1]
    gram = x.T @ x if rows_first else x @ x.T
    values, vectors = torch.linalg.eigh(gram)
    keep = values > values.max() * gram.shape[0] * torch.finfo(torch.float64).eps
    values, vectors = values[keep], vectors[:, keep]
    if rows_first:
        weight = vectors @ ((vectors.T @ (x.T @ y)) / values[:, None])
    else:
        weight = x.T @ (vectors @ ((vectors.T @ y) / values[:, None]))
    return weight, values


def optimum(data, name, curvature_path=None):
    """The Optimum record of training set `name` (mnist_sgd.study.runs.training_set_name) of `data`: the
    same images the runs on it train on, drawn with the same seed. Given `curvature_path`, also write
    the training set's `mnist_sgd.training.noise.example_curvature` there, for the runs' noise scales."""
    _, train_size, seed = parse_training_set(name)
    pixels, targets = training_set(data, train_size, seeded_generator(seed))
    images, targets = as_images(pixels).to(torch.float64), targets.to(torch.float64)
    start = time.perf_counter()
    weight, eigenvalues = min_norm_solution(images, targets)  # in float64 already: no second copy
    residual = targets - images @ weight
    predictions = (data.test_images.to(torch.float64) @ weight).argmax(dim=1)
    seconds = time.perf_counter() - start
    if curvature_path is not None:
        write_curvature(curvature_path, vars(example_curvature(pixels, targets)), name, data.sha256)
    return Optimum(
        training_set=name,
        train_size=images.shape[0],
        rank=len(eigenvalues),
        min_singular_value=float(eigenvalues[0].sqrt()),
        # Of the Hessian X^T X / n of the from-scratch loss: full-batch SGD is stable for lr below 2 / it.
        max_hessian_eigenvalue=float(eigenvalues[-1] / images.shape[0]),
        train_loss=float(0.5 * (residual * residual).sum() / images.shape[0]),
        test_accuracy=float((predictions == data.test_labels).double().mean()),
        seconds=seconds,
        curvature_seconds=time.perf_counter() - start - seconds if curvature_path is not None else None,
        data_sha256=data.sha256,
    )
