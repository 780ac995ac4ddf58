"""Fetching an IDX file from the first mirror that has a verified copy: each attempt bounded in time and
memory, logged, and given up for the next mirror.
"""

import gzip
import hashlib
import os
import socket
import stat
import time
import urllib.request
import zlib
from pathlib import Path

from ..study.files import atomic_path
from .idx import DataError, parse_idx

# The largest IDX file read, decompressed: bounds what a corrupt or hostile download can allocate.
MAX_IDX_BYTES = 1 << 30
LOCAL_COPY_HINT = (
    "To use a local copy (the four IDX files, gzip or plain), point the workflow at a folder holding them in a "
    "sub-folder named after the data set ({dataset}/), or, for MNIST, directly: "
    "snakemake --config data_mirror=/path/to/folder ..."
)


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
