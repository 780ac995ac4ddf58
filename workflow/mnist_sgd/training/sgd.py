"""The study's training math: the two update rules and batch sampling (test accuracy: mnist_sgd.training.accuracy).

The from-scratch SGD (`ScratchSGD`) and the torch.optim version (`TorchSGD`) differ in their update
step, in the scale of their loss (`MSELoss` also averages over the 10 outputs, so its gradient is 2/10
of the from-scratch one) and in how batches are drawn (`SAMPLERS`: with replacement, or shuffled
epochs); data, evaluation and output are shared by the training loop.
"""

import torch

from ..data.cache import as_images
from ..data.idx import NUM_CLASSES, NUM_FEATURES
from ..study.cost import weighs_rows

# Indices drawn per call to the random generator; fixed, so that runs are reproducible.
SAMPLE_BLOCK_ELEMENTS = 1 << 20
# Rows per block of a weighted pass over the training set on the CPU (3 MB: stays in cache).
ROW_BLOCK = 1024


def used_pixels(images):
    """(the pixels that are not 0 in every one of `images`, the images' values at those pixels).

    A pixel that is 0 in every training image gets a zero gradient at every step, so its weights stay
    at their initial 0: every product skips those pixels (8-35% of MNIST's, by subset size). On uint8
    pixels, a column's maximum says it as well, 20x faster than comparing every pixel."""
    used = images.amax(dim=0) > 0 if images.dtype == torch.uint8 else (images != 0).any(dim=0)
    features = used.nonzero().squeeze(1)
    return features, images.index_select(1, features)


class ScratchSGD:
    """The original study's from-scratch minibatch SGD (its Task 2) on the least-squares loss; W starts at zero.

    `weight` holds the rows of W for the pixels in `features`; W's other rows are zero throughout.
    """

    def __init__(self, images, targets, lr, used=None):
        """`images`: the training images, as floats or as uint8 pixels (mnist_sgd.data.cache.as_images makes
        the rows a step reads floats: the same numbers, a quarter of the memory); `used`, their
        `used_pixels`, where made already."""
        self.features, self.images = used_pixels(images) if used is None else used
        self.lr = lr
        self.targets_t = targets.T.contiguous()  # (10, n): residuals are kept transposed, see step()
        self.weight = torch.zeros(self.features.numel(), NUM_CLASSES, device=images.device)
        self._float_images = None  # every row as floats, made once if a step weights every row
        self.residuals = None  # a list, where a chunk's steps keep their residuals (training.accuracy.Steps)

    def step(self, batch):
        """One SGD step on the batch of row indices `batch`; return its loss at the weights before it.

        The plain formula (as `mnist_sgd.training.reference.reference_train` computes it, on every pixel):

            R = X_b W - Y_b;   loss = 0.5 * ||R||^2 / b;   W <- W - lr * X_b^T R / b

        with X_b, Y_b the batch's rows (repeats counted). Here W covers only `features`, and the two
        products are done in the layouts BLAS is fastest at (see `_residual_t`). Which rows a step reads:
        `mnist_sgd.study.cost.weighs_rows`.
        """
        batch_size = batch.numel()
        if weighs_rows(batch_size, self.images.shape[0]):
            squared_norm, gradient_t = self._weighted_rows(batch)
        else:
            squared_norm, gradient_t = self._gathered_rows(batch)
        self.weight.sub_(gradient_t.T, alpha=self.lr / batch_size)  # W <- W - lr * X^T R / b
        return squared_norm * (0.5 / batch_size)

    def _gathered_rows(self, batch):
        """||R||^2 and (X_b^T R)^T from a copy of the batch's rows: the path for batches smaller than
        two thirds of the training set."""
        # index_select: the same rows as images[batch], 6x faster on the CPU here.
        images, targets_t = as_images(self.images.index_select(0, batch)), self.targets_t.index_select(1, batch)
        residual_t = self._residual_t(images, targets_t)
        if self.residuals is not None:
            self.residuals.append(residual_t)
        return (residual_t * residual_t).sum(), residual_t @ images

    def _weighted_rows(self, batch):
        """||R||^2 and (X_b^T R)^T without copying the batch: every row of the training set weighted by
        how often the batch drew it (c_i), since sum over the batch = sum over rows of c_i * (row term).

        On the CPU the rows go in cache-sized blocks, so that each block is read from memory once for
        both products (1.8x faster here).
        """
        if self._float_images is None:  # such a step reads every row: convert them once
            self._float_images = as_images(self.images)
        images = self._float_images
        num_rows = images.shape[0]
        # index_add_, not bincount: bincount's output size depends on the data, a device sync.
        counts = images.new_zeros(num_rows).index_add_(0, batch, images.new_ones(batch.numel()))
        block_rows = ROW_BLOCK if images.device.type == "cpu" else num_rows
        squared_norms, gradients_t = [], []
        for start in range(0, num_rows, block_rows):
            rows = slice(start, start + block_rows)
            block = images[rows]
            residual_t = self._residual_t(block, self.targets_t[:, rows])
            weighted_t = residual_t * counts[rows]
            squared_norms.append((residual_t * weighted_t).sum())
            gradients_t.append(weighted_t @ block)
        return _total(squared_norms), _total(gradients_t)

    def _residual_t(self, images, targets_t):
        """R^T = W^T X^T - Y^T for the rows `images` (targets transposed): residuals are kept transposed,
        and so is the gradient (R^T X), the layouts BLAS is fastest at for these skinny products (3x and
        6x here), in few kernels."""
        return torch.addmm(targets_t, self.weight.T, images.T, beta=-1)


def _total(parts):
    """Sum of a list of tensors, without a kernel when there is one."""
    return parts[0] if len(parts) == 1 else torch.stack(parts).sum(dim=0)


class TorchSGD:
    """The original study's Task 6: nn.Linear(784, 10, bias=False) zero-initialised, MSELoss, torch.optim.SGD."""

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
        images, targets = as_images(self.images.index_select(0, batch)), self.targets.index_select(0, batch)
        loss = self.criterion(self.model(images), targets)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


UPDATERS = {"scratch": ScratchSGD, "torch": TorchSGD}


def uniform_batches(num_samples, batch_size, iterations, generator):
    """Yield (indices, batch sizes): batches drawn uniformly with replacement, as the original study's scratch SGD."""
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


SAMPLERS = {"with_replacement": uniform_batches, "epochs": epoch_batches}  # mnist_sgd.study.runs.SAMPLINGS


def seeded_generator(seed):
    """Seed torch's global generators and return the CPU generator that draws subsets and batches.

    Subsets and batches are drawn on the CPU whatever the device, so a run sees the same batches on
    every machine.
    """
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def training_rows(data, train_size, generator):
    """The training set's rows in `data`: None for all of them, or a seeded random subset of `train_size`
    (drawn from `generator`, the run's first draw)."""
    num_train = data.train_pixels.shape[0]
    if train_size is None or train_size == num_train:
        return None
    return torch.randperm(num_train, generator=generator)[:train_size].to(data.train_pixels.device)


def training_set(data, train_size, generator):
    """The training pixels and one-hot targets: all of them, or a seeded random subset of `train_size`."""
    return select_rows(data, training_rows(data, train_size, generator))


def select_rows(data, rows):
    """The pixels and one-hot targets of the training rows `rows` of `data` (None: all of them)."""
    if rows is None:
        return data.train_pixels, data.train_targets
    return data.train_pixels.index_select(0, rows), data.train_targets.index_select(0, rows)
