"""A data set's kernel table: the pixel products of every training image with every test image.

The dual form of the test accuracy (mnist_sgd.training.accuracy) needs, at each step, the products of
the step's batch rows with every test image. Computed per step, they cost as much as the dense test
evaluation they replace from a batch of 3 on; read from this table, computed once for every run of a
data set, a step's products are a copy of b rows, and the dual form pays up to batches of 32
(mnist_sgd.study.cost.TABLE_BATCH).

Row i holds sum_k p_ik q_jk for every test image j, with p, q the uint8 pixels (255^2 times the float
images' products), in float32: each is a float32 sum of non-negative integers, exact where the result is
below 2^24 (`exact`, recorded: on MNIST the largest is 1.5 10^7), and else within gamma_784 of it, which
the dual form's bound allows for. Either way every run's accuracy counts are the same: the table decides
only how many images the dense product scores.

MNIST's table is 60000 x 10000 floats, 2.4 GB: rule test_kernel writes it as a temporary file for the
training jobs of one workflow run, and they read it memory-mapped (one copy in the page cache for all).
"""

import time
from dataclasses import dataclass

import torch

from ..study.files import atomic_path
from .idx import DataError

_VERSION = 1
# Training rows per product while the table is computed (4096 x 10^4 floats: 160 MB at a time).
_BLOCK = 4096


@dataclass
class KernelTable:
    """`products` (N, n_test) float32, row i training image i's products with every test image, and
    whether every entry is exact (below 2^24)."""

    products: torch.Tensor
    exact: bool


def compute_table(data):
    """The KernelTable of `data` (a loaded cache), on the CPU with torch's threads."""
    test = data.test_pixels.float()
    train = data.train_pixels
    products = torch.empty(train.shape[0], test.shape[0])
    for start in range(0, train.shape[0], _BLOCK):
        torch.mm(train[start : start + _BLOCK].float(), test.T, out=products[start : start + _BLOCK])
    return KernelTable(products, bool(products.max() < 2**24))


def write_table(data, destination, log=print):
    """Compute the table of `data` and write it to `destination`, atomically, with the cache's digest."""
    start = time.perf_counter()
    table = compute_table(data)
    log(f"computed the {tuple(table.products.shape)} kernel table in {time.perf_counter() - start:.1f} s")
    stored = {"version": _VERSION, "data_sha256": data.sha256, "exact": table.exact, "products": table.products}
    with atomic_path(destination) as tmp:
        torch.save(stored, tmp)
    log(f"wrote {destination} ({table.products.numel() * 4 / 1e9:.2f} GB; exact: {table.exact})")


def load_table(path, data):
    """The KernelTable at `path`, memory-mapped, for `data` (the cache it was computed from).

    Raises DataError, naming the file and the fix, if it is damaged or was computed from other data.
    """
    fix = "delete it and run the workflow again, which computes it anew"
    try:
        stored = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as error:
        raise DataError(f"{path}: not a readable kernel table ({type(error).__name__}: {error}); {fix}") from None
    if not isinstance(stored, dict):
        stored = {}
    products = stored.get("products")
    shape = (data.train_pixels.shape[0], data.test_pixels.shape[0])
    if stored.get("version") != _VERSION or not isinstance(products, torch.Tensor):
        raise DataError(f"{path}: not a kernel table of this version; {fix}")
    if stored.get("data_sha256") != data.sha256:
        raise DataError(f"{path}: computed from other data than {data.sha256[:12]}...; {fix}")
    if tuple(products.shape) != shape or products.dtype != torch.float32:
        raise DataError(f"{path}: a {tuple(products.shape)} {products.dtype} table, not {shape} float32; {fix}")
    return KernelTable(products, bool(stored["exact"]))
