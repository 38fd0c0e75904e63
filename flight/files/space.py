"""Space accounting: what the quota and the disk's reserve leave for one more file."""

from __future__ import annotations

import os
from pathlib import Path

from flight.files.errors import DiskFull, QuotaExceeded


def disk_free_bytes(path: Path) -> int:
    """Octets an unprivileged process may still write on the file system holding `path`."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def check_room(
    name: str,
    size: int,
    *,
    used: int,
    quota_bytes: int,
    free: int,
    reserve_bytes: int,
    used_note: str = "",
) -> None:
    """QuotaExceeded or DiskFull unless `size` more octets for `name` fit both the quota (with
    `used` taken) and the disk (`free`) above the reserve; `used_note` ends the quota message."""
    if used + size > quota_bytes:
        raise QuotaExceeded(
            f"{name!r} needs {size} octets but only {max(0, quota_bytes - used)} of the"
            f" {quota_bytes}-octet quota are left{used_note}"
        )
    if free - size < reserve_bytes:
        raise DiskFull(
            f"{name!r} needs {size} octets but the disk has {free} free and must keep a"
            f" reserve of {reserve_bytes}"
        )
