"""A packet store's directory, beside the segments' content: its lock, its floor ("deleted
before record N") and the listing of its segments at open, each recovered if a crash left it
unsealed. Nothing here follows a symbolic link planted in the directory.

    store.lock         flock'ed while a PacketStore has the directory open
    store.state        "PKST" | version u16 | floor u64 | CRC-32 u32, replaced atomically
    <first>-<limit>.seg  segments (flight.storage.segments)
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from flight.durable import (
    NotRegularError,
    open_lock_file,
    open_regular_file,
    replace_atomically,
)
from flight.storage.segments import FOOTER, Segment, build_index, parse_segment_name

log = logging.getLogger(__name__)

LOCK_FILE = "store.lock"
STATE_FILE = "store.state"
_STATE = struct.Struct(">4sHQI")
_STATE_MAGIC = b"PKST"
_STATE_VERSION = 1


def lock_directory(directory: Path) -> int:
    """Create `directory` when missing and lock it: the lock file's descriptor, which holds the
    lock until closed. BlockingIOError when another holds it; NotRegularError when `directory`
    is a symbolic link or not a directory."""
    try:
        mode = os.lstat(directory).st_mode
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        mode = os.lstat(directory).st_mode
    if not stat.S_ISDIR(mode):
        what = "a symbolic link, not followed" if stat.S_ISLNK(mode) else "not a directory"
        raise NotRegularError(errno.ENOTDIR, what, str(directory))
    fd = open_lock_file(directory / LOCK_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_floor(directory: Path) -> int:
    """The record number below which every record is deleted (0 when none ever was)."""
    path = directory / STATE_FILE
    try:
        fd = open_regular_file(path)
    except FileNotFoundError:
        return 0
    except NotRegularError as exc:
        log.error("packet store state %s: %s; no record deleted", path, exc)
        return 0
    try:
        data = os.read(fd, _STATE.size + 1)
    finally:
        os.close(fd)
    if len(data) == _STATE.size:
        magic, version, floor, crc = _STATE.unpack(data)
        if magic == _STATE_MAGIC and version == _STATE_VERSION and zlib.crc32(data[:-4]) == crc:
            return int(floor)
    # Records deleted before come back (but those of sealed segments, whose footers say where
    # their live records start): a loss of nothing, unlike a guess at the floor.
    log.error("packet store state %s is damaged: deleted records reappear", path)
    return 0


def write_floor(directory: Path, floor: int) -> None:
    """Make `floor` the store's, durably."""
    body = _STATE.pack(_STATE_MAGIC, _STATE_VERSION, floor, 0)[:-4]
    replace_atomically(directory / STATE_FILE, body + struct.pack(">I", zlib.crc32(body)))


@dataclass(slots=True)
class Opened:
    """The segments found, oldest first, and what recovering them found."""

    segments: list[Segment] = field(default_factory=list)
    corrupt: int = 0  # damaged records skipped in the segments recovered
    torn: int = 0  # torn tails cut


def open_segments(directory: Path) -> Opened:
    """Every segment of the directory, from its footer, or recovered (scanned, its torn tail
    cut, sealed) when a crash left it without one."""
    opened = Opened()
    with os.scandir(directory) as entries:
        for entry in entries:
            parsed = parse_segment_name(entry.name)
            if parsed is None:
                continue
            if not entry.is_file(follow_symlinks=False):
                log.warning("%s is not a regular file: ignored", entry.path)
                continue
            opened.segments.append(Segment(Path(entry.path), *parsed))
    opened.segments.sort(key=lambda s: (s.first, s.limit))
    for segment in opened.segments:
        _open_segment(segment, opened)
    return opened


def _open_segment(segment: Segment, opened: Opened) -> None:
    fd = open_regular_file(segment.path)
    try:
        size = os.fstat(fd).st_size
        footer = os.pread(fd, FOOTER.size, size - FOOTER.size) if size >= FOOTER.size else b""
        if segment.load_footer(footer, size):
            return
        segment.end = size
        lost, torn = build_index(fd, segment, recovering=True)
    finally:
        os.close(fd)
    opened.corrupt += lost
    opened.torn += torn
    if torn:
        log.warning("%s: torn last record cut at offset %d", segment.path, segment.end)
    # Numbers of its range may have been handed out for records the crash lost.
    segment.next_no = segment.limit
    fd = open_regular_file(segment.path, os.O_WRONLY)
    try:
        os.ftruncate(fd, segment.end)
        os.pwrite(fd, segment.footer(), segment.end)
        os.fsync(fd)
    finally:
        os.close(fd)
    segment.sealed = True
