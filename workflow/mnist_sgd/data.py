"""MNIST: fetch the IDX files from mirrors, verify them, parse them strictly, and cache the tensors.

Every training job reads the cache written by `build_cache` through `load_cache`; nothing else
touches the raw files.
"""

import contextlib
import dataclasses
import errno
import fcntl
import gzip
import hashlib
import os
import pickle
import socket
import stat
import struct
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .files import atomic_path

# SHA-256 of the decompressed bytes; the same for every correct copy of MNIST, gzip or not.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
IMAGE_SIDE = 28
# The largest IDX file read, decompressed: bounds what a corrupt or hostile download can allocate.
MAX_IDX_BYTES = 1 << 30
NUM_FEATURES = IMAGE_SIDE * IMAGE_SIDE
NUM_CLASSES = 10
_IDX_UBYTE = 0x08
# What the cached tensors are, besides the content of their IDX files: bump it whenever build_cache would
# write other tensors (another scaling, dtype or layout). A cache of another version is refused on load and
# rebuilt by the first job that loads it; the format rule itself reruns only when its IDX files change
# (a rebuild in the rule would stop Snakemake 9.27 before the jobs downstream: see docs/reruns.md).
_CACHE_VERSION = 3  # 2: with the SHA-256 of its tensors and of its source files; 3: images as uint8 pixels
LOCAL_COPY_HINT = (
    "To use a local copy (the four IDX files, gzip or plain), point the workflow at a folder holding them in a "
    "sub-folder named after the data set ({dataset}/), or, for MNIST, directly: "
    "snakemake --config data_mirror=/path/to/folder ..."
)


class DataError(RuntimeError):
    """A data file is missing, unreadable or not the expected MNIST content."""


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

    def to(self, device):
        """Return a copy with every tensor on `device`."""
        return dataclasses.replace(self, **{name: getattr(self, name).to(device) for name in TENSORS})

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


# How long one download attempt may take: a source that sends no byte for STALL_SECONDS, or has not
# finished after DEADLINE_SECONDS in all, is given up for the next one (config download_stall_seconds,
# download_deadline_seconds). A per-read timeout alone never gives up on a source that trickles.
STALL_SECONDS = 30
DEADLINE_SECONDS = 600
# Bytes read or decompressed at a time: what a download holds in memory, whatever the file's size.
CHUNK_BYTES = 1 << 20


class _Unreachable(DataError):
    """A source that did not answer in time, or refused the connection: its other file names are not tried."""


def _stream_source(location, sink, stall, deadline):
    """Copy the bytes at a local path or URL into the binary stream `sink`, CHUNK_BYTES at a time, at most
    MAX_IDX_BYTES of them, within `stall` seconds per read and `deadline` seconds in all; return their MD5."""
    started = time.monotonic()
    md5, size = hashlib.md5(), 0
    with _open_source(location, stall) as source:
        while True:
            try:
                chunk = source.read1(CHUNK_BYTES)
            except (TimeoutError, socket.timeout) as err:
                raise _Unreachable(f"gave up: no data for {stall:g} s") from err
            if not chunk:
                return md5.hexdigest()
            size += len(chunk)
            if size > MAX_IDX_BYTES:
                raise DataError(_too_large("holds"))
            md5.update(chunk)
            sink.write(chunk)
            if time.monotonic() - started > deadline:
                raise _Unreachable(f"gave up: not complete after {deadline:g} s ({size} bytes so far)")


