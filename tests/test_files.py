"""Atomic writes: a result file exists complete or not at all."""

import pytest

from mnist_sgd.files import atomic_path, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.csv"
    target.write_text("complete\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_a_temporary_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    leftover = tmp_path / ".metrics.csv.abc123.tmp"  # what SIGKILL leaves mid-write
    other = tmp_path / ".run.json.abc123.tmp"  # another file's: not ours to touch
    leftover.write_text("half")
    other.write_text("half")
    write_text_atomic(tmp_path / "metrics.csv", "complete\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.json.abc123.tmp", "metrics.csv"]
