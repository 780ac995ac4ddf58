"""The study's training math: the two update rules, batch sampling and blocked test accuracy.

The from-scratch SGD (`ScratchSGD`) and the torch.optim version (`TorchSGD`) differ only in their
update step; everything else (data, batches, evaluation, output) is shared by the training loop.
"""

import numpy as np
import torch

from .data import NUM_CLASSES, NUM_FEATURES

# Indices drawn per call to the random generator; fixed, so that runs are reproducible.
SAMPLE_BLOCK_ELEMENTS = 1 << 20
# Weight snapshots evaluated per test-set product at most: one (n_test, pixels) x (pixels, 10 * EVAL_BLOCK) GEMM.
EVAL_BLOCK = 100
# Rows per block of a weighted pass over the training set on the CPU (3 MB: stays in cache).
ROW_BLOCK = 1024


class ScratchSGD:
    """The seed's from-scratch minibatch SGD on the least-squares loss; W starts at zero.

    `weight` holds the rows of W for the pixels in `features`; W's other rows are zero throughout.
    """

    def __init__(self, images, targets, lr):
        # A pixel that is 0 in every training image gets a zero gradient at every step, so its weights
        # stay at their initial 0: every product skips those pixels (8-35% of MNIST's, by subset size).
        self.features = (images != 0).any(dim=0).nonzero().squeeze(1)
        self.images, self.lr = images.index_select(1, self.features), lr
        self.targets_t = targets.T.contiguous()  # (10, n): residuals are kept transposed, see step()
        self.weight = torch.zeros(self.features.numel(), NUM_CLASSES, device=images.device)

    def step(self, batch):
        """Update W with the batch of row indices `batch`; return its loss at the weights before the update."""
        batch_size, num_rows = batch.numel(), self.images.shape[0]
        if 3 * batch_size > 2 * num_rows:
            # The batch covers most rows (with repeats): weighting every row by how often it was drawn
            # reads the training set twice, where gathering a copy of the batch reads it three times.
            # index_add_, not bincount: bincount's output size depends on the data, a device sync.
            counts = self.images.new_zeros(num_rows).index_add_(0, batch, self.images.new_ones(batch_size))
            images, targets_t = self.images, self.targets_t
        else:
            counts = None
            # index_select: the same rows as images[batch], 6x faster on the CPU here.
            images, targets_t = self.images.index_select(0, batch), self.targets_t.index_select(1, batch)
        # On the CPU a weighted pass goes through the rows in cache-sized blocks, so that each block is
        # read from memory once per step (for both products), not twice: 1.8x faster here.
        block_rows = ROW_BLOCK if counts is not None and images.device.type == "cpu" else images.shape[0]
        losses, gradients_t = [], []
        for start in range(0, images.shape[0], block_rows):
            rows = slice(start, start + block_rows)
            block = images[rows]
            # The residual transposed, r^T = W^T X^T - Y^T, and the gradient transposed, r^T X: the
            # layouts BLAS is fastest at for these skinny products (3x and 6x here), in few kernels.
            residual_t = torch.addmm(targets_t[:, rows], self.weight.T, block.T, beta=-1)
            weighted_t = residual_t if counts is None else residual_t * counts[rows]
            losses.append((residual_t * weighted_t).sum())
            gradients_t.append(weighted_t @ block)
        loss, gradient_t = _total(losses), _total(gradients_t)
        self.weight.sub_(gradient_t.T, alpha=self.lr / batch_size)  # W <- W - lr * X^T r / b
        return loss * (0.5 / batch_size)


def _total(parts):
    """Sum of a list of tensors, without a kernel when there is one."""
    return parts[0] if len(parts) == 1 else torch.stack(parts).sum(dim=0)


