"""Downloads that a mirror stalls, trickles or bloats: each attempt is bounded in time and memory, logged,
and given up for the next mirror."""

import gzip
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO
from mnist_sgd.data.fetch import fetch_idx
from mnist_sgd.data.idx import DataError

NAME = "train-labels-idx1-ubyte"


@pytest.fixture
def server():
    """Start a local TCP server that answers each connection with `behaviour(connection)`; yield its URL
    maker; stop it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop, connections = threading.Event(), []

    def serve(behaviour):
        def loop():
            listener.settimeout(0.1)
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except OSError:
                    continue
                connections.append(connection)
                threading.Thread(target=behaviour, args=(connection, stop), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/mnist"

    serve.connections = connections  # every connection it accepted, for tests that count attempts
    yield serve
    stop.set()
    for connection in connections:
        connection.close()
    listener.close()


def silent(connection, stop):
    """Accept, read the request, never answer."""
    connection.recv(65536)
    stop.wait(30)


def trickle(connection, stop):
    """Answer with a valid HTTP header, then one byte every 0.2 s, forever."""
    connection.recv(65536)
    connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 100000000\r\n\r\n")
    while not stop.wait(0.2):
        try:
            connection.sendall(b"\x1f")
        except OSError:
            return


@pytest.mark.parametrize("behaviour, reason", [(silent, "no answer in 0.5 s"), (trickle, "not complete after 1.5 s")])
def test_a_silent_or_trickling_mirror_is_given_up_within_its_deadline_for_the_next(
    server, small_mirror, tmp_path, behaviour, reason
):
    good, sums = small_mirror
    url, lines = server(behaviour), []
    started = time.monotonic()
    source, _ = fetch_idx(
        NAME, [url, str(good)], sums[NAME], tmp_path / "out", stall=0.5, deadline=1.5, log=lines.append
    )
    # One attempt on the stalled mirror (its plain name is not tried), then the good copy.
    assert time.monotonic() - started < 5
    assert source == str(good / f"{NAME}.gz")
    assert lines[0] == f"trying {url}/{NAME}.gz" and reason in lines[1] and lines[1].startswith(f"{url}/{NAME}.gz: ")
    assert lines[2] == f"trying {good / NAME}.gz" and not any(f"{url}/{NAME}:" in line for line in lines)


def test_a_mirror_that_stalled_once_is_skipped_for_the_rest_of_the_download(server, small_mirror, tmp_path):
    """A silent first mirror costs one stall for a data set's four files, not one per file."""
    good, sums = small_mirror
    url, lines, unreachable = server(silent), [], set()
    for name in sums:
        fetch_idx(
            name, [url, str(good)], sums[name], tmp_path / name, stall=1, log=lines.append, unreachable=unreachable
        )
    # One attempt on the silent mirror, so one stall (counted, not timed: a busy machine stretches time).
    assert len(server.connections) == 1
    assert unreachable == {url} and sum("gave up" in line for line in lines) == 1
    assert lines.count(f"{url}: skipped, it did not answer in time earlier in this download") == 3


def test_a_fifo_device_or_socket_in_a_local_mirror_is_refused_at_once_for_the_next_mirror(small_mirror, tmp_path):
    """Reading one would block forever (a FIFO without a writer, a socket) or never end (/dev/zero)."""
    good, sums = small_mirror
    fifo, device, sock = (tmp_path / kind for kind in ("fifo", "device", "socket"))
    for folder in (fifo, device, sock):
        folder.mkdir()
    os.mkfifo(fifo / f"{NAME}.gz")
    os.symlink("/dev/zero", device / f"{NAME}.gz")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock / f"{NAME}.gz"))
    lines = []
    started = time.monotonic()
    source, _ = fetch_idx(
        NAME, [str(fifo), str(device), str(sock), str(good)], sums[NAME], tmp_path / "out", log=lines.append
    )
    listener.close()
    assert time.monotonic() - started < 5 and source == str(good / f"{NAME}.gz")
    for folder, kind in [(fifo, "a FIFO"), (device, "a character device"), (sock, "a socket")]:
        assert any(line.startswith(f"{folder / NAME}.gz: {kind}, not a regular file") for line in lines)


def test_a_mirror_that_only_stalls_fails_with_every_attempt_named(server, tmp_path):
    url = server(silent)
    with pytest.raises(DataError) as error:
        fetch_idx(NAME, [url], "0" * 64, tmp_path / "out", stall=0.3, deadline=1)
    assert f"{url}/{NAME}.gz: gave up: no answer in 0.3 s" in str(error.value)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_downloads_stream_in_bounded_memory_and_a_decompression_bomb_is_refused_for_the_next_mirror(
    tmp_path, small_mirror
):
    """Under an address-space limit of what the process already maps and 128 MiB more (half the size limit),
    a small file is fetched and a gzip bomb is refused by its size (its 320 MiB never held), then the next
    mirror is used."""
    good, sums = small_mirror
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    with gzip.open(bomb / f"{NAME}.gz", "wb", compresslevel=1) as stream:
        block = bytes(32 << 20)
        for _ in range(10):  # 320 MiB of zeros: about 300 kB of gzip
            stream.write(block)
    script = f"""
import resource, sys
sys.path.insert(0, {str(REPO / "workflow")!r})
import mnist_sgd.data
from mnist_sgd.data.fetch import fetch_idx
mnist_sgd.data.fetch.MAX_IDX_BYTES = 256 << 20
mapped = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (mapped + (128 << 20),) * 2)
lines = []
print(fetch_idx({NAME!r}, [{str(bomb)!r}, {str(good)!r}], {sums[NAME]!r}, {str(tmp_path / "out")!r}, log=lines.append)[0])
print(*lines, sep="\\n")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == str(good / f"{NAME}.gz")
    assert f"{bomb / NAME}.gz: decompresses to more than 256 MiB" in result.stdout
    assert (tmp_path / "out").exists() and not list(bomb.glob(".*"))
