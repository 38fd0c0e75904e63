"""Resumable uploads: chunks arriving in any order over a lossy link, committed atomically.

On disk, under the store's root:
  partial/NNNNN.meta     the announced name, size and SHA-256 (JSON, replaced atomically)
  partial/NNNNN.data     the file being assembled, sparse, at its final size from the start
  partial/NNNNN.journal  received ranges, appended only once the data they name is fsynced
  files/NAME             committed files
  index.json             size and SHA-256 of every committed file (replaced atomically)

The journal never claims octets that are not durably in the data file, so after `kill -9` or a
power cut the worst case is that the last chunks are reported missing and sent again.
The store is not thread-safe, and only one store may be open on a root at a time.

Names come from the ground: they are checked before they reach a path, and the store never
follows a symbolic link (nor opens a FIFO or device) planted under its root, so that nothing is
read or written outside it.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import json
import logging
import os
import re
import stat
import struct
import threading
import weakref
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from flight.durable import (
    TMP_SUFFIX,
    NotRegularError,
    create_durably,
    fsync_directory,
    open_regular_file,
    replace_atomically,
    write_all,
)
from spacelink.ranges import RangeSet

log = logging.getLogger(__name__)

MAX_TRANSFER_ID = 0xFFFF
MAX_NAME_LENGTH = 64
DIGEST_SIZE = hashlib.sha256().digest_size
DEFAULT_SYNC_INTERVAL = 256 * 1024
# Uploads in progress at most: each may hold a descriptor open, and the ground must not be able
# to exhaust the process's descriptors (or the store's memory) with announcements.
DEFAULT_MAX_UPLOADS = 64
# Separate received ranges an upload may hold: each costs some 80 octets of memory (160 until it
# is synced) and a 20-octet journal record, so octets scattered one in two over a large file
# would grow both without bound. A ground that sends in order leaves one range per lost chunk.
DEFAULT_MAX_RANGES = 4096
# Names the payload gives the files it makes (job results, flight.jobs.runner.result_file_name):
# an upload under one of them would be deleted when that job's result is stored. Any case: on a
# case-insensitive file system JOB-1.NPY is job-1.npy.
RESULT_NAMES = re.compile(r"job-[0-9]+\.np[yz]", re.IGNORECASE)

_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_PARTIAL_FILE = re.compile(r"(\d{5})\.(meta|data|journal)")
# offset, length, CRC-32 of the two: a torn or bit-flipped record is recognised and ignored.
_RECORD = struct.Struct(">QQI")
_RECORD_BODY = struct.Struct(">QQ")
_META_VERSION = 1
_INDEX_VERSION = 1
# Scattered chunks add one journal record per range at each sync; once the journal holds this
# many records more than the merged ranges need, it is rewritten so it cannot grow unbounded.
_JOURNAL_SLACK = 256


class FileStoreError(Exception):
    """Base of the file store's errors."""


class BadFileName(FileStoreError):
    """The name is not 1..64 characters of [A-Za-z0-9._-] not starting with '.'."""


class BadFileSize(FileStoreError):
    """The announced size is not a positive number of octets."""


class BadTransferParameters(FileStoreError):
    """The transfer ID is not a u16 or the SHA-256 is not 32 octets."""


class QuotaExceeded(FileStoreError):
    """Committed files and announced uploads would exceed the store's quota."""


class DiskFull(FileStoreError):
    """The disk would keep less free space than the reserve."""


class FileExists(FileStoreError):
    """A committed file already has that name."""


class NoSuchFile(FileStoreError):
    """No committed file has that name."""


class TransferConflict(FileStoreError):
    """The transfer ID or the file name is already used by another upload."""


class UnknownTransfer(FileStoreError):
    """No upload is in progress with that transfer ID."""


class ChunkOutOfRange(FileStoreError):
    """The chunk is empty or lies (partly) outside the announced size."""


class TransferIncomplete(FileStoreError):
    """Commit asked while some octets have not been received."""


