"""Resumable uploads: chunks arriving in any order over a lossy link, committed atomically.

On disk, under the store's root:
  partial/NNNNN.*        each upload in progress (flight.files.partial_upload)
  files/NAME             committed files
  index.json             size and SHA-256 of every committed file (flight.files.file_index)

The store is not thread-safe, and only one store may be open on a root at a time.

Names come from the ground: they are checked before they reach a path, and the store never
follows a symbolic link (nor opens a FIFO or device) planted under its root, so that nothing is
read or written outside it.

The modules, each built on those before it:
- errors: the store's errors; file_names: which names a file may take
- regular_files: paths under the store opened without following links
- space: the quota and the disk's reserve
- upload_journal: the received ranges' records; partial_upload: one upload in progress
- file_index: the committed files and index.json
- upload_recovery: uploads reloaded and debris removed at open
- upload_store: UploadStore, the API the payload uses (and, for its callers, the errors and
  helpers they need; the rest is imported from the module that defines it)
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import logging
import os
import re
import threading
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from flight.durable import create_durably
from flight.files.errors import (
    BadFileName,
    BadFileSize,
    BadTransferParameters,
    ChecksumMismatch,
    ChunkOutOfRange,
    DiskFull,
    FileExists,
    FileStoreError,
    NoSuchFile,
    NotRegularFile,
    TooManyRanges,
    TooManyUploads,
    TransferConflict,
    TransferIncomplete,
    UnknownTransfer,
)
from flight.files.file_index import FileIndex, StoredFile
from flight.files.file_names import RESULT_NAMES, check_name, fold
from flight.files.partial_upload import Announcement, PartialUpload, UploadStatus
from flight.files.regular_files import (
    is_regular,
    open_regular,
    own_directory,
    pwrite_all,
    read_regular,
    sha256_of,
)
from flight.files.space import check_room, disk_free_bytes
from flight.files.upload_recovery import recover_uploads
from spacelink.fsync import fsync_directory

# Besides the store's own names, those its callers import from here.
__all__ = [
    "DEFAULT_MAX_RANGES",
    "DEFAULT_MAX_UPLOADS",
    "DEFAULT_SYNC_INTERVAL",
    "DIGEST_SIZE",
    "MAX_TRANSFER_ID",
    "BadFileName",
    "ChecksumMismatch",
    "DiskFull",
    "FileStoreError",
    "NotRegularFile",
    "StoredFile",
    "TooManyRanges",
    "UploadStatus",
    "UploadStore",
    "check_name",
    "is_regular",
    "open_regular",
    "read_regular",
]

log = logging.getLogger(__name__)

MAX_TRANSFER_ID = 0xFFFF
DIGEST_SIZE = hashlib.sha256().digest_size
DEFAULT_SYNC_INTERVAL = 256 * 1024
# Uploads in progress at most: each may hold a descriptor open, and the ground must not be able
# to exhaust the process's descriptors (or the store's memory) with announcements.
DEFAULT_MAX_UPLOADS = 64
# Separate received ranges an upload may hold: each costs some 80 octets of memory (160 until it
# is synced) and a 20-octet journal record, so octets scattered one in two over a large file
# would grow both without bound. A ground that sends in order leaves one range per lost chunk.
DEFAULT_MAX_RANGES = 4096

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
        self._index = FileIndex(self.root / "index.json", self._files_dir)
        if not self.root.is_dir():
            self.root.mkdir(parents=True)
            fsync_directory(self.root.parent)
        for directory in (self._partial_dir, self._files_dir):
            own_directory(directory)
        self._index.recover()
        self._partials: dict[int, PartialUpload] = recover_uploads(self._partial_dir, self._index)

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
        wanted = Announcement(transfer_id, name, size, bytes(sha256))
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
        folded = fold(name)
        for stored in self._index.names():
            if fold(stored) == folded:
                raise FileExists(f"a file named {stored!r} is already stored: delete it first")
        for other in self._partials.values():
            if fold(other.announcement.name) == folded:
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
        self._check_room(name, size, used, used_note=f" ({used} used or announced)")
        partial = PartialUpload.create(wanted, self._partial_dir)
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
            pwrite_all(partial.fd, data, offset)
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
            partial.sync()

    @_locked
    def sync(self) -> None:
        """Make every chunk written so far durable and recorded as received."""
        for partial in self._partials.values():
            partial.sync()
        self._index.flush()

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
        partial.sync()
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
        digest = sha256_of(partial.data_path)
        if digest != a.sha256:
            partial.discard_data()
            raise ChecksumMismatch(
                f"transfer {transfer_id} ({a.name!r}): expected SHA-256 {a.sha256.hex()}, found"
                f" {digest.hex()}; the received data was discarded and all {a.size} octets must"
                " be sent again"
            )
        partial.close()
        os.replace(partial.data_path, target)
        fsync_directory(self._files_dir)
        self._index.add(StoredFile(a.name, a.size, digest))
        del self._partials[transfer_id]
        partial.remove_files()
        log.info("transfer %d committed: %s, %d octets", transfer_id, a.name, a.size)
        return target

    @_locked
    def abort(self, transfer_id: int) -> None:
        """Forget the upload and its data."""
        partial = self._partial(transfer_id)
        del self._partials[transfer_id]
        partial.close()
        partial.remove_files()
        log.info("transfer %d aborted: %s", transfer_id, partial.announcement.name)

    @_locked
    def close(self) -> None:
        """Sync every upload and close its data file (the store stays usable)."""
        for partial in self._partials.values():
            partial.sync()
            partial.close()
        self._index.flush()

    def __enter__(self) -> UploadStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- committed files -----------------------------------------------------------------------

    @_locked
    def files(self) -> list[StoredFile]:
        """Every committed file, by name."""
        return self._index.files()

    @_locked
    def put(self, name: str, data: bytes) -> StoredFile:
        """Store a file made on board (a job's result) atomically, under the same quota."""
        check_name(name)
        if name in self._index:
            raise FileExists(f"a file named {name!r} is already stored: delete it first")
        self._check_room(name, len(data), self.used_bytes())
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
        # The index is a cache of sizes and digests (a file it lacks is hashed at the next
        # open): written at the next sync, change or close, not on the path of every result.
        self._index.add_later(stored)
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
        self._index.remove(name)
        log.info("file deleted: %s", name)

    @_locked
    def used_bytes(self) -> int:
        """Octets of committed files plus the announced sizes of uploads in progress."""
        return self._index.total_bytes() + sum(p.announcement.size for p in self._partials.values())

    @_locked
    def room_bytes(self) -> int:
        """The largest upload `begin` accepts now: what the quota leaves after stored files and
        announced uploads, and what the disk leaves above the reserve, whichever is less."""
        return max(0, min(self.quota_bytes - self.used_bytes(), self.disk_room_bytes()))

    def disk_room_bytes(self) -> int:
        """What the disk leaves above the reserve (the quota aside): a result needs that."""
        return max(0, self._free_space(self.root) - self.reserve_bytes)

    # --- internals -----------------------------------------------------------------------------

    def _check_room(self, name: str, size: int, used: int, used_note: str = "") -> None:
        check_room(
            name,
            size,
            used=used,
            quota_bytes=self.quota_bytes,
            free=self._free_space(self.root),
            reserve_bytes=self.reserve_bytes,
            used_note=used_note,
        )

    def _partial(self, transfer_id: int) -> PartialUpload:
        try:
            return self._partials[transfer_id]
        except KeyError:
            known = ", ".join(str(t) for t in sorted(self._partials)) or "none"
            raise UnknownTransfer(
                f"no upload in progress with transfer ID {transfer_id} (in progress: {known})"
            ) from None

    def _stored(self, name: str) -> StoredFile:
        check_name(name)
        stored = self._index.get(name)
        if stored is None:
            raise NoSuchFile(f"no file named {name!r} is stored")
        return stored
