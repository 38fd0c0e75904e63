"""Files that survive `kill -9` and power loss: synced content, atomic replacement, synced
directory entries. Every store of the payload writes through these."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_directory(path: Path) -> None:
    """Make the directory's entries (a new, renamed or removed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every octet is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def create_durably(path: Path, data: bytes) -> None:
    """Write a new file's content and fsync it (its directory entry is left to the caller).

    A symbolic link in its place is refused (OSError), never followed out of the state
    directory."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: Path, data: bytes) -> None:
    """Readers see the old content or the new one, never a mix, even after a power cut."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    # A leftover temporary file, or anything planted under its name, goes first.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    create_durably(tmp, data)
    os.replace(tmp, path)
    fsync_directory(path.parent)
