"""Files that survive `kill -9` and power loss: synced content, atomic replacement, synced
directory entries. Every store of the payload writes through these."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from pathlib import Path

from spacelink.fsync import fsync_directory

log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"
# Opened without following a symbolic link, and without blocking on a FIFO planted in its place.
NO_FOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What open(2) says, with O_NOFOLLOW and O_NONBLOCK, of a link, a directory, a FIFO or socket.
_NOT_REGULAR_ERRNOS = frozenset({errno.ELOOP, errno.EISDIR, errno.ENXIO})


class NotRegularError(OSError):
    """A path of the state directory is a symbolic link, a directory or a special file: a link is
    never followed, a FIFO or device never opened for real. `strerror` says which it is."""


def open_regular_file(path: Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """A descriptor on the regular file `path` (created with `mode` when `flags` ask for it);
    NotRegularError when `path` itself is a symbolic link, a directory or a special file."""
    try:
        fd = os.open(path, flags | NO_FOLLOW, mode)
    except OSError as exc:
        if exc.errno not in _NOT_REGULAR_ERRNOS:
            raise
        what = "a symbolic link, not followed" if exc.errno == errno.ELOOP else exc.strerror
        raise NotRegularError(exc.errno, what, str(path)) from None
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            raise NotRegularError(errno.EINVAL, f"mode {stat.filemode(kind)}", str(path))
        # O_NONBLOCK only guarded the open; regular files ignore it, but clear it all the same.
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_lock_file(path: Path) -> int:
    """Open (create, mode 0600) the state directory's lock file for reading and writing; the
    descriptor is not inherited by child processes. NotRegularError (an OSError) when `path` is
    a symbolic link or not a regular file."""
    return open_regular_file(path, os.O_RDWR | os.O_CREAT, 0o600)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every octet is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def create_durably(path: Path, data: bytes) -> None:
    """Write a new file's content and fsync it (its directory entry is left to the caller).

    A symbolic link in its place is refused (OSError), never followed out of the state
    directory."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: Path, data: bytes) -> None:
    """Readers see the old content or the new one, never a mix, even after a power cut."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    # A leftover temporary file, or anything planted under its name, goes first.
    move_directory_aside(tmp)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    create_durably(tmp, data)
    move_directory_aside(path)
    os.replace(tmp, path)
    fsync_directory(path.parent)


def move_directory_aside(path: Path) -> Path | None:
    """A directory (not a link to one) where a file belongs is renamed aside, kept as it is
    rather than deleted, so that the file can be written; where it went, or None."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return None
    except FileNotFoundError:
        return None
    aside = path.with_name(f"{path.name}.displaced-{time.time_ns()}")
    os.rename(path, aside)
    log.warning("a directory stood at %s, where a file belongs: moved to %s", path, aside.name)
    return aside
