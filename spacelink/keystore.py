"""An uplink key file on disk (the payload's or a ground station's): read only when no one else
can read it, rewritten atomically (a key rotation), never left half-written or readable by
others."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from spacelink.fsync import fsync_directory
from spacelink.keyfile import KeyFileError, format_key_file, parse_key_file
from spacelink.sdls import SecurityAssociation


class KeyStoreError(Exception):
    """The key file is missing, unreadable, readable by others or invalid; one sentence."""


def _check_private(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise KeyStoreError(f"key file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise KeyStoreError(
            f"key file {path} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}): "
            f"chmod 600 it"
        )
    if info.st_uid != os.geteuid():
        raise KeyStoreError(f"key file {path} belongs to another user (uid {info.st_uid})")


def read_keys(path: Path) -> list[SecurityAssociation]:
    """The associations of the key file at `path`, which only its owner (us) may read."""
    try:
        # O_NOFOLLOW: a symlink planted in place of the key file is refused, not followed.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise KeyStoreError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise KeyStoreError(f"cannot open key file {path}: {exc.strerror}") from None
    try:
        _check_private(path, os.fstat(fd))
    except KeyStoreError:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as file:
        try:
            text = file.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyStoreError(f"cannot read key file {path}: {exc}") from None
    try:
        return parse_key_file(text, str(path))
    except KeyFileError as exc:
        raise KeyStoreError(str(exc)) from None


def write_keys(path: Path, associations: list[SecurityAssociation], comment: str = "") -> None:
    """Replace the key file with `associations`: written 0600 beside it, synced, then renamed
    over it, so that a power cut leaves the old file or the new one."""
    text = format_key_file(associations, comment)
    partial = path.with_name(f".{path.name}.new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older partial file may have had other permissions
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)
    fsync_directory(path.parent)


def create_keys(path: Path, associations: list[SecurityAssociation], comment: str = "") -> None:
    """Write a new key file (0600, synced); FileExistsError rather than replace one."""
    text = format_key_file(associations, comment)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_directory(path.parent)
