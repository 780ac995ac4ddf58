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
The file is a header of HEADER_BYTES (JSON: version, the cache's digest, exactness, shape) and the rows
as raw little-endian float32. The products are computed straight into the file's mapping (no copy of
the table in memory, no serialisation: 14-18 s to 8.5-10 s for MNIST on 2 threads, 2-core AMD EPYC),
and the header is written last, so a table cut short or never finished is refused, as is one of other
data.
"""

import json
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..study.files import atomic_path
from .idx import DataError

_VERSION = 2
# The file's first bytes: the JSON header, padded with spaces; the rows follow.
HEADER_BYTES = 4096
# Training rows per product while the table is computed (4096 x 10^4 floats: 160 MB at a time).
_BLOCK = 4096


def _file_bytes(shape):
    """The size of a table file of `shape` (N, n_test): its header and its rows."""
    return HEADER_BYTES + shape[0] * shape[1] * 4


@dataclass
class KernelTable:
    """`products` (N, n_test) float32, row i training image i's products with every test image, and
    whether every entry is exact (below 2^24)."""

    products: torch.Tensor
    exact: bool


def compute_table(data, out=None):
    """The KernelTable of `data` (a loaded cache), on the CPU with torch's threads; into `out` (an
    (N, n_test) float32 tensor, a file's mapping) where given."""
    test = data.test_pixels.float()
    train = data.train_pixels
    products = torch.empty(train.shape[0], test.shape[0]) if out is None else out
    largest = 0.0
    for start in range(0, train.shape[0], _BLOCK):
        block = products[start : start + _BLOCK]
        torch.mm(train[start : start + _BLOCK].float(), test.T, out=block)
        largest = max(largest, float(block.max()))  # while the block is in cache
    return KernelTable(products, largest < 2**24)


def write_table(data, destination, log=print):
    """Compute the table of `data` into `destination`, atomically, with the cache's digest."""
    start = time.perf_counter()
    shape = (data.train_pixels.shape[0], data.test_pixels.shape[0])
    with atomic_path(destination) as tmp:
        with open(tmp, "r+b") as file:
            file.truncate(_file_bytes(shape))
        mapped = np.memmap(tmp, dtype="<f4", mode="r+", offset=HEADER_BYTES, shape=shape)
        exact = compute_table(data, out=torch.from_numpy(mapped)).exact
        del mapped  # unmapped: its pages are the file's, in the page cache (no flush to disk needed)
        header = {"version": _VERSION, "data_sha256": data.sha256, "exact": exact, "shape": list(shape)}
        with open(tmp, "r+b") as file:
            file.write(json.dumps(header).encode().ljust(HEADER_BYTES))
    log(f"computed the {shape} kernel table in {time.perf_counter() - start:.1f} s")
    log(f"wrote {destination} ({shape[0] * shape[1] * 4 / 1e9:.2f} GB; exact: {exact})")


def load_table(path, data):
    """The KernelTable at `path`, memory-mapped, for `data` (the cache it was computed from).

    Raises DataError, naming the file and the fix, if it is damaged or was computed from other data.
    """
    fix = "delete it and run the workflow again, which computes it anew"
    try:
        with open(path, "rb") as file:
            header = json.loads(file.read(HEADER_BYTES).decode())
        size = os.path.getsize(path)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable kernel table ({type(error).__name__}: {error}); {fix}") from None
    if not isinstance(header, dict) or header.get("version") != _VERSION or not isinstance(header.get("exact"), bool):
        raise DataError(f"{path}: not a kernel table of this version; {fix}")
    if header.get("data_sha256") != data.sha256:
        raise DataError(f"{path}: computed from other data than {data.sha256[:12]}...; {fix}")
    shape = (data.train_pixels.shape[0], data.test_pixels.shape[0])
    if header.get("shape") != list(shape):
        raise DataError(f"{path}: a {tuple(header.get('shape') or ())} table, not {shape}; {fix}")
    if size != _file_bytes(shape):
        raise DataError(f"{path}: {size} bytes, not the {shape} table's {_file_bytes(shape)}; {fix}")
    # Copy-on-write: the pages are the file's, shared by every pack that reads it; never written.
    products = torch.from_numpy(np.memmap(path, dtype="<f4", mode="c", offset=HEADER_BYTES, shape=shape))
    return KernelTable(products, header["exact"])