class TorchSGD:
    """The seed's Task 6: nn.Linear(784, 10, bias=False) zero-initialised, MSELoss, torch.optim.SGD."""

    def __init__(self, images, targets, lr):
        self.images, self.targets = images, targets
        self.model = torch.nn.Linear(NUM_FEATURES, NUM_CLASSES, bias=False, device=images.device)
        torch.nn.init.zeros_(self.model.weight)
        self.criterion = torch.nn.MSELoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)

    @property
    def weight(self):
        """The weight as a (784, 10) matrix, the layout `ScratchSGD` uses."""
        return self.model.weight.detach().T

    @property
    def features(self):
        """The pixels `weight` covers: all of them."""
        return torch.arange(NUM_FEATURES, device=self.images.device)

    def step(self, batch):
        """Update the model with the batch of row indices `batch`; return its loss before the update."""
        self.optimizer.zero_grad(set_to_none=True)
        images, targets = self.images.index_select(0, batch), self.targets.index_select(0, batch)
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
    """Test accuracy of weight snapshots, scored a chunk of iterations at a time.

    Evaluations never feed back into training, so the training loop copies a chunk's snapshots into
    `buffer` and `score` evaluates them together: one large product instead of one memory-bound
    product per snapshot. On the CPU, test images whose prediction provably cannot change within a
    chunk are scored once (see `_settled`). Scores stay on the device until `correct()` copies them to
    the host, once.
    """

    def __init__(self, test_images, test_labels, iterations, capacity):
        self.test_images = test_images
        self.test_labels = test_labels
        self.image_norms = test_images.norm(dim=1)
        self.iterations = iterations
        self.buffer = torch.empty(capacity, test_images.shape[1], NUM_CLASSES, device=test_images.device)
        self.evaluated = []  # iteration numbers (0-based), in order, on the host
        self.scores = []  # one device tensor of correct counts per chunk

    def score(self, iterations):
        """Score the snapshots in `buffer[:len(iterations)]`, the models at `iterations` (0-based)."""
        if not iterations:
            return
        snapshots = self.buffer[: len(iterations)]
        self.evaluated.extend(iterations)
        if self.test_images.device.type != "cpu":
            # On a GPU the dense product is cheap, and selecting rows would synchronise with the host.
            self.scores.append(_count_correct(self.test_images, self.test_labels, snapshots))
            return
        settled, settled_correct = self._settled(snapshots)
        rows = (~settled).nonzero().squeeze(1)
        images, labels = self.test_images.index_select(0, rows), self.test_labels.index_select(0, rows)
        self.scores.append(settled_correct + _count_correct(images, labels, snapshots))

    def _settled(self, snapshots):
        """Images whose argmax is the same, exactly, under every snapshot; and how many of them are right.

        With W_t = W_m + D_t (W_m the middle snapshot), each logit moves by |x . D_t[:, c]| <=
        |x| |D_t[:, c]|, so a prediction whose margin under W_m exceeds twice the largest move, plus
        the worst-case float32 rounding of both evaluations (d * 2^-24 * |x| |W[:, c]| per logit, doubled
        for safety), is the prediction any float32 evaluation gives for every snapshot of the chunk.
        """
        middle = snapshots[len(snapshots) // 2]
        top = (self.test_images @ middle).topk(2, dim=1)
        margin = top.values[:, 0] - top.values[:, 1]
        largest_move = (snapshots - middle).norm(dim=1).max()
        rounding = 8 * self.test_images.shape[1] * 2.0**-24 * snapshots.norm(dim=1).max()
        settled = margin > self.image_norms * (2 * largest_move + rounding)
        return settled, (settled & (top.indices[:, 0] == self.test_labels)).sum()

    def latest(self):
        """(iteration, accuracy) of the last scored snapshot (a host sync)."""
        return self.evaluated[-1], self.scores[-1][-1].item() / self.test_labels.shape[0]

    def correct(self):
        """Correctly classified test images per iteration (-1 where not evaluated), as a NumPy array."""
        counts = np.full(self.iterations, -1, dtype=np.int64)
        if self.scores:
            counts[self.evaluated] = torch.cat(self.scores).cpu().numpy()
        return counts


def _count_correct(images, labels, snapshots):
    """Correct predictions of every snapshot (k, d, 10) on `images`, with one product: a (k,) tensor."""
    k = snapshots.shape[0]
    logits = (images @ snapshots.permute(1, 0, 2).reshape(-1, k * NUM_CLASSES)).view(-1, k, NUM_CLASSES)
    return (logits.argmax(dim=2) == labels[:, None]).sum(dim=0)
