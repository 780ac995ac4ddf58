"""Atomic writes: a result file exists complete or not at all."""

import errno
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from mnist_sgd.study.files import NoSpace, atomic_path, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.csv"
    target.write_text("complete\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_a_temporary_left_by_a_killed_writer_is_removed_by_the_next_write_and_no_other(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    host = socket.gethostname()
    names = [
        f".metrics.csv.{host}.{dead.pid}.abc123.tmp",  # what SIGKILL leaves mid-write: removed
        f".metrics.csv.{host}.{os.getppid()}.abc123.tmp",  # a live writer's, on this host: kept
        f".metrics.csv.other-node.example.org.{dead.pid}.abc123.tmp",  # another node's: kept
        f".run.json.{host}.{dead.pid}.abc123.tmp",  # another file's: not ours to touch
    ]
    for name in names:
        (tmp_path / name).write_text("half")
    write_text_atomic(tmp_path / "metrics.csv", "complete\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names[1:], "metrics.csv"])


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB file system (tmpfs, mounted as root; skipped where that is not allowed)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("writer", ["text", "numpy", "torch"])
def test_a_full_disk_is_named_and_leaves_nothing_half_written(small_disk, writer):
    """Each way the workflow writes a result: the error says "no space left on" the folder, whatever
    the writer's own message (numpy's carries no errno: "7840 requested and 3040 written")."""
    target = small_disk / "result"
    with pytest.raises(NoSpace, match=f"no space left on {small_disk} while writing result"):
        with atomic_path(target) as tmp:
            if writer == "text":
                tmp.write_text("x" * (1 << 20))
            elif writer == "numpy":
                with open(tmp, "wb") as stream:
                    np.save(stream, np.zeros(1 << 18))
            else:
                with open(tmp, "wb") as stream:
                    torch.save(torch.zeros(1 << 18), stream)
    assert list(small_disk.iterdir()) == []


def test_a_failure_that_is_not_a_full_disk_is_left_as_it_is(tmp_path):
    with pytest.raises(OSError) as error, atomic_path(tmp_path / "x") as tmp:
        raise OSError(errno.EACCES, "denied", str(tmp))
    assert not isinstance(error.value, NoSpace)
