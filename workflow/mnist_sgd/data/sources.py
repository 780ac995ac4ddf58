"""The built-in data sets, as torchvision registers them, and where the workflow fetches each one from.

What is torchvision's and what is ours, and why:

- torchvision's dataset classes are the registry (`BUILTIN`): a built-in data set's file names and the MD5
  of each `.gz` (`resources`) and its download mirrors (`mirrors`) come from them, never from a copy here.
- Fetching, checking and parsing stay ours (`mnist_sgd.data`). torchvision 0.29's `download=True` checks
  only the MD5 of the `.gz`, so a correctly recompressed local copy is refused; once the raw files exist it
  checks nothing, so a tampered label byte loads silently; a `file://` mirror raises `AttributeError` and
  leaves an empty file behind; its IDX reader reports a bad magic number with a bare `assert`. So the
  workflow reads a local folder first (gzip or plain), pins the SHA-256 of each decompressed file (config
  `data_sha256`, per data set) and checks it on every path into the cache, parses IDX strictly (magic,
  dimensions, label range), and names every failed attempt. torchvision's MD5 is logged, not enforced:
  the content's SHA-256 is the stronger check, and it also holds for recompressed copies.

Only the download job imports this module (and torchvision): planning and training stay free of it.
"""

import torchvision.datasets

from .fetch import join_location

# Each built-in data set's torchvision class (study.BUILTIN_DATASETS names them for planning, which does
# not import torchvision; a test checks both agree).
BUILTIN = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}


def file_names(dataset):
    """The IDX files of a built-in data set, as torchvision names them (without `.gz`)."""
    return [name.removesuffix(".gz") for name, _ in BUILTIN[dataset].resources]


def gz_md5(dataset, idx_file):
    """torchvision's MD5 of the `.gz` of a built-in data set's IDX file."""
    return dict(BUILTIN[dataset].resources)[f"{idx_file}.gz"]


def sources(dataset, data_mirror=None, mirrors=(), custom=None):
    """Where IDX files of `dataset` are looked for, in order: `data_mirror`'s sub-folder named after the
    data set (and, for MNIST, `data_mirror` itself, the layout of earlier versions), the same for each of
    `mirrors`, then, for a built-in data set, torchvision's download mirrors; for a custom data set
    (`custom`, its config entry), its own folder only."""
    if custom is not None:
        return [custom["path"]]
    found = []
    for mirror in ([data_mirror] if data_mirror else []) + list(mirrors):
        found.append(join_location(mirror, dataset))
        if dataset == "mnist":
            found.append(mirror)
    return found + list(BUILTIN[dataset].mirrors)


def md5_note(dataset, idx_file, gz_md5_found):
    """A log line comparing the MD5 of a fetched `.gz` with torchvision's (None for a custom data set, or
    a file that was not compressed)."""
    if dataset not in BUILTIN or gz_md5_found is None:
        return None
    expected = gz_md5(dataset, idx_file)
    if gz_md5_found == expected:
        return f"{idx_file}.gz: MD5 {gz_md5_found}, torchvision's"
    return (
        f"{idx_file}.gz: MD5 {gz_md5_found}, not torchvision's {expected} (another compression; the content's "
        "SHA-256 is what is checked)"
    )