def _open_source(location, stall):
    """A binary stream of the bytes at a local path or a URL (with `stall` seconds to connect and answer).

    A local path must be a regular file: a FIFO, a device or a socket would block, or never end."""
    if "://" not in location:
        _check_regular(os.stat(location).st_mode)
        descriptor = os.open(location, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        try:  # it may have been replaced since the look above
            _check_regular(os.fstat(descriptor).st_mode)
            os.set_blocking(descriptor, True)
            return os.fdopen(descriptor, "rb")
        except BaseException:
            os.close(descriptor)
            raise
    try:
        return urllib.request.urlopen(location, timeout=stall)
    except (TimeoutError, socket.timeout) as err:
        raise _Unreachable(f"gave up: no answer in {stall:g} s") from err
    except urllib.error.URLError as err:
        if isinstance(err.reason, (TimeoutError, socket.timeout, ConnectionError)):
            raise _Unreachable(f"gave up: {err.reason or 'no answer'}") from err
        raise


_NOT_REGULAR = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _check_regular(mode):
    if not stat.S_ISREG(mode):
        kind = _NOT_REGULAR.get(stat.S_IFMT(mode), "not a file")
        raise DataError(f"{kind}, not a regular file: a mirror's files are read only when they are regular files")


def _too_large(what):
    return (
        f"{what} more than {MAX_IDX_BYTES >> 20} MiB, the most this workflow reads of an IDX file "
        "(MNIST's largest is 45 MiB)"
    )


def _decompressed(raw_path, sink):
    """Copy the file at `raw_path` into `sink`, gunzipped if it is gzip data, CHUNK_BYTES at a time and at
    most MAX_IDX_BYTES in all; return the SHA-256 of what was written."""
    with open(raw_path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    digest, size = hashlib.sha256(), 0
    try:
        with (gzip.open if gzipped else open)(raw_path, "rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                size += len(chunk)
                if size > MAX_IDX_BYTES:
                    raise DataError(_too_large("decompresses to" if gzipped else "holds"))
                digest.update(chunk)
                sink.write(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(f"truncated or corrupt gzip data ({err})") from err
    return digest.hexdigest(), gzipped


def join_location(mirror, filename):
    """`filename` in `mirror`, a folder or a URL."""
    return mirror.rstrip("/") + "/" + filename if "://" in mirror else str(Path(mirror) / filename)


def fetch_idx(
    name,
    mirrors,
    sha256,
    destination,
    dataset="mnist",
    stall=STALL_SECONDS,
    deadline=DEADLINE_SECONDS,
    hint=None,
    log=lambda message: None,
    unreachable=None,
):
    """Fetch IDX file `name` of `dataset` from the first mirror that has a verified copy; write it to
    `destination`; return (where it came from, the MD5 of the `.gz` fetched, or None if it was not compressed).

    Each mirror is tried for `name.gz`, then `name` (not when it did not answer in time). An attempt is
    given up after `stall` seconds without data or `deadline` seconds in all. A mirror that did not answer
    in time is added to the set `unreachable`, and a mirror in it is skipped: one set shared by the
    files of a download makes a silent mirror cost one stall, not one per file. The decompressed bytes
    must hash to `sha256` and parse as an IDX file; on success they are written atomically. Memory stays
    bounded (CHUNK_BYTES at a time) whatever a source sends. Each attempt and why it was given up is
    logged. If no mirror has a good copy, raise DataError listing every attempt and `hint`, how to use a
    local copy (by default, data_mirror's).
    """
    attempts = []
    unreachable = set() if unreachable is None else unreachable
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    for mirror in mirrors:
        if mirror in unreachable:
            attempts.append(f"{mirror}: skipped, it did not answer in time earlier in this download")
            log(attempts[-1])
            continue
        for filename in (name + ".gz", name):
            location = join_location(mirror, filename)
            log(f"trying {location}")
            problem = _attempt(location, sha256, destination, stall, deadline)
            if isinstance(problem, tuple):
                log(f"{location}: verified")
                return problem
            log(f"{location}: {problem}")
            attempts.append(f"{location}: {problem}")
            if isinstance(problem, _Unreachable):
                unreachable.add(mirror)
                break
    tried = "\n".join(f"  - {a}" for a in attempts) or "  (no mirrors configured)"
    hint = hint or LOCAL_COPY_HINT.format(dataset=dataset)
    raise DataError(f"no verified copy of {dataset} file '{name}' found. Tried:\n{tried}\n{hint}")


def _attempt(location, sha256, destination, stall, deadline):
    """Fetch, decompress, verify and write one copy: (location, MD5 of its .gz or None), or what was wrong
    with it (a DataError, or its message)."""
    raw = destination.with_name(f".{destination.name}.download")
    try:
        with open(raw, "wb") as sink:
            md5 = _stream_source(location, sink, stall, deadline)
        with atomic_path(destination) as tmp:
            with open(tmp, "wb") as sink:
                digest, gzipped = _decompressed(raw, sink)
            if digest != sha256:
                raise DataError(f"SHA-256 of the content is {digest}, expected {sha256}")
            parse_idx(tmp.read_bytes(), origin=location)
        return location, md5 if gzipped else None
    except FileNotFoundError:
        return "no such file"
    except DataError as err:
        return err if isinstance(err, _Unreachable) else str(err).removeprefix(f"{location}: ")
    except (OSError, urllib.error.URLError, ValueError) as err:
        return str(err)
    finally:
        raw.unlink(missing_ok=True)


def parse_idx(data, origin="<bytes>"):
    """Parse IDX bytes of unsigned bytes into a uint8 tensor, checking magic number, dimensions and size."""
    if len(data) < 4:
        raise DataError(f"{origin}: {len(data)} bytes, too short for an IDX header")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != _IDX_UBYTE or ndim not in (1, 3):
        raise DataError(
            f"{origin}: bad IDX magic number 0x{data[:4].hex()}; expected 0x00000801 (labels) or 0x00000803 (images)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{origin}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if ndim == 3 and dims[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f"{origin}: images are {dims[1]}x{dims[2]}, expected {IMAGE_SIDE}x{IMAGE_SIDE}")
    count = 1
    for d in dims:
        count *= d
    if len(data) != header + count:
        raise DataError(
            f"{origin}: {len(data)} bytes, but the header {dims} implies {header + count} (truncated or padded)"
        )
    if count == 0:  # frombuffer refuses an empty buffer
        return torch.zeros(dims, dtype=torch.uint8)
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(dims)


def _read_pair(images_data, labels_data, images_path, labels_path):
    images = parse_idx(images_data, origin=str(images_path))
    labels = parse_idx(labels_data, origin=str(labels_path))
    if images.dim() != 3 or labels.dim() != 1:
        raise DataError(f"{images_path} must hold images and {labels_path} labels; they are swapped or wrong")
    if images.shape[0] == 0:
        raise DataError(f"{images_path} holds no image; a data set needs at least one training and one test image")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_path} holds {images.shape[0]} images but {labels_path} {labels.shape[0]} labels")
    if labels.numel() and int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{labels_path}: label {int(labels.max())} is not a digit 0-9")
    return images.reshape(len(images), -1), labels.to(torch.int64)


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
    paths = dict(zip(MNIST_SHA256, (train_images, train_labels, test_images, test_labels)))
    raw = {name: Path(path).read_bytes() for name, path in paths.items()}
    hashes = {name: hashlib.sha256(content).hexdigest() for name, content in raw.items()}
    for name, expected in (sources or {}).items():
        if hashes[name] != expected:
            raise DataError(
                f"{paths[name]}: SHA-256 {hashes[name]}, expected {expected}; delete it and rerun "
                "the workflow to fetch a verified copy"
            )
    x_train, y_train = _read_pair(
        raw["train-images-idx3-ubyte"], raw["train-labels-idx1-ubyte"], train_images, train_labels
    )
    x_test, y_test = _read_pair(raw["t10k-images-idx3-ubyte"], raw["t10k-labels-idx1-ubyte"], test_images, test_labels)
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
    place atomically (mnist_sgd.files), so jobs that rebuild it at once each do the work, and no job
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


def seeded_generator(seed):
    """Seed torch's global generators and return the CPU generator that draws subsets and batches.

    Subsets and batches are drawn on the CPU whatever the device, so a run sees the same batches on
    every machine.
    """
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def training_set(data, train_size, generator):
    """The training pixels and one-hot targets: all of them, or a seeded random subset of `train_size`."""
    num_train = data.train_pixels.shape[0]
    if train_size is None or train_size == num_train:
        return data.train_pixels, data.train_targets
    subset = torch.randperm(num_train, generator=generator)[:train_size].to(data.train_pixels.device)
    return data.train_pixels.index_select(0, subset), data.train_targets.index_select(0, subset)
