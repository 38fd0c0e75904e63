"""One upload in progress and its files under partial/, named by the transfer ID:

  NNNNN.meta     the announced name, size and SHA-256 (JSON, replaced atomically)
  NNNNN.data     the file being assembled, sparse, at its final size from the start
  NNNNN.journal  received ranges (flight.files.upload_journal), appended only once the data
                 they name is fsynced

The journal never claims octets that are not durably in the data file, so after `kill -9` or a
power cut the worst case is that the last chunks are reported missing and sent again.
"""

from __future__ import annotations

import json
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight.durable import TMP_SUFFIX, create_durably, replace_atomically
from flight.files.file_names import valid_name
from flight.files.regular_files import open_regular
from flight.files.upload_journal import (
    append_ranges,
    empty_journal,
    needs_rewrite,
    rewrite_journal,
)
from spacelink.fsync import fsync_directory
from spacelink.ranges import RangeSet

# The files of an upload in partial/; anything else found there is debris.
PARTIAL_FILE = re.compile(r"(\d{5})\.(meta|data|journal)")
_META_VERSION = 1


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
class Announcement:
    """What the ground announced of an upload: the content of its metadata file."""

    transfer_id: int
    name: str
    size: int
    sha256: bytes

    def to_json(self) -> bytes:
        """The metadata file's content."""
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
    def from_json(cls, raw: bytes, transfer_id: int) -> Announcement:
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
        if not isinstance(name, str) or not valid_name(name):
            raise ValueError(f"invalid name {name!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"expected a positive size, found {size!r}")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"expected 64 hex digits of SHA-256, found {digest!r}")
        return cls(transfer_id, name, size, bytes.fromhex(digest))


class PartialUpload:
    """One upload in progress: its announcement, its data file and the ranges received."""

    def __init__(self, announcement: Announcement, directory: Path) -> None:
        self.announcement = announcement
        self.directory = directory
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

    @classmethod
    def create(cls, announcement: Announcement, directory: Path) -> PartialUpload:
        """Make the files of a new upload, replacing whatever lay at their paths."""
        partial = cls(announcement, directory)
        # Whatever lies at this transfer's paths is no upload's (debris, or something planted):
        # removed, never opened, so that a symbolic link there cannot redirect the writes.
        for path in partial.paths():
            path.unlink(missing_ok=True)
        # The data and journal files are durable before the metadata that makes them an upload:
        # a crash in between leaves orphans, removed on the next open.
        partial._size_data_file(os.O_RDWR | os.O_CREAT | os.O_EXCL)
        create_durably(partial.journal_path, b"")
        replace_atomically(partial.meta_path, announcement.to_json())
        return partial

    @property
    def fd(self) -> int:
        """The data file, open for reading and writing until `close`."""
        if self._fd is None:
            self._fd = open_regular(self.data_path, os.O_RDWR)
            # Dropping the store without close() then behaves like kill -9: the descriptor is
            # closed, nothing is synced.
            self._closer = weakref.finalize(self, os.close, self._fd)
        return self._fd

    def close(self) -> None:
        """Close the data file (it is opened again when next needed)."""
        if self._closer is not None:
            self._closer()
        self._fd, self._closer = None, None

    def files(self) -> tuple[Path, Path, Path]:
        """The upload's metadata, data and journal files."""
        return self.meta_path, self.data_path, self.journal_path

    def paths(self) -> tuple[Path, ...]:
        """Every file of the upload, with the temporary names an atomic replacement uses."""
        main = self.files()
        return main + tuple(p.with_name(p.name + TMP_SUFFIX) for p in main)

    def status(self) -> UploadStatus:
        """Where the upload stands."""
        a = self.announcement
        missing = self.received.missing(a.size)
        received = self.received.covered_bytes
        return UploadStatus(a.transfer_id, a.name, a.size, a.sha256, received, missing, not missing)

    def sync(self) -> None:
        """Make the chunks written since the last sync durable, then record them as received."""
        if not self.pending:
            return
        # Data first: a journal record must never name octets that a power cut could lose.
        os.fsync(self.fd)
        records = len(self.pending)
        if needs_rewrite(self.journal_records, records, len(self.received)):
            rewrite_journal(self.journal_path, self.received)
            self.journal_records = len(self.received)
        else:
            append_ranges(self.journal_path, self.pending)
            self.journal_records += records
        self._forget_pending()

    def discard_data(self) -> None:
        """Forget every received range, durably, so that everything is requested again."""
        empty_journal(self.journal_path)
        self.received.clear()
        self._forget_pending()
        self.journal_records = 0
        # Zeroes rather than the rejected content, so stale octets cannot survive into a retry.
        os.ftruncate(self.fd, 0)
        os.ftruncate(self.fd, self.announcement.size)

    def reset(self) -> None:
        """Start the upload over: empty journal first, then a data file of the right size."""
        rewrite_journal(self.journal_path, ())
        self._size_data_file(os.O_RDWR | os.O_CREAT)
        fsync_directory(self.directory)
        self.journal_records = 0

    def remove_files(self) -> None:
        """Remove the upload's files, durably."""
        # Metadata first: whatever a crash leaves behind is an orphan, not a half upload.
        for path in self.files():
            path.unlink(missing_ok=True)
        fsync_directory(self.directory)

    def _forget_pending(self) -> None:
        self.pending.clear()
        self.pending_bytes = 0

    def _size_data_file(self, flags: int) -> None:
        """Open the data file with `flags`, set it to the announced size (sparse) and sync it."""
        fd = open_regular(self.data_path, flags)
        try:
            os.ftruncate(fd, self.announcement.size)
            os.fsync(fd)
        finally:
            os.close(fd)
