"""Paths under the store, used without ever following a symbolic link planted there (nor
opening a FIFO or device), so that nothing is read or written outside the store."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path

from flight.durable import NotRegularError, open_regular_file
from flight.files.errors import NotRegularFile
from spacelink.fsync import fsync_directory

log = logging.getLogger(__name__)


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """A descriptor on `path`, refused (NotRegularFile) unless it is a regular file: a symbolic
    link is not followed, and a FIFO or device is not opened for real (no blocking, no effect)."""
    try:
        return open_regular_file(path, flags, mode)
    except NotRegularError as exc:
        raise NotRegularFile(f"{path} is not a regular file ({exc.strerror})") from None


def read_regular(path: Path) -> bytes:
    """The content of the regular file `path`, without following a symbolic link."""
    with os.fdopen(open_regular(path), "rb") as file:
        return file.read()


def is_regular(path: Path) -> bool:
    """Whether `path` itself (not what a symbolic link names) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def sha256_of(path: Path) -> bytes:
    """The SHA-256 of the regular file `path`, without following a symbolic link."""
    with os.fdopen(open_regular(path), "rb") as file:
        return hashlib.file_digest(file, "sha256").digest()


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """os.pwrite until every octet of `data` is written at `offset`."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def own_directory(path: Path) -> None:
    """Make `path` a directory of the store's own: a symbolic link found in its place (the store
    never makes one) is removed rather than followed, and a directory created."""
    if path.is_symlink():
        log.error("%s is a symbolic link: removed, the store starts a new directory", path)
        path.unlink()
    if not path.is_dir():
        path.mkdir()
        fsync_directory(path.parent)
