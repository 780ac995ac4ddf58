"""The data cache: the formatted tensors of a data set, written once from its verified IDX files and
checked against their digest on every load. Every training job reads the cache through `load_cache`;
nothing else touches the raw files.
"""

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..study.datasets import IDX_FILES
from ..study.files import atomic_path
from .idx import NUM_CLASSES, NUM_FEATURES, DataError, read_pair

# What the cached tensors are, besides the content of their IDX files: bump it whenever build_cache would
# write other tensors (another scaling, dtype or layout). A cache of another version is refused on load and
# rebuilt by the first job that loads it; the format rule itself reruns only when its IDX files change
# (a rebuild in the rule would stop Snakemake 9.27 before the jobs downstream: see docs/reruns.md).
_CACHE_VERSION = 3  # 2: with the SHA-256 of its tensors and of its source files; 3: images as uint8 pixels


@dataclass
class MNIST:
    """The formatted data set: images flattened to 784 pixels, kept as the bytes they are (a quarter of
    the memory of floats, shared between the jobs that map the cache); `as_images` makes them the floats
    in [0, 1] the study trains on, where and when they are needed."""

    train_pixels: torch.Tensor  # (n_train, 784) uint8
    train_targets: torch.Tensor  # (n_train, 10) float32 one-hot
    test_pixels: torch.Tensor  # (n_test, 784) uint8
    test_labels: torch.Tensor  # (n_test,) int64
    sha256: Optional[str] = None  # of the tensors, as their cache records it (tensors_sha256)
    # Tensors made from these, kept for the next run trained on the same load (`derived`).
    _derived: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def to(self, device):
        """Return a copy with every tensor on `device`."""
        tensors = {name: getattr(self, name).to(device) for name in TENSORS}
        return dataclasses.replace(self, **tensors, _derived={})

    def derived(self, key, make):
        """`make()`, made once per load: what every run of a pack on all of the training set would
        otherwise make again (a pure function of these tensors, so the same values either way)."""
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]

    @property
    def train_images(self):
        """All the training images as floats in [0, 1] (a copy: 188 MB for MNIST)."""
        return as_images(self.train_pixels)

    @property
    def test_images(self):
        """All the test images as floats in [0, 1] (a copy)."""
        return as_images(self.test_pixels)


def as_images(pixels):
    """Pixels (uint8) as the study's float32 images in [0, 1], as torchvision's ToTensor makes them;
    floats are returned as they are."""
    return pixels.to(torch.float32).div_(255) if pixels.dtype == torch.uint8 else pixels


# The cache's tensors, in the order they are hashed.
TENSORS = ("train_pixels", "train_targets", "test_pixels", "test_labels")


def tensors_sha256(tensors):
    """SHA-256 of the cache's tensors: their names, dtypes, shapes and bytes, in a fixed order."""
    digest = hashlib.sha256()
    for name in TENSORS:
        tensor = tensors[name].contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.numpy())
    return digest.hexdigest()


def build_cache(train_images, train_labels, test_images, test_labels, destination, sources=None, log=print):
    """Parse the four IDX files and save the formatted tensors to `destination` atomically, with the
    SHA-256 of the files they come from and of the tensors themselves (both checked on load).
    Given `sources` (IDX file name -> SHA-256), the files must have those. Under the cache's lock, as
    a rebuild by `load_cache`."""
    with _locked(destination, log):
        _write_cache(train_images, train_labels, test_images, test_labels, destination, sources)


def _write_cache(train_images, train_labels, test_images, test_labels, destination, sources):
    paths = dict(zip(IDX_FILES, (train_images, train_labels, test_images, test_labels)))
    raw = {name: Path(path).read_bytes() for name, path in paths.items()}
    hashes = {name: hashlib.sha256(content).hexdigest() for name, content in raw.items()}
    for name, expected in (sources or {}).items():
        if hashes[name] != expected:
            raise DataError(
                f"{paths[name]}: SHA-256 {hashes[name]}, expected {expected}; delete it and rerun "
                "the workflow to fetch a verified copy"
            )
    x_train, y_train = read_pair(
        raw["train-images-idx3-ubyte"], raw["train-labels-idx1-ubyte"], train_images, train_labels
    )
    x_test, y_test = read_pair(raw["t10k-images-idx3-ubyte"], raw["t10k-labels-idx1-ubyte"], test_images, test_labels)
    tensors = {
        "train_pixels": x_train,
        "train_targets": torch.nn.functional.one_hot(y_train, NUM_CLASSES).to(torch.float32),
        "test_pixels": x_test,
        "test_labels": y_test,
    }
    stored = {"version": _CACHE_VERSION, "sources": hashes, "sha256": tensors_sha256(tensors), **tensors}
    # Saved through a file object: torch.save names the archive after a path it is given (here a
    # random temporary name), and the cache must be the same bytes whenever it is rebuilt.
    with atomic_path(destination) as tmp, open(tmp, "wb") as stream:
        torch.save(stored, stream)


