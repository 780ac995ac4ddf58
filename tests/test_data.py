"""Fetching, verifying, parsing and caching MNIST, on small IDX files written by the tests."""

import errno
import fcntl
import gzip
import hashlib
import os
import threading

import numpy as np
import pytest
import torch
import torchvision
import yaml

from conftest import IDX_NAMES, REPO, idx_bytes, write_small_mnist
from mnist_sgd.data.cache import build_cache, load_cache
from mnist_sgd.data.fetch import fetch_idx
from mnist_sgd.data.idx import DataError, parse_idx
from mnist_sgd.data.sources import BUILTIN, file_names, gz_md5, sources
from mnist_sgd.study.datasets import BUILTIN_DATASETS, DIGITS, IDX_FILES, MNIST_SHA256, class_names

NAME = "train-images-idx3-ubyte"


def test_fetch_gzip_and_plain_copies_are_verified_and_decompressed(tmp_path):
    gz_sums = write_small_mnist(tmp_path / "gz", compress=True)
    plain_sums = write_small_mnist(tmp_path / "plain", compress=False)
    assert gz_sums == plain_sums
    for mirror in ("gz", "plain"):
        dest = tmp_path / f"out-{mirror}"
        source, gz_md5 = fetch_idx(NAME, [str(tmp_path / mirror)], gz_sums[NAME], dest)
        assert source.endswith(".gz") == (mirror == "gz") == (gz_md5 is not None)
        if gz_md5 is not None:
            assert gz_md5 == hashlib.md5((tmp_path / "gz" / f"{NAME}.gz").read_bytes()).hexdigest()
        assert parse_idx(dest.read_bytes()).shape == (300, 28, 28)


def test_a_bad_mirror_is_skipped_for_a_good_one_later_in_the_list(tmp_path, small_mirror):
    good, sums = small_mirror
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / f"{NAME}.gz").write_bytes(gzip.compress(b"not mnist"))
    dest = tmp_path / "out"
    source, _ = fetch_idx(NAME, [str(tmp_path / "missing"), str(bad), str(good)], sums[NAME], dest)
    assert source == str(good / f"{NAME}.gz")
    assert dest.exists()


def test_no_good_copy_lists_every_attempt_and_how_to_use_a_local_copy(tmp_path, small_mirror):
    good, sums = small_mirror
    dest = tmp_path / "out"
    with pytest.raises(DataError) as err:
        fetch_idx(NAME, [str(tmp_path / "nowhere"), "file:///nonexistent/mnist/"], "0" * 64, dest)
    message = str(err.value)
    assert f"{tmp_path / 'nowhere' / NAME}.gz: no such file" in message
    assert "file:///nonexistent/mnist/" + NAME in message
    assert "data_mirror=" in message
    with pytest.raises(DataError, match="SHA-256 of the content is"):
        fetch_idx(NAME, [str(good)], "0" * 64, dest)
    assert not dest.exists()
    assert list(tmp_path.glob(".out.*")) == []  # no half-written temporary left behind


def test_empty_and_unreadable_mirrors_are_named_and_skipped(tmp_path, small_mirror):
    good, sums = small_mirror
    empty_folder, empty_file, unreadable = tmp_path / "empty", tmp_path / "zero", tmp_path / "unreadable"
    empty_folder.mkdir()
    (empty_file / f"{NAME}.gz").parent.mkdir()
    (empty_file / f"{NAME}.gz").write_bytes(b"")
    (unreadable / f"{NAME}.gz").mkdir(parents=True)  # a folder where the file should be: cannot be read
    mirrors = [str(empty_folder), str(empty_file), str(unreadable)]
    with pytest.raises(DataError) as err:
        fetch_idx(NAME, mirrors, sums[NAME], tmp_path / "out")
    message = str(err.value)
    assert f"{empty_folder / NAME}.gz: no such file" in message
    assert f"{empty_file / NAME}.gz: SHA-256 of the content is" in message
    assert f"{unreadable / NAME}.gz: a folder, not a regular file" in message
    assert not (tmp_path / "out").exists()
    assert fetch_idx(NAME, [*mirrors, str(good)], sums[NAME], tmp_path / "out")[0] == str(good / f"{NAME}.gz")


def test_truncated_gzip_is_rejected(tmp_path, small_mirror):
    good, sums = small_mirror
    data = (good / f"{NAME}.gz").read_bytes()
    bad = tmp_path / "truncated"
    bad.mkdir()
    (bad / f"{NAME}.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        fetch_idx(NAME, [str(bad)], sums[NAME], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x00\x00\x08\x02" + b[4:], "bad IDX magic number"),
        (lambda b: b"\x12\x34" + b[2:], "bad IDX magic number"),
        (lambda b: b[:-1], "truncated or padded"),
        (lambda b: b + b"\x00", "truncated or padded"),
        (lambda b: b[:6], "truncated IDX header"),
        (lambda b: b[:3], "too short"),
    ],
)
def test_malformed_idx_is_rejected(mutate, message):
    good = idx_bytes(np.zeros((2, 28, 28)))
    assert parse_idx(good).shape == (2, 28, 28)
    with pytest.raises(DataError, match=message):
        parse_idx(mutate(good))


