"""Durable directory entries, for every part that writes state files (payload, ground, keys)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(path: Path) -> None:
    """Make the directory's entries (a new, renamed or removed file) durable: without it a
    power cut may lose a file whose contents were synced."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
