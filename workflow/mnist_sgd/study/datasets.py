"""The data-set catalogue: each data set's name, IDX files, checksums, classes and title, and a custom
data set's declaration in the config; and the image count planning reads from an IDX header.

One place names each data set: the workflow's config and schema hold the same checksums (a test keeps
them in step), and torchvision's classes of the same names are the built-in ones' download registry
(mnist_sgd.data.sources; kept out of here so that planning does not import torchvision).
"""

import gzip
import os
import struct

# SHA-256 of the decompressed bytes; the same for every correct copy of MNIST, gzip or not.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# The data sets a sweep can name without declaring them: torchvision's classes of the same names are
# their registry (mnist_sgd.data.sources; kept out of here so that planning does not import torchvision).
BUILTIN_DATASETS = ("mnist", "fashion-mnist")
DEFAULT_DATASET = "mnist"
DATASET_NAME = r"[a-z0-9][a-z0-9-]*"
# The folder of a data set's results (dataset_dir): none for MNIST, `<data set>/` for any other.
DATASET_DIR = rf"((?!{DEFAULT_DATASET}/){DATASET_NAME}/)?"
# Every data set is in MNIST's IDX layout: these four files, 28x28 images, labels 0-9.
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DIGITS = tuple(str(digit) for digit in range(10))
# The names of the ten classes, in label order (figure panels and axes); digits for a custom data set.
# Fashion-MNIST's are torchvision's FashionMNIST.classes (a test checks they agree).
CLASS_NAMES = {
    "mnist": DIGITS,
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
DATASET_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}  # how figures name them


class SweepError(ValueError):
    """A sweep asks for something that cannot be run."""


def dataset_dir(dataset):
    """The folder a data set's runs, raw files and optima go in, under results/runs/ and the like: none
    for MNIST, so that the original study's paths stay as they were."""
    return "" if dataset == DEFAULT_DATASET else f"{dataset}/"


def dataset_of(folder):
    """The data set of a `dataset_dir` ("" is MNIST)."""
    return folder.rstrip("/") or DEFAULT_DATASET


def dataset_title(dataset):
    return DATASET_TITLES.get(dataset, dataset)


def class_names(dataset):
    return CLASS_NAMES.get(dataset, DIGITS)


def datasets(config):
    """{name: its custom_datasets entry, or None for a built-in one}: every data set `config` can train on."""
    return {**dict.fromkeys(BUILTIN_DATASETS), **(config.get("custom_datasets") or {})}


def targets_of(config):
    """A function from a data set's name to its target accuracies (config `targets`: one list for every
    data set, or a list per data set; none for a data set it does not name)."""
    targets = config.get("targets") or []
    if isinstance(targets, dict):
        return lambda dataset: sorted(targets.get(dataset, []))
    return lambda dataset: sorted(targets)


def dataset_sha256(config, dataset):
    """{IDX file: SHA-256 of its decompressed content} pinned for `dataset`: a custom data set's own
    `sha256`, else `data_sha256[dataset]`; a `data_sha256` of the four files themselves (the layout
    of earlier versions) pins MNIST. SweepError when the config pins none."""
    custom = (config.get("custom_datasets") or {}).get(dataset)
    if custom is not None:
        return custom["sha256"]
    pins = config.get("data_sha256") or {}
    if set(pins) == set(IDX_FILES):
        pins = {DEFAULT_DATASET: pins}
    if dataset not in pins:
        raise SweepError(
            f"config error: data_sha256 has no checksums for data set {dataset!r}; add data_sha256.{dataset} "
            "(the SHA-256 of each of its four decompressed IDX files)"
        )
    return pins[dataset]


def idx_image_count(path, fix):
    """The number of images in the IDX images file at `path` (plain or gzip), from its header, checked
    against the file's size (a gzip file's from its trailer). SweepError names the file, what is wrong
    with it, and `fix`. Planning reads it, so it reads 16 bytes and no more.
    """
    path = str(path)
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(-4, os.SEEK_END) if gzipped and os.path.getsize(path) >= 22 else None
            trailer = raw.read(4) if gzipped else b""
        with (gzip.open if gzipped else open)(path, "rb") as stream:
            header = stream.read(16)
    except (OSError, EOFError) as err:
        raise SweepError(f"{path}: unreadable ({err}); {fix}") from None
    size = struct.unpack("<I", trailer)[0] if len(trailer) == 4 else None if gzipped else os.path.getsize(path)
    if len(header) < 16 or header[:4] != b"\x00\x00\x08\x03":
        raise SweepError(f"{path}: not an IDX images file (its header is {header[:16].hex() or 'empty'}); {fix}")
    count, rows, columns = struct.unpack(">III", header[4:16])
    expected = 16 + count * rows * columns
    if gzipped and size is not None:
        expected_size = expected % (1 << 32)  # gzip's trailer holds the size modulo 2^32
    else:
        expected_size = expected
    if (rows, columns) != (28, 28):
        raise SweepError(
            f"{path}: its images are {rows}x{columns} pixels; the model takes 28x28 (784 pixels), as MNIST's; {fix}"
        )
    if count == 0:
        raise SweepError(f"{path}: its header says it holds no image; a training set needs at least one; {fix}")
    if size is not None and size != expected_size:
        raise SweepError(
            f"{path}: its header says {count} images of {rows}x{columns} pixels ({expected} bytes), but it holds "
            f"{size} bytes: truncated or damaged; {fix}"
        )
    return count
