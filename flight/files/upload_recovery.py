"""Reopening the uploads in progress after a restart (or `kill -9`, or a power cut): each is
reloaded from its metadata and journal, and the debris of interrupted operations removed."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flight.durable import create_durably
from flight.files.errors import NotRegularFile
from flight.files.file_index import FileIndex
from flight.files.partial_upload import PARTIAL_FILE, Announcement, PartialUpload
from flight.files.regular_files import is_regular, read_regular
from flight.files.upload_journal import decode_journal, rewrite_journal
from spacelink.fsync import fsync_directory

log = logging.getLogger(__name__)


def recover_uploads(directory: Path, index: FileIndex) -> dict[int, PartialUpload]:
    """Every upload in progress under `directory`, by transfer ID; the debris is removed."""
    uploads: dict[int, PartialUpload] = {}
    names = {path.name for path in directory.iterdir()}
    # Temporary files first: the atomic replacements of the recovery write through their
    # names, and one left as a symbolic link would be followed.
    stray = {n for n in names if PARTIAL_FILE.fullmatch(n) is None}
    _remove_debris(directory, stray)
    kept: set[str] = set()
    for file_name in sorted(names - stray):
        match = PARTIAL_FILE.fullmatch(file_name)
        if match is None or match[2] != "meta":
            continue
        transfer_id = int(match[1])
        meta_path = directory / file_name
        try:
            announcement = Announcement.from_json(read_regular(meta_path), transfer_id)
        except (OSError, ValueError, NotRegularFile) as exc:
            log.warning("upload %s discarded: unreadable metadata (%s)", meta_path, exc)
            continue
        partial = PartialUpload(announcement, directory)
        if _recover_upload(partial, index):
            uploads[transfer_id] = partial
            kept.update(p.name for p in partial.files())
    _remove_debris(directory, names - stray - kept)
    return uploads


def _remove_debris(directory: Path, names: set[str]) -> None:
    for file_name in sorted(names):
        path = directory / file_name
        if path.is_dir() and not path.is_symlink():
            log.warning("ignoring directory %s: the store makes none there", path)
            continue
        log.info("removing %s left by an interrupted operation", file_name)
        path.unlink(missing_ok=True)
    if names:
        fsync_directory(directory)


def _recover_upload(partial: PartialUpload, index: FileIndex) -> bool:
    """Reload one upload; False when it turns out to be already committed."""
    a = partial.announcement
    for path in (partial.data_path, partial.journal_path):
        if os.path.lexists(path) and not is_regular(path):
            log.warning("transfer %d: %s is not a regular file: removed", a.transfer_id, path)
            path.unlink()
    if not partial.data_path.exists():
        stored = index.get(a.name)
        if stored is not None and (stored.size, stored.sha256) == (a.size, a.sha256):
            # The crash came after the rename into files/: the commit had succeeded.
            log.info("transfer %d: finishing the commit of %s", a.transfer_id, a.name)
            return False
        log.warning("transfer %d: data file lost, every octet is missing", a.transfer_id)
        partial.reset()
        return True
    found_size = partial.data_path.lstat().st_size
    if found_size != a.size:
        log.warning(
            "transfer %d: data file is %d octets, expected %d; every octet is missing",
            a.transfer_id,
            found_size,
            a.size,
        )
        partial.reset()
        return True
    try:
        raw = read_regular(partial.journal_path)
    except FileNotFoundError:
        raw = b""
    ranges, valid, damaged = decode_journal(raw, a.size)
    if damaged:
        log.warning(
            "transfer %d: journal damaged, kept %d of its records (%d octets); the rest"
            " will be requested again",
            a.transfer_id,
            valid,
            len(raw),
        )
        rewrite_journal(partial.journal_path, ranges)
        valid = len(ranges)
    elif not partial.journal_path.exists():
        create_durably(partial.journal_path, b"")
        fsync_directory(partial.directory)
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
