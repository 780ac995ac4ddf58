"""This user's own directory on this machine, for what must be neither read nor planted by another local
user: the warm worker's socket and the GPU locks (docs/security.md).

It is `<temp dir>/mnist-sgd-<uid>`, made with mode 0700. One that exists already is used only if it is a
real directory (not a link), owned by this user, that nobody else can enter: another user could have made
it first, to plant a socket that listens for our jobs or lock files that hold our GPUs.
"""

import os
import stat
import tempfile
from pathlib import Path


class NotPrivate(OSError):
    """A directory that must be this user's alone is someone else's, a link, or open to others."""


def user_dir():
    """This user's private directory (made if missing); NotPrivate, naming it and the fix, if it is not
    private."""
    return ensure_private(Path(tempfile.gettempdir()) / f"mnist-sgd-{os.getuid()}")


def ensure_private(path):
    """`path`, made as a directory of mode 0700 if missing (with its missing parents, which are this
    user's too); NotPrivate if it is a link, is not a directory, belongs to another user, or grants any
    access to group or others."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = path.lstat()  # not stat: a link to a directory of ours would pass through to someone's
    fix = "remove it (or set TMPDIR to a directory of your own) and run again"
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise NotPrivate(f"{path} is not a directory but a {'link' if stat.S_ISLNK(info.st_mode) else 'file'}; {fix}")
    if info.st_uid != os.getuid():
        raise NotPrivate(f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.getuid()}); {fix}")
    if info.st_mode & 0o077:
        raise NotPrivate(
            f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):o}, not 700); "
            f"run `chmod 700 {path}` if it is yours to keep, or {fix}"
        )
    return path