def test_images_of_the_wrong_shape_are_rejected():
    with pytest.raises(DataError, match="expected 28x28"):
        parse_idx(idx_bytes(np.zeros((2, 27, 28))))


def test_cache_holds_flattened_scaled_images_one_hot_targets_and_int_labels(tmp_path):
    write_small_mnist(tmp_path, compress=False)
    build_cache(*(tmp_path / n for n in IDX_NAMES), tmp_path / "mnist.pt")
    data = load_cache(tmp_path / "mnist.pt")
    raw_images = parse_idx((tmp_path / IDX_NAMES[0]).read_bytes())
    raw_labels = parse_idx((tmp_path / IDX_NAMES[1]).read_bytes())
    # Kept as the bytes they are (a quarter of float32's memory), made floats where they are used.
    assert data.train_pixels.dtype == data.test_pixels.dtype == torch.uint8
    assert data.train_images.shape == (300, 784) and data.train_images.dtype == torch.float32
    assert data.test_images.shape == (100, 784)
    assert torch.equal(data.train_images, raw_images.reshape(300, 784).float() / 255)
    assert 0 <= data.train_images.min() and data.train_images.max() <= 1
    assert torch.equal(data.train_targets.argmax(1), raw_labels.long())
    assert torch.equal(data.train_targets.sum(1), torch.ones(300))
    assert data.test_labels.dtype == torch.int64