class ChecksumMismatch(FileStoreError):
    """The assembled file's SHA-256 is not the announced one; its data was discarded."""


class TooManyUploads(FileStoreError):
    """As many uploads as the store allows are in progress: one must be committed or aborted."""


class TooManyRanges(FileStoreError):
    """The chunk would start one more separate range than an upload may hold; it is refused and
    the upload kept: the missing ranges between those received must be sent first."""


class NotRegularFile(FileStoreError):
    """A path in the store is a symbolic link, a directory or a special file: not followed."""


@dataclass(frozen=True, slots=True)
class UploadStatus:
    """Where an upload stands; `missing` holds sorted (offset, length) ranges."""

    transfer_id: int
    name: str
    size: int
    sha256: bytes
    received_bytes: int
    missing: tuple[tuple[int, int], ...]
    complete: bool


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A committed file."""

    name: str
    size: int
    sha256: bytes


def disk_free_bytes(path: Path) -> int:
    """Octets an unprivileged process may still write on the file system holding `path`."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


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


def _fold(name: str) -> str:
    """The name as a case-insensitive file system sees it (names are ASCII)."""
    return name.lower()


@dataclass(frozen=True, slots=True)
class _Announcement:
    transfer_id: int
    name: str
    size: int
    sha256: bytes

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": _META_VERSION,
                "transfer_id": self.transfer_id,
                "name": self.name,
                "size": self.size,
                "sha256": self.sha256.hex(),
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes, transfer_id: int) -> _Announcement:
        """Parse and check a metadata file; ValueError says what is wrong with it."""
        try:
            fields = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON ({exc})") from exc
        if not isinstance(fields, dict) or fields.get("version") != _META_VERSION:
            raise ValueError(f"expected a version {_META_VERSION} object, found {raw[:60]!r}")
        if fields.get("transfer_id") != transfer_id:
            found = fields.get("transfer_id")
            raise ValueError(f"expected transfer_id {transfer_id}, found {found!r}")
        name, size, digest = fields.get("name"), fields.get("size"), fields.get("sha256")
        if not isinstance(name, str) or not _valid_name(name):
            raise ValueError(f"invalid name {name!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"expected a positive size, found {size!r}")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"expected 64 hex digits of SHA-256, found {digest!r}")
        return cls(transfer_id, name, size, bytes.fromhex(digest))


class _Partial:
    """One upload in progress: its announcement, its data file and the ranges received."""

    def __init__(self, announcement: _Announcement, directory: Path) -> None:
        self.announcement = announcement
        stem = f"{announcement.transfer_id:05d}"
        self.meta_path = directory / f"{stem}.meta"
        self.data_path = directory / f"{stem}.data"
        self.journal_path = directory / f"{stem}.journal"
        self.received = RangeSet()  # everything written, durable or not
        self.pending = RangeSet()  # written since the last sync: not yet in the journal
        self.pending_bytes = 0
        self.journal_records = 0
        self._fd: int | None = None
        self._closer: weakref.finalize[Any, Any] | None = None

    @property
    def fd(self) -> int:
        if self._fd is None:
            self._fd = open_regular(self.data_path, os.O_RDWR)
            # Dropping the store without close() then behaves like kill -9: the descriptor is
            # closed, nothing is synced.
            self._closer = weakref.finalize(self, os.close, self._fd)
        return self._fd

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
        self._fd, self._closer = None, None

    def paths(self) -> tuple[Path, ...]:
        """Every file of the upload, with the temporary names an atomic replacement uses."""
        main = (self.meta_path, self.data_path, self.journal_path)
        return main + tuple(p.with_name(p.name + TMP_SUFFIX) for p in main)

    def status(self) -> UploadStatus:
        a = self.announcement
        missing = self.received.missing(a.size)
        received = self.received.covered_bytes
        return UploadStatus(a.transfer_id, a.name, a.size, a.sha256, received, missing, not missing)


def _valid_name(name: str) -> bool:
    return 1 <= len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name) is not None


