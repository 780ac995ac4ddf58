"""A plain reference of the original study's algorithms, kept for tests and benchmarks.

It uses the original study's formulas as written (per-iteration test evaluation, `torch.linalg.norm` loss, a
new weight tensor every step) and the same subset and batches as `mnist_sgd.training.train`, so the two must
produce the same curves: loss within float tolerance, accuracy identical except where two classes
tie to rounding.
"""

import time

import numpy as np
import torch

from ..data.cache import as_images
from ..data.idx import NUM_CLASSES, NUM_FEATURES
from .result import RunResult
from .sgd import SAMPLERS, seeded_generator, training_set


def seed_gradient(data, label, weight):
    """X^T (XW - Y) / b, as the original study writes it."""
    return torch.matmul(torch.t(data), torch.matmul(data, weight) - label) / data.size(0)


def seed_loss(data, label, weight):
    """0.5 * ||Y - XW||^2 / b, as the original study writes it."""
    inner = label - torch.matmul(data, weight)
    norm = torch.linalg.norm(inner)
    return 0.5 * (norm**2) / data.size(0)


def seed_correct(data, label, weight):
    """Number of rows whose argmax prediction equals the label (the original study's _acc before dividing)."""
    preds = torch.matmul(data, weight)
    return torch.sum((label == torch.argmax(preds, dim=1)).int())


def reference_train(data, config):
    """Train like the original study (Task 2 for impl=scratch, Task 6 for impl=torch) on the program's batches."""
    generator = seeded_generator(config.seed)
    pixels, targets = training_set(data, config.train_size, generator)
    images, device = as_images(pixels), pixels.device

    if config.impl == "scratch":
        weight = torch.zeros(NUM_FEATURES, NUM_CLASSES, device=device)
    else:
        model = torch.nn.Linear(NUM_FEATURES, NUM_CLASSES, bias=False, device=device)
        torch.nn.init.zeros_(model.weight)
        criterion = torch.nn.MSELoss()
        optimizer = torch.optim.SGD(params=model.parameters(), lr=config.lr)

    losses, correct = [], []
    start = time.perf_counter()
    for indices, sizes in SAMPLERS[config.batch_sampling](
        images.shape[0], config.batch_size, config.iterations, generator
    ):
        for batch in torch.split(indices.to(device), sizes):
            batch_images, batch_targets = images[batch], targets[batch]
            if config.impl == "scratch":
                loss = seed_loss(batch_images, batch_targets, weight)
                gradient = seed_gradient(batch_images, batch_targets, weight)
                correct.append(seed_correct(data.test_images, data.test_labels, weight).item())
                weight = weight - config.lr * gradient
            else:
                with torch.no_grad():
                    correct.append(seed_correct(data.test_images, data.test_labels, model.weight.T).item())
                optimizer.zero_grad()
                loss = criterion(model(batch_images), batch_targets)
                loss.backward()
                optimizer.step()
            losses.append(loss.item())
    return RunResult(
        train_loss=np.array(losses, dtype=np.float32),
        test_correct=np.array(correct),
        test_size=data.test_labels.shape[0],
        wall_seconds=time.perf_counter() - start,
        train_size=images.shape[0],
        weight=(weight if config.impl == "scratch" else model.weight.detach().T).cpu().numpy(),
    )