class CacheError(DataError):
    """The data cache is missing, unreadable, damaged or of other files: rebuild it from the IDX files."""


def load_cache(path, device="cpu", sources=None, rebuild_from=None, log=print):
    """Load the tensors written by `build_cache` onto `device`, after checking them against the digest
    stored with them (and, given `sources`, that they come from IDX files with those SHA-256s).

    A cache that is missing or fails a check is never used: DataError names the problem or, given
    `rebuild_from` (the four IDX files, as for `build_cache`), the cache is rebuilt from them, once,
    whichever of the jobs sharing it gets there first, and loaded again.
    """
    try:
        return _load_checked(path, sources).to(device)
    except CacheError as error:
        if rebuild_from is None:
            raise
        log(f"{error}; rebuilding it from {', '.join(map(str, rebuild_from))}")
    with _locked(path, log):
        try:  # another job may have rebuilt it meanwhile
            data = _load_checked(path, sources)
        except CacheError:
            missing = [str(file) for file in rebuild_from if not Path(file).exists()]
            if missing:
                raise DataError(
                    f"{path}: no data cache, and no IDX files to rebuild it from ({', '.join(missing)} missing); "
                    "run snakemake again: it fetches them first"
                ) from None
            _write_cache(*rebuild_from, path, sources)
            data = _load_checked(path, sources)
            log(f"{path}: rebuilt (SHA-256 of its tensors {data.sha256})")
    return data.to(device)


# What flock raises on a file system without locks (Lustre mounted without -o flock, some NFS setups).
_NO_LOCKS = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL)


@contextlib.contextmanager
def _locked(path, log=print):
    """Hold an exclusive lock on a file beside `path` (released when the process ends, however).

    Where the file system has no locks, go on without one, and say so: the lock only saves work, since
    every writer of the cache writes the same bytes from the same verified files and renames them into
    place atomically (mnist_sgd.study.files), so jobs that rebuild it at once each do the work, and no job
    ever reads half a cache.
    """
    with open(Path(path).with_name(f".{Path(path).name}.lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError as error:
            if error.errno not in _NO_LOCKS:
                raise
            log(
                f"{path}: no file locks on this file system ({os.strerror(error.errno)}); going on without "
                "one (safe: each writer writes the same bytes atomically, but jobs may repeat the work)"
            )
        yield


def _load_checked(path, sources):
    """The verified data set in the cache at `path`, on the CPU, or CacheError."""

    def refuse(problem):
        return CacheError(f"{path}: {problem}; refused it (rebuild it with: snakemake --forcerun format_mnist)")

    try:
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError as err:
        raise CacheError(f"{path}: no such data cache; the workflow's format_mnist rule writes it") from err
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise refuse(f"unreadable data cache ({err})") from err
    if not isinstance(stored, dict) or stored.get("version") != _CACHE_VERSION:  # e.g. of an older version
        raise refuse("not a data cache of this version")
    tensors = {name: stored.get(name) for name in TENSORS}
    if not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise refuse("a data cache without all of its tensors")
    digest = tensors_sha256(tensors)
    if digest != stored.get("sha256"):
        raise refuse(
            f"damaged data cache: its tensors hash to SHA-256 {digest}, not the {stored.get('sha256')} "
            "they were written with"
        )
    if sources is not None and stored.get("sources") != dict(sources):
        raise refuse(
            f"a data cache of other files than the configured ones (built from {stored.get('sources')}, "
            f"configured data_sha256: {dict(sources)})"
        )
    pixels = (tensors["train_pixels"], tensors["test_pixels"])
    if any(p.shape[1:] != (NUM_FEATURES,) or p.dtype != torch.uint8 for p in pixels):
        raise refuse(f"images are not flattened to {NUM_FEATURES} uint8 pixels")
    return MNIST(**tensors, sha256=digest)