def test_the_cache_is_the_same_bytes_whenever_it_is_rebuilt(tmp_path):
    write_small_mnist(tmp_path, compress=False)
    build_cache(*(tmp_path / n for n in IDX_NAMES), tmp_path / "a.pt")
    build_cache(*(tmp_path / n for n in IDX_NAMES), tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_mismatched_image_and_label_counts_are_rejected(tmp_path):
    write_small_mnist(tmp_path, compress=False)
    (tmp_path / IDX_NAMES[1]).write_bytes(idx_bytes(np.zeros(299)))
    with pytest.raises(DataError, match="300 images but .* 299 labels"):
        build_cache(*(tmp_path / n for n in IDX_NAMES), tmp_path / "mnist.pt")
    assert not (tmp_path / "mnist.pt").exists()


REFUSED = r"refused it \(rebuild it with: snakemake --forcerun format_mnist\)"


def test_an_unreadable_cache_is_named_and_refused(tmp_path):
    (tmp_path / "mnist.pt").write_bytes(b"half a file")
    with pytest.raises(DataError, match=f"mnist.pt: unreadable data cache .*; {REFUSED}"):
        load_cache(tmp_path / "mnist.pt")


def damage(path, start_fraction=0.5, length=64 << 10):
    """Overwrite `length` bytes in the middle of `path` with 0xFF, as a bad disk or copy would."""
    content = bytearray(path.read_bytes())
    start = int(len(content) * start_fraction)
    content[start : start + length] = b"\xff" * min(length, len(content) - start)
    path.write_bytes(bytes(content))


def test_a_damaged_cache_that_still_loads_is_refused_by_its_digest(tmp_path):
    write_small_mnist(tmp_path, compress=False)
    cache = tmp_path / "mnist.pt"
    build_cache(*(tmp_path / n for n in IDX_NAMES), cache)
    good = torch.load(cache, weights_only=True)["train_pixels"]
    damage(cache)
    # The damaged bytes fall inside the training images: torch.load itself does not notice.
    assert not torch.equal(torch.load(cache, weights_only=True, mmap=True)["train_pixels"], good)
    with pytest.raises(
        DataError,
        match="mnist.pt: damaged data cache: its tensors hash to SHA-256 [0-9a-f]{64}, "
        f"not the [0-9a-f]{{64}} they were written with; {REFUSED}",
    ):
        load_cache(cache)


def test_a_damaged_cache_is_rebuilt_from_its_files_when_they_are_given(tmp_path):
    sha256 = write_small_mnist(tmp_path, compress=False)
    cache, files = tmp_path / "mnist.pt", [tmp_path / n for n in IDX_NAMES]
    build_cache(*files, cache)
    original = cache.read_bytes()
    damage(cache)
    lines = []
    data = load_cache(cache, sources=sha256, rebuild_from=files, log=lines.append)
    assert cache.read_bytes() == original and data.sha256 == load_cache(cache).sha256
    assert "mnist.pt: damaged data cache" in lines[0] and "rebuilding it from" in lines[0]
    damage(cache)
    (tmp_path / NAME).write_bytes((tmp_path / NAME).read_bytes()[:-1] + b"\x07")  # and a source file
    with pytest.raises(DataError, match=f"{NAME}: SHA-256 [0-9a-f]{{64}}, expected {sha256[NAME]}"):
        load_cache(cache, sources=sha256, rebuild_from=files, log=lines.append)


def test_a_data_set_without_an_image_is_refused_naming_the_file(tmp_path):
    write_small_mnist(tmp_path, compress=False)
    (tmp_path / IDX_NAMES[2]).write_bytes(idx_bytes(np.zeros((0, 28, 28))))
    (tmp_path / IDX_NAMES[3]).write_bytes(idx_bytes(np.zeros(0)))
    with pytest.raises(DataError, match=f"{tmp_path / IDX_NAMES[2]} holds no image; a data set needs at least one"):
        build_cache(*(tmp_path / n for n in IDX_NAMES), tmp_path / "mnist.pt")
    assert not (tmp_path / "mnist.pt").exists()


def test_the_format_rules_write_waits_for_the_caches_lock(tmp_path):
    """format_mnist and a job's rebuild (load_cache) take the same lock: they never write at once."""
    write_small_mnist(tmp_path, compress=False)
    cache = tmp_path / "mnist.pt"
    with open(tmp_path / ".mnist.pt.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        writer = threading.Thread(target=build_cache, args=[*(tmp_path / n for n in IDX_NAMES), cache])
        writer.start()
        writer.join(0.5)
        assert writer.is_alive() and not cache.exists()
        fcntl.flock(lock, fcntl.LOCK_UN)
        writer.join(30)
    assert cache.exists()


def test_a_file_system_without_locks_rebuilds_the_cache_without_one_and_says_so(tmp_path, monkeypatch):
    """Lustre mounted without flock: flock fails with ENOSYS."""
    sha256 = write_small_mnist(tmp_path, compress=False)
    files = [tmp_path / n for n in IDX_NAMES]

    def no_locks(descriptor, operation):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr("mnist_sgd.data.cache.fcntl.flock", no_locks)
    lines = []
    data = load_cache(tmp_path / "mnist.pt", sources=sha256, rebuild_from=files, log=lines.append)
    assert data.train_pixels.shape == (300, 784)
    assert f"{tmp_path / 'mnist.pt'}: no file locks on this file system (Function not implemented)" in lines[1]
    monkeypatch.setattr("mnist_sgd.data.cache.fcntl.flock", lambda *_: (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
    with pytest.raises(OSError, match="I/O"):  # any other failure is not taken for a missing lock
        build_cache(*files, tmp_path / "other.pt")


def test_a_cache_is_checked_against_the_files_it_should_come_from(tmp_path):
    sha256 = write_small_mnist(tmp_path, compress=False)
    cache = tmp_path / "mnist.pt"
    build_cache(*(tmp_path / n for n in IDX_NAMES), cache)
    data = load_cache(cache, sources=sha256)
    assert data.sha256 is not None and data.sha256 == load_cache(cache).sha256
    with pytest.raises(DataError, match="a data cache of other files than the configured ones"):
        load_cache(cache, sources={**sha256, NAME: "0" * 64})


def test_a_download_that_decompresses_to_more_than_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("mnist_sgd.data.fetch.MAX_IDX_BYTES", 1 << 20)
    (tmp_path / f"{NAME}.gz").write_bytes(gzip.compress(bytes(4 << 20)))  # 4 MiB of zeros: 4 kB of gzip
    (tmp_path / NAME).write_bytes(bytes((1 << 20) + 1))
    with pytest.raises(DataError) as error:
        fetch_idx(NAME, [str(tmp_path)], "0" * 64, tmp_path / "out")
    assert f"{NAME}.gz: decompresses to more than 1 MiB, the most this workflow reads" in str(error.value)
    assert f"{NAME}: holds more than 1 MiB" in str(error.value)
    assert not (tmp_path / "out").exists()


def test_the_checksums_agree_in_the_code_the_config_and_the_schema_and_the_mirrors_are_torchvisions():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())["properties"]
    assert config["data_sha256"] == schema["data_sha256"]["default"]
    assert config["data_sha256"]["mnist"] == MNIST_SHA256 and set(config["data_sha256"]) == set(BUILTIN_DATASETS)
    assert config["mirrors"] == schema["mirrors"]["default"] == []  # torchvision's come after any of these
    assert sources("mnist") == torchvision.datasets.MNIST.mirrors
    assert sources("fashion-mnist", "/data", ["https://example.org/idx"]) == [
        "/data/fashion-mnist",
        "https://example.org/idx/fashion-mnist",
        *torchvision.datasets.FashionMNIST.mirrors,
    ]
    assert sources("mnist", "/data")[:2] == ["/data/mnist", "/data"]  # MNIST's files directly: as before
    assert sources("mine", "/data", custom={"path": "/elsewhere"}) == ["/elsewhere"]


@pytest.mark.parametrize("dataset", BUILTIN_DATASETS)
def test_torchvision_registers_each_built_in_data_set_with_this_workflows_file_names_and_classes(dataset):
    assert tuple(BUILTIN) == BUILTIN_DATASETS
    assert file_names(dataset) == list(IDX_FILES)
    assert len(gz_md5(dataset, IDX_FILES[0])) == 32
    classes = BUILTIN[dataset].classes
    assert class_names(dataset) == (DIGITS if dataset == "mnist" else tuple(classes))
    assert len(classes) == 10
