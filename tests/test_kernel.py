"""The data set's kernel table (mnist_sgd.data.kernel): exact products, and refused when it cannot be trusted."""

import dataclasses

import pytest
import torch

from mnist_sgd.data.idx import DataError
from mnist_sgd.data.kernel import HEADER_BYTES, compute_table, load_table, write_table

QUIET = {"log": lambda message: None}


def test_the_table_holds_every_training_images_exact_products_with_the_test_images(small_data):
    table = compute_table(small_data)
    exact = small_data.train_pixels.double() @ small_data.test_pixels.double().T
    assert table.exact and exact.max() < 2**24
    assert torch.equal(table.products.double(), exact)


def test_a_written_table_is_read_back_memory_mapped_as_it_was(small_data, tmp_path):
    path = tmp_path / "tables" / "mnist.kernel.bin"
    write_table(small_data, path, **QUIET)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left beside it
    read = load_table(path, small_data)
    assert read.exact and torch.equal(read.products, compute_table(small_data).products)


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda path: path.write_bytes(path.read_bytes()[:5000]), "bytes, not the"),
        (lambda path: path.write_bytes(b"not a table"), "not a readable kernel table"),
        (lambda path: path.write_bytes(b'{"version": 1}'), "not a kernel table of this version"),
        (lambda path: path.write_bytes(bytes(HEADER_BYTES) + path.read_bytes()[HEADER_BYTES:]), "not a readable"),
    ],
    ids=["torn", "garbage", "other-version", "never-finished"],
)
def test_a_damaged_table_is_refused_naming_the_file_and_the_fix(small_data, tmp_path, damage, message):
    path = tmp_path / "mnist.kernel.bin"
    write_table(small_data, path, **QUIET)
    damage(path)
    with pytest.raises(DataError, match=message) as error:
        load_table(path, small_data)
    assert str(path) in str(error.value) and "delete it" in str(error.value)


def test_a_table_of_other_data_is_refused(small_data, tmp_path):
    path = tmp_path / "mnist.kernel.bin"
    write_table(small_data, path, **QUIET)
    other = dataclasses.replace(small_data, sha256="0" * 64)
    with pytest.raises(DataError, match="computed from other data"):
        load_table(path, other)
    fewer = dataclasses.replace(small_data, train_pixels=small_data.train_pixels[:-1])
    with pytest.raises(DataError, match="table, not"):
        load_table(path, dataclasses.replace(fewer, sha256=small_data.sha256))