def check_name(name: str) -> None:
    if not _valid_name(name):
        raise BadFileName(
            f"a file name must be 1..{MAX_NAME_LENGTH} characters of [A-Za-z0-9._-] not starting"
            f" with '.', got {name!r}"
        )


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _sha256_of(path: Path) -> bytes:
    with os.fdopen(open_regular(path), "rb") as file:
        return hashlib.file_digest(file, "sha256").digest()


def _encode_ranges(ranges: Iterable[tuple[int, int]]) -> bytes:
    out = bytearray()
    for offset, length in ranges:
        body = _RECORD_BODY.pack(offset, length)
        out += body + zlib.crc32(body).to_bytes(4, "big")
    return bytes(out)


def _decode_journal(raw: bytes, size: int) -> tuple[RangeSet, int, bool]:
    """(ranges, valid records, damaged): bad records are skipped, as each stands alone."""
    ranges, valid = RangeSet(), 0
    for pos in range(0, len(raw) - _RECORD.size + 1, _RECORD.size):
        offset, length, crc = _RECORD.unpack_from(raw, pos)
        if crc != zlib.crc32(raw[pos : pos + _RECORD_BODY.size]) or not 0 < length <= size - offset:
            continue
        ranges.add(offset, length)
        valid += 1
    return ranges, valid, valid * _RECORD.size != len(raw)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(
    method: Callable[Concatenate[UploadStore, _P], _R],
) -> Callable[Concatenate[UploadStore, _P], _R]:
    """The store is shared by the command thread and the job worker (results): one at a time."""

    @functools.wraps(method)
    def run(self: UploadStore, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    return run


class UploadStore:
    """Partial uploads under root/partial/, committed files under root/files/; see module doc."""

    def __init__(
        self,
        root: Path,
        *,
        quota_bytes: int,
        reserve_bytes: int,
        free_space: Callable[[Path], int] = disk_free_bytes,
        sync_interval_bytes: int = DEFAULT_SYNC_INTERVAL,
        max_uploads: int = DEFAULT_MAX_UPLOADS,
        reserved_names: re.Pattern[str] | None = RESULT_NAMES,
        max_ranges: int = DEFAULT_MAX_RANGES,
    ) -> None:
        """`max_uploads`: uploads in progress at most; `max_ranges`: separate received ranges
        per upload at most; `reserved_names`: names an upload may not take (those of the files
        made on board, which `put` stores)."""
        self._lock = threading.RLock()
        self._index_dirty = False
        if (
            quota_bytes < 1
            or reserve_bytes < 0
            or sync_interval_bytes < 1
            or max_uploads < 1
            or max_ranges < 1
        ):
            raise ValueError(
                "expected quota_bytes >= 1, reserve_bytes >= 0, sync_interval_bytes >= 1,"
                f" max_uploads >= 1, max_ranges >= 1, got {quota_bytes}, {reserve_bytes},"
                f" {sync_interval_bytes}, {max_uploads}, {max_ranges}"
            )
        self.root = Path(root)
        self.quota_bytes = quota_bytes
        self.reserve_bytes = reserve_bytes
        self.sync_interval_bytes = sync_interval_bytes
        self.max_uploads = max_uploads
        self.max_ranges = max_ranges
        self._reserved = reserved_names
        self._free_space = free_space
        self._partial_dir = self.root / "partial"
        self._files_dir = self.root / "files"
        self._index_path = self.root / "index.json"
        self._partials: dict[int, _Partial] = {}
        self._index: dict[str, StoredFile] = {}
        if not self.root.is_dir():
            self.root.mkdir(parents=True)
            fsync_directory(self.root.parent)
        for directory in (self._partial_dir, self._files_dir):
            _own_directory(directory)
        self._recover_index()
        self._recover_partials()

    # --- uploads -------------------------------------------------------------------------------

    @_locked
    def begin(self, transfer_id: int, name: str, size: int, sha256: bytes) -> UploadStatus:
        """Start an upload, or resume the one with the same ID and the same parameters."""
        if not 0 <= transfer_id <= MAX_TRANSFER_ID:
            raise BadTransferParameters(f"a transfer ID is 0..{MAX_TRANSFER_ID}, got {transfer_id}")
        check_name(name)
        if size < 1:
            raise BadFileSize(f"a file size is at least 1 octet, got {size}")
        if len(sha256) != DIGEST_SIZE:
            raise BadTransferParameters(
                f"a SHA-256 is {DIGEST_SIZE} octets, got {len(sha256)} for {name!r}"
            )
        if self._reserved is not None and self._reserved.fullmatch(name):
            raise BadFileName(
                f"{name!r} is reserved for the files the payload makes (job results): upload"
                " it under another name"
            )
        wanted = _Announcement(transfer_id, name, size, bytes(sha256))
        existing = self._partials.get(transfer_id)
        if existing is not None:
            if existing.announcement != wanted:
                a = existing.announcement
                raise TransferConflict(
                    f"transfer {transfer_id} is already uploading {a.name!r} ({a.size} octets,"
                    f" SHA-256 {a.sha256.hex()[:16]}...), not {name!r} ({size} octets, SHA-256"
                    f" {wanted.sha256.hex()[:16]}...): abort it first"
                )
            log.info("transfer %d resumed: %s", transfer_id, name)
            return existing.status()
        # Names that differ only by case are one file on a case-insensitive file system: the
        # second would replace the first there, so they are refused everywhere.
        folded = _fold(name)
        for stored in self._index:
            if _fold(stored) == folded:
                raise FileExists(f"a file named {stored!r} is already stored: delete it first")
        for other in self._partials.values():
            if _fold(other.announcement.name) == folded:
                raise TransferConflict(
                    f"{other.announcement.name!r} is already being uploaded by transfer"
                    f" {other.announcement.transfer_id}, not {transfer_id}"
                )
        if len(self._partials) >= self.max_uploads:
            known = ", ".join(str(t) for t in sorted(self._partials))
            raise TooManyUploads(
                f"{len(self._partials)} uploads are in progress, at most {self.max_uploads}:"
                f" commit or abort one first (transfers {known})"
            )
        used = self.used_bytes()
        if used + size > self.quota_bytes:
            raise QuotaExceeded(
                f"{name!r} needs {size} octets but only {max(0, self.quota_bytes - used)} of the"
                f" {self.quota_bytes}-octet quota are left ({used} used or announced)"
            )
        free = self._free_space(self.root)
        if free - size < self.reserve_bytes:
            raise DiskFull(
                f"{name!r} needs {size} octets but the disk has {free} free and must keep a"
                f" reserve of {self.reserve_bytes}"
            )
        partial = _Partial(wanted, self._partial_dir)
        # Whatever lies at this transfer's paths is no upload's (debris, or something planted):
        # removed, never opened, so that a symbolic link there cannot redirect the writes.
        for path in partial.paths():
            path.unlink(missing_ok=True)
        # The data and journal files are durable before the metadata that makes them an upload:
        # a crash in between leaves orphans, removed on the next open.
        fd = open_regular(partial.data_path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
        create_durably(partial.journal_path, b"")
        replace_atomically(partial.meta_path, wanted.to_json())
        self._partials[transfer_id] = partial
        log.info("transfer %d begun: %s, %d octets", transfer_id, name, size)
        return partial.status()

    @_locked
    def write(self, transfer_id: int, offset: int, data: bytes) -> None:
        """Store one chunk; it becomes durable at the next sync (every sync_interval_bytes, or
        once max_ranges ranges wait for it). TooManyRanges: refused, the upload is kept."""
        partial = self._partial(transfer_id)
        size = partial.announcement.size
        if not data or offset < 0 or offset + len(data) > size:
            raise ChunkOutOfRange(
                f"transfer {transfer_id}: a chunk must be non-empty and within 0..{size}, got"
                f" {len(data)} octets at offset {offset}"
            )
        held = len(partial.received)
        if held >= self.max_ranges and not partial.received.joins(offset, len(data)):
            raise TooManyRanges(
                f"transfer {transfer_id}: {held} separate ranges received, at most"
                f" {self.max_ranges}; {len(data)} octets at offset {offset} would start another:"
                " send the missing ranges between them first"
            )
        try:
            _pwrite_all(partial.fd, data, offset)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFull(
                    f"transfer {transfer_id}: no space left writing {len(data)} octets at offset"
                    f" {offset}"
                ) from exc
            raise
        partial.received.add(offset, len(data))
        partial.pending.add(offset, len(data))
        partial.pending_bytes += len(data)
        # Chunks sent again over octets already received add no range to `received` but can
        # scatter `pending`: it is bounded by the same limit.
        if (
            partial.pending_bytes >= self.sync_interval_bytes
            or len(partial.pending) >= self.max_ranges
        ):
            self._sync_partial(partial)

    @_locked
    def sync(self) -> None:
        """Make every chunk written so far durable and recorded as received."""
        for partial in self._partials.values():
            self._sync_partial(partial)
        if self._index_dirty:
            self._write_index()

    @_locked
    def status(self, transfer_id: int) -> UploadStatus:
        """The upload's announcement, octets received and missing ranges."""
        return self._partial(transfer_id).status()

    @_locked
    def missing_ranges(
        self, transfer_id: int, limit: int | None = None
    ) -> tuple[tuple[int, int], ...]:
        """The first `limit` (all when None) missing (offset, length) ranges, sorted."""
        partial = self._partial(transfer_id)
        return tuple(islice(partial.received.gaps(partial.announcement.size), limit))

    @_locked
    def transfers(self) -> list[UploadStatus]:
        """Every upload in progress, by transfer ID."""
        return [self._partials[tid].status() for tid in sorted(self._partials)]

    @_locked
    def commit(self, transfer_id: int) -> Path:
        """Check the SHA-256 and move the complete file to root/files/NAME; return its path."""
        partial = self._partial(transfer_id)
        a = partial.announcement
        self._sync_partial(partial)
        missing = partial.received.missing(a.size)
        if missing:
            raise TransferIncomplete(
                f"transfer {transfer_id} ({a.name!r}) is missing"
                f" {a.size - partial.received.covered_bytes} of {a.size} octets in"
                f" {len(missing)} ranges"
            )
        target = self._files_dir / a.name
        # Only a regular file is a stored file: a symbolic link planted there is replaced by
        # the rename (which never follows it).
        if a.name in self._index or is_regular(target):
            raise FileExists(f"a file named {a.name!r} is already stored: delete it first")
        digest = _sha256_of(partial.data_path)
        if digest != a.sha256:
            self._discard_data(partial)
            raise ChecksumMismatch(
                f"transfer {transfer_id} ({a.name!r}): expected SHA-256 {a.sha256.hex()}, found"
                f" {digest.hex()}; the received data was discarded and all {a.size} octets must"
                " be sent again"
            )
        partial.close()
        os.replace(partial.data_path, target)
        fsync_directory(self._files_dir)
        self._index[a.name] = StoredFile(a.name, a.size, digest)
        self._write_index()
        del self._partials[transfer_id]
        self._remove_partial_files(partial)
        log.info("transfer %d committed: %s, %d octets", transfer_id, a.name, a.size)
        return target

    @_locked
    def abort(self, transfer_id: int) -> None:
        """Forget the upload and its data."""
        partial = self._partial(transfer_id)
        del self._partials[transfer_id]
        partial.close()
        self._remove_partial_files(partial)
        log.info("transfer %d aborted: %s", transfer_id, partial.announcement.name)

    @_locked
    def close(self) -> None:
        """Sync every upload and close its data file (the store stays usable)."""
        for partial in self._partials.values():
            self._sync_partial(partial)
            partial.close()
        if self._index_dirty:
            self._write_index()

    def __enter__(self) -> UploadStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- committed files -----------------------------------------------------------------------

    @_locked
    def files(self) -> list[StoredFile]:
        """Every committed file, by name."""
        return [self._index[name] for name in sorted(self._index)]

    @_locked
    def put(self, name: str, data: bytes) -> StoredFile:
        """Store a file made on board (a job's result) atomically, under the same quota."""
        check_name(name)
        if name in self._index:
            raise FileExists(f"a file named {name!r} is already stored: delete it first")
        used = self.used_bytes()
        if used + len(data) > self.quota_bytes:
            raise QuotaExceeded(
                f"{name!r} needs {len(data)} octets but only {max(0, self.quota_bytes - used)}"
                f" of the {self.quota_bytes}-octet quota are left"
            )
        free = self._free_space(self.root)
        if free - len(data) < self.reserve_bytes:
            raise DiskFull(
                f"{name!r} needs {len(data)} octets but the disk has {free} free and must keep"
                f" a reserve of {self.reserve_bytes}"
            )
        # Written aside in partial/ (same file system), then renamed: never a half file.
        tmp = self._partial_dir / f".put-{name}"
        try:
            tmp.unlink(missing_ok=True)  # a symbolic link left there would be followed
            create_durably(tmp, data)
            os.replace(tmp, self._files_dir / name)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise DiskFull(f"no space left on the disk for {name!r}") from None
            raise
        fsync_directory(self._files_dir)
        stored = StoredFile(name, len(data), hashlib.sha256(data).digest())
        self._index[name] = stored
        # The index is a cache of sizes and digests (a file it lacks is hashed at the next
        # open): written at the next sync, change or close, not on the path of every result.
        self._index_dirty = True
        log.info("file stored: %s, %d octets", name, len(data))
        return stored

    @_locked
    def exists(self, name: str) -> bool:
        """Whether a committed file has that name."""
        return name in self._index

    @_locked
    def info(self, name: str) -> StoredFile:
        """A committed file's size and SHA-256."""
        return self._stored(name)

    def intact(self, name: str) -> bool:
        """Whether the committed file still matches the SHA-256 recorded when it was stored
        (False when it was replaced by a symbolic link or a special file)."""
        stored = self.info(name)
        try:
            with self.open(name) as file:
                return hashlib.file_digest(file, "sha256").digest() == stored.sha256
        except NotRegularFile:
            return False

    @_locked
    def path_of(self, name: str) -> Path:
        """Where the committed file is; NotRegularFile when that is no longer a regular file.

        Open it with `open` or `read` rather than by this path: they never follow a link."""
        path = self._files_dir / self._stored(name).name
        if not is_regular(path):
            raise NotRegularFile(f"stored file {name!r} is no longer a regular file: not used")
        return path

    def open(self, name: str) -> io.BufferedReader:
        """The committed file, open for reading (NotRegularFile: it is no longer a regular
        file, and what replaced it is not followed)."""
        with self._lock:
            path = self._files_dir / self._stored(name).name
        return os.fdopen(open_regular(path), "rb")

    def read(self, name: str) -> bytes:
        """The committed file's content (see `open`)."""
        with self.open(name) as file:
            return file.read()

    @_locked
    def delete(self, name: str) -> None:
        """Remove a committed file."""
        self._stored(name)
        (self._files_dir / name).unlink(missing_ok=True)
        fsync_directory(self._files_dir)
        del self._index[name]
        self._write_index()
        log.info("file deleted: %s", name)

    @_locked
    def used_bytes(self) -> int:
        """Octets of committed files plus the announced sizes of uploads in progress."""
        return sum(f.size for f in self._index.values()) + sum(
            p.announcement.size for p in self._partials.values()
        )

    @_locked
    def room_bytes(self) -> int:
        """The largest upload `begin` accepts now: what the quota leaves after stored files and
        announced uploads, and what the disk leaves above the reserve, whichever is less."""
        return max(0, min(self.quota_bytes - self.used_bytes(), self.disk_room_bytes()))

    def disk_room_bytes(self) -> int:
        """What the disk leaves above the reserve (the quota aside): a result needs that."""
        return max(0, self._free_space(self.root) - self.reserve_bytes)

    # --- internals -----------------------------------------------------------------------------

    def _partial(self, transfer_id: int) -> _Partial:
        try:
            return self._partials[transfer_id]
        except KeyError:
            known = ", ".join(str(t) for t in sorted(self._partials)) or "none"
            raise UnknownTransfer(
                f"no upload in progress with transfer ID {transfer_id} (in progress: {known})"
            ) from None

    def _stored(self, name: str) -> StoredFile:
        check_name(name)
        try:
            return self._index[name]
        except KeyError:
            raise NoSuchFile(f"no file named {name!r} is stored") from None

    def _sync_partial(self, partial: _Partial) -> None:
        if not partial.pending:
            return
        # Data first: a journal record must never name octets that a power cut could lose.
        os.fsync(partial.fd)
        records = len(partial.pending)
        if partial.journal_records + records > 2 * len(partial.received) + _JOURNAL_SLACK:
            replace_atomically(partial.journal_path, _encode_ranges(partial.received))
            partial.journal_records = len(partial.received)
        else:
            fd = open_regular(partial.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                write_all(fd, _encode_ranges(partial.pending))
                os.fsync(fd)
            finally:
                os.close(fd)
            partial.journal_records += records
        partial.pending.clear()
        partial.pending_bytes = 0

    def _discard_data(self, partial: _Partial) -> None:
        """Forget every received range, durably, so that everything is requested again."""
        fd = open_regular(partial.journal_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        partial.received.clear()
        partial.pending.clear()
        partial.pending_bytes = 0
        partial.journal_records = 0
        # Zeroes rather than the rejected content, so stale octets cannot survive into a retry.
        os.ftruncate(partial.fd, 0)
        os.ftruncate(partial.fd, partial.announcement.size)

    def _remove_partial_files(self, partial: _Partial) -> None:
        # Metadata first: whatever a crash leaves behind is an orphan, not a half upload.
        for path in (partial.meta_path, partial.data_path, partial.journal_path):
            path.unlink(missing_ok=True)
        fsync_directory(self._partial_dir)

    def _write_index(self) -> None:
        self._index_dirty = False
        entries = {f.name: {"size": f.size, "sha256": f.sha256.hex()} for f in self.files()}
        raw = json.dumps({"version": _INDEX_VERSION, "files": entries}, indent=1, sort_keys=True)
        replace_atomically(self._index_path, raw.encode())

    def _recover_index(self) -> None:
        """Load the index and make it agree with root/files/, hashing files it lacks."""
        recorded: dict[str, StoredFile] = {}
        try:
            raw = json.loads(read_regular(self._index_path))
            for name, entry in raw["files"].items():
                digest = bytes.fromhex(entry["sha256"])
                recorded[name] = StoredFile(name, int(entry["size"]), digest)
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError, AttributeError, NotRegularFile) as exc:
            log.warning("file index %s unreadable (%s): rebuilding it", self._index_path, exc)
        self._index_path.with_name(self._index_path.name + TMP_SUFFIX).unlink(missing_ok=True)
        changed = False
        for path in sorted(self._files_dir.iterdir()):
            name = path.name
            if path.is_symlink():
                # The store never makes one: whatever it names is outside the store.
                log.warning("removing %s: a symbolic link, not a stored file", path)
                path.unlink()
                changed = True
                continue
            if not is_regular(path) or not _valid_name(name):
                log.warning("ignoring %s: not a stored file", path)
                continue
            entry = recorded.get(name)
            size = path.lstat().st_size
            if entry is None or entry.size != size:
                entry = StoredFile(name, size, _sha256_of(path))
                changed = True
            self._index[name] = entry
        if changed or set(recorded) != set(self._index):
            self._write_index()

    def _recover_partials(self) -> None:
        """Reload every upload in progress from its metadata and journal; clear the debris."""
        names = {path.name for path in self._partial_dir.iterdir()}
        # Temporary files first: the atomic replacements of the recovery write through their
        # names, and one left as a symbolic link would be followed.
        stray = {n for n in names if _PARTIAL_FILE.fullmatch(n) is None}
        self._remove_debris(stray)
        kept: set[str] = set()
        for file_name in sorted(names - stray):
            match = _PARTIAL_FILE.fullmatch(file_name)
            if match is None or match[2] != "meta":
                continue
            transfer_id = int(match[1])
            meta_path = self._partial_dir / file_name
            try:
                announcement = _Announcement.from_json(read_regular(meta_path), transfer_id)
            except (OSError, ValueError, NotRegularFile) as exc:
                log.warning("upload %s discarded: unreadable metadata (%s)", meta_path, exc)
                continue
            partial = _Partial(announcement, self._partial_dir)
            if self._recover_partial(partial):
                self._partials[transfer_id] = partial
                kept.update(
                    p.name for p in (partial.meta_path, partial.data_path, partial.journal_path)
                )
        self._remove_debris(names - stray - kept)

    def _remove_debris(self, names: set[str]) -> None:
        for file_name in sorted(names):
            path = self._partial_dir / file_name
            if path.is_dir() and not path.is_symlink():
                log.warning("ignoring directory %s: the store makes none there", path)
                continue
            log.info("removing %s left by an interrupted operation", file_name)
            path.unlink(missing_ok=True)
        if names:
            fsync_directory(self._partial_dir)

    def _recover_partial(self, partial: _Partial) -> bool:
        """Reload one upload; False when it turns out to be already committed."""
        a = partial.announcement
        for path in (partial.data_path, partial.journal_path):
            if os.path.lexists(path) and not is_regular(path):
                log.warning("transfer %d: %s is not a regular file: removed", a.transfer_id, path)
                path.unlink()
        if not partial.data_path.exists():
            stored = self._index.get(a.name)
            if stored is not None and (stored.size, stored.sha256) == (a.size, a.sha256):
                # The crash came after the rename into files/: the commit had succeeded.
                log.info("transfer %d: finishing the commit of %s", a.transfer_id, a.name)
                return False
            log.warning("transfer %d: data file lost, every octet is missing", a.transfer_id)
            self._reset_partial(partial)
            return True
        found_size = partial.data_path.lstat().st_size
        if found_size != a.size:
            log.warning(
                "transfer %d: data file is %d octets, expected %d; every octet is missing",
                a.transfer_id,
                found_size,
                a.size,
            )
            self._reset_partial(partial)
            return True
        try:
            raw = read_regular(partial.journal_path)
        except FileNotFoundError:
            raw = b""
        ranges, valid, damaged = _decode_journal(raw, a.size)
        if damaged:
            log.warning(
                "transfer %d: journal damaged, kept %d of its records (%d octets); the rest"
                " will be requested again",
                a.transfer_id,
                valid,
                len(raw),
            )
            replace_atomically(partial.journal_path, _encode_ranges(ranges))
            valid = len(ranges)
        elif not partial.journal_path.exists():
            create_durably(partial.journal_path, b"")
            fsync_directory(self._partial_dir)
        partial.received.update(ranges)
        partial.journal_records = valid
        log.info(
            "transfer %d recovered: %s, %d of %d octets",
            a.transfer_id,
            a.name,
            ranges.covered_bytes,
            a.size,
        )
        return True

    def _reset_partial(self, partial: _Partial) -> None:
        """Start the upload over: empty journal first, then a data file of the right size."""
        replace_atomically(partial.journal_path, b"")
        fd = open_regular(partial.data_path, os.O_RDWR | os.O_CREAT)
        try:
            os.ftruncate(fd, partial.announcement.size)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_directory(self._partial_dir)
        partial.journal_records = 0


def _own_directory(path: Path) -> None:
    """Make `path` a directory of the store's own: a symbolic link found in its place (the store
    never makes one) is removed rather than followed, and a directory created."""
    if path.is_symlink():
        log.error("%s is a symbolic link: removed, the store starts a new directory", path)
        path.unlink()
    if not path.is_dir():
        path.mkdir()
        fsync_directory(path.parent)
