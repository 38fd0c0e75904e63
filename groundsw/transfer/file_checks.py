"""What the ground checks of a file before and after a transfer: a name the payload's store
accepts, a readable local file, its SHA-256.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from groundsw.transfer.errors import GroundInputError

_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


def check_file_name(name: str, what: str = "file name") -> str:
    """The name, if the payload's store accepts it; GroundInputError otherwise."""
    if not _FILE_NAME.fullmatch(name):
        raise GroundInputError(
            f"{what} {name!r} is not 1 to 64 of A-Z a-z 0-9 . _ - starting with other than a dot"
        )
    return name


def readable_file(path: Path) -> int:
    """The size of a regular, readable, non-empty local file; GroundInputError otherwise."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise GroundInputError(f"{path} is not a regular file")
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise GroundInputError(f"{path} does not exist") from None
    except PermissionError:
        raise GroundInputError(f"{path} is not readable") from None
    if size == 0:
        raise GroundInputError(f"{path} is empty: the payload stores files of at least one octet")
    if size > 0xFFFFFFFF:
        raise GroundInputError(f"{path} holds {size} octets, more than a transfer carries (4 GiB)")
    return size


def file_sha256(path: Path) -> bytes:
    """The SHA-256 of a local file, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.digest()
