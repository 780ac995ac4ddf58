"""The study's math: least-squares loss and gradient, the two update rules, batch sampling, test accuracy.

The from-scratch SGD (`ScratchSGD`) and the torch.optim version (`TorchSGD`) differ only in their
update step; everything else (data, batches, evaluation, output) is shared by the training loop.
"""

import torch

from .data import NUM_CLASSES, NUM_FEATURES

# Indices drawn per call to the random generator; fixed, so that runs are reproducible.
SAMPLE_BLOCK_ELEMENTS = 1 << 20
# Weight snapshots evaluated per test-set product; one (n_test, 784) x (784, 10 * EVAL_BLOCK) GEMM.
EVAL_BLOCK = 100


def least_squares_loss(images, targets, weight):
    """0.5 * ||Y - XW||^2 / b, the seed's loss."""
    return 0.5 * (targets - images @ weight).pow(2).sum() / images.shape[0]


def least_squares_gradient(images, targets, weight):
    """X^T (XW - Y) / b, the gradient of `least_squares_loss` with respect to W."""
    return images.T @ (images @ weight - targets) / images.shape[0]


class ScratchSGD:
    """The seed's from-scratch minibatch SGD on the least-squares loss; W starts at zero."""

    def __init__(self, lr, device):
        self.lr = lr
        self.weight = torch.zeros(NUM_FEATURES, NUM_CLASSES, device=device)

    def step(self, images, targets):
        """Update W with one batch; return the batch's loss at the weights before the update."""
        batch_size = images.shape[0]
        residual = images @ self.weight - targets
        loss = 0.5 * residual.pow(2).sum() / batch_size
        # Same operations, in the same order, as the seed: W <- W - lr * (X^T r / b).
        self.weight -= self.lr * (images.T @ residual / batch_size)
        return loss


class TorchSGD:
    """The seed's Task 6: nn.Linear(784, 10, bias=False) zero-initialised, MSELoss, torch.optim.SGD."""

    def __init__(self, lr, device):
        self.model = torch.nn.Linear(NUM_FEATURES, NUM_CLASSES, bias=False, device=device)
        torch.nn.init.zeros_(self.model.weight)
        self.criterion = torch.nn.MSELoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)

    @property
    def weight(self):
        """The weight as a (784, 10) matrix, the layout `ScratchSGD` uses."""
        return self.model.weight.detach().T

    def step(self, images, targets):
        """Update the model with one batch; return the batch's loss at the weights before the update."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.criterion(self.model(images), targets)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


UPDATERS = {"scratch": ScratchSGD, "torch": TorchSGD}


def uniform_batches(num_samples, batch_size, iterations, generator):
    """Yield (indices, batch sizes): batches drawn uniformly with replacement, as the seed's scratch SGD."""
    per_block = max(1, SAMPLE_BLOCK_ELEMENTS // batch_size)
    for start in range(0, iterations, per_block):
        count = min(per_block, iterations - start)
        yield torch.randint(num_samples, (count * batch_size,), generator=generator), [batch_size] * count


def epoch_batches(num_samples, batch_size, iterations, generator):
    """Yield (indices, batch sizes): shuffled epochs without replacement, as a DataLoader with shuffle=True."""
    remaining = iterations
    while remaining > 0:
        order = torch.randperm(num_samples, generator=generator)
        sizes = [min(batch_size, num_samples - s) for s in range(0, num_samples, batch_size)][:remaining]
        remaining -= len(sizes)
        yield order[: sum(sizes)], sizes


SAMPLERS = {"scratch": uniform_batches, "torch": epoch_batches}


class AccuracyRecorder:
    """Test accuracy of weight snapshots, evaluated in blocks.

    Evaluations never feed back into training, so snapshots are buffered and scored
    `EVAL_BLOCK` at a time with one large product instead of one memory-bound product each.
    Results stay on the device until `correct()` is called.
    """

    def __init__(self, test_images, test_labels, iterations):
        device = test_images.device
        self.test_images = test_images
        self.test_labels = test_labels
        self.buffer = torch.empty(EVAL_BLOCK, NUM_FEATURES, NUM_CLASSES, device=device)
        self.pending = []  # iteration numbers (0-based) of the buffered snapshots
        self.counts = torch.full((iterations,), -1, dtype=torch.int64, device=device)

    def record(self, iteration, weight):
        """Buffer a copy of `weight` as the model at `iteration`."""
        self.buffer[len(self.pending)].copy_(weight)
        self.pending.append(iteration)
        if len(self.pending) == EVAL_BLOCK:
            self.flush()

    def flush(self):
        """Score the buffered snapshots."""
        if not self.pending:
            return
        k = len(self.pending)
        weights = self.buffer[:k].permute(1, 0, 2).reshape(NUM_FEATURES, k * NUM_CLASSES)
        logits = (self.test_images @ weights).view(-1, k, NUM_CLASSES)
        correct = (logits.argmax(dim=2) == self.test_labels[:, None]).sum(dim=0)
        index = torch.tensor(self.pending, device=self.counts.device)
        self.counts.index_copy_(0, index, correct)
        self.pending = []

    def correct(self):
        """Number of correctly classified test images per iteration (-1 where not evaluated), on the CPU."""
        self.flush()
        return self.counts.cpu()

