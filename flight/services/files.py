"""Service 128, file transfer: resumable uploads into the upload store, downloads on VC 1.

Downloads are paced by the bulk channel's backlog: a chunk is made only when fewer than
`BULK_BACKLOG_OCTETS` wait on VC 1, so a large file never fills memory, and real-time traffic
(VC 0, sent first by the downlink) never waits behind more than the frame on the line.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from flight.commanding import (
    DEFERRED,
    CommandContext,
    CommandError,
    named_failure,
    translating,
)
from flight.files.failures import store_failure_name
from flight.files.upload_store import (
    ChecksumMismatch,
    FileStoreError,
    NotRegularFile,
    StoredFile,
    UploadStatus,
    UploadStore,
)
from flight.protection.upsets import UpsetLocation, UpsetLog
from flight.router import CommandRouter
from flight.services.events import EventReporter
from flight.telemetry import TmPublisher
from spacelink.icd import TM_VCID_BULK
from spacelink.pus import Stage
from telemetry_defs.model import Dictionary

log = logging.getLogger(__name__)

# Octets of file data per TM[128,12]: with its headers one chunk about fills a TM frame.
DOWNLOAD_CHUNK_OCTETS = 1024
# VC 1 backlog below which the next chunks are made; a few frames keep a fast line busy
# between two passes of the main loop.
BULK_BACKLOG_OCTETS = 16 * 1024
# Ranges listed in one TM[128,2] (the rest follow once these arrive).
REPORTED_RANGES = 64
# Files listed in one TM[128,8].
LISTED_FILES = 64
# Downloads sent at once at most (default): each holds its file open until its last chunk is
# queued.
MAX_DOWNLOADS = 16


def store_failure(dictionary: Dictionary, exc: Exception) -> CommandError:
    """The failure report for an upload store error, or an I/O error under it."""
    return named_failure(dictionary, store_failure_name(exc), f"file store: {exc}")


@dataclass
class _Download:
    """A download being sent: the open file and how far it has got."""

    download_id: int
    name: str
    file: BinaryIO
    next_offset: int
    end: int
    ctx: CommandContext
    chunks: int = 0


class FileService:
    """TC[128,x] on the upload store, and the download pump the main loop ticks."""

    def __init__(
        self,
        dictionary: Dictionary,
        store: UploadStore,
        tm: TmPublisher,
        events: EventReporter,
        bulk_backlog: Callable[[], int],
        upsets: UpsetLog | None = None,
        in_use: Callable[[str], int] | None = None,
        max_downloads: int = MAX_DOWNLOADS,
    ) -> None:
        """`max_downloads`: downloads sent at once at most (TOO_MANY_TRANSFERS beyond)."""
        if max_downloads < 1:
            raise ValueError(f"expected max_downloads >= 1, got {max_downloads}")
        self._d = dictionary
        self.max_downloads = max_downloads
        self.upsets = upsets or UpsetLog()
        self.store = store
        self._tm = tm
        self._events = events
        self._bulk_backlog = bulk_backlog
        # The ID of a queued or running job whose input a file is (0: none): not deleted then.
        self._in_use = in_use
        self._downloads: dict[int, _Download] = {}
        self._upload_report = dictionary.packets["FILE_UPLOAD_REPORT"]
        self._list_report = dictionary.packets["FILE_LIST_REPORT"]
        self._start = dictionary.packets["FILE_DOWNLOAD_START"]
        self._chunk = dictionary.packets["FILE_DOWNLOAD_CHUNK"]

    def register(self, router: CommandRouter) -> None:
        d = self._d
        for name, execute in (
            ("FILE_UPLOAD_BEGIN", self._begin),
            ("FILE_UPLOAD_CHUNK", self._write),
            ("FILE_UPLOAD_STATUS", self._status),
            ("FILE_UPLOAD_COMMIT", self._commit),
            ("FILE_UPLOAD_ABORT", self._abort),
            ("FILE_LIST", self._list),
            ("FILE_DELETE", self._delete),
            ("FILE_DOWNLOAD", self._download),
            ("FILE_DOWNLOAD_CANCEL", self._cancel_download),
        ):
            router.register_command(
                d.command(name),
                translating(
                    execute, (FileStoreError, OSError), lambda e: store_failure(self._d, e)
                ),
            )

    # -- uploads ------------------------------------------------------------------------------

    def _report_upload(self, status: UploadStatus, ctx: CommandContext) -> None:
        shown = status.missing[:REPORTED_RANGES]
        ctx.reply_packet(
            self._upload_report,
            {
                "transfer_id": status.transfer_id,
                "state": "COMPLETE" if status.complete else "RECEIVING",
                "size": status.size,
                "received": status.received_bytes,
                "missing_ranges": min(len(status.missing), 0xFFFF),
                "missing_offsets": [offset for offset, _ in shown],
                "missing_lengths": [length for _, length in shown],
            },
        )

    def _begin(self, args: dict[str, Any], ctx: CommandContext) -> None:
        status = self.store.begin(args["transfer_id"], args["name"], args["size"], args["sha256"])
        self._report_upload(status, ctx)

    def _write(self, args: dict[str, Any], ctx: CommandContext) -> None:
        self.store.write(args["transfer_id"], args["offset"], args["data"])

    def _status(self, args: dict[str, Any], ctx: CommandContext) -> None:
        self.store.sync()  # what is reported received must be durable
        self._report_upload(self.store.status(args["transfer_id"]), ctx)

    def _commit(self, args: dict[str, Any], ctx: CommandContext) -> None:
        transfer_id = args["transfer_id"]
        try:
            path = self.store.commit(transfer_id)
        except ChecksumMismatch:
            self._events.raise_event("FILE_CHECKSUM_MISMATCH", transfer_id=transfer_id)
            raise
        stored = self.store.info(path.name)
        self._events.raise_event("FILE_STORED", size=stored.size, file=stored.name)

    def _abort(self, args: dict[str, Any], ctx: CommandContext) -> None:
        self.store.abort(args["transfer_id"])

    # -- stored files -------------------------------------------------------------------------

    def _list(self, args: dict[str, Any], ctx: CommandContext) -> None:
        files = self.store.files()
        shown = files[:LISTED_FILES]
        uploads = self.store.transfers()
        partial = uploads[:LISTED_FILES]
        ctx.reply_packet(
            self._list_report,
            {
                "files": min(len(files), 0xFFFF),
                "used": min(self.store.used_bytes(), 0xFFFFFFFF),
                "quota": min(self.store.quota_bytes, 0xFFFFFFFF),
                "names": [f.name for f in shown],
                "sizes": [f.size for f in shown],
                "room": min(self.store.room_bytes(), 0xFFFFFFFF),
                "uploads": min(len(uploads), 0xFFFF),
                "upload_ids": [u.transfer_id for u in partial],
                "upload_names": [u.name for u in partial],
                "upload_sizes": [u.size for u in partial],
                "upload_received": [u.received_bytes for u in partial],
            },
        )

    def _delete(self, args: dict[str, Any], ctx: CommandContext) -> None:
        job_id = self._in_use(args["name"]) if self._in_use is not None else 0
        if job_id:
            raise named_failure(
                self._d, "FILE_IN_USE", f"{args['name']} is the input of job {job_id}"
            )
        self.store.delete(args["name"])
        self._events.raise_event("FILE_DELETED", file=args["name"])

    # -- downloads ----------------------------------------------------------------------------

    def _download(self, args: dict[str, Any], ctx: CommandContext) -> object:
        download_id = args["download_id"]
        if download_id in self._downloads:
            raise named_failure(
                self._d, "TRANSFER_CONFLICT", f"download {download_id} is being sent already"
            )
        if len(self._downloads) >= self.max_downloads:
            sending = ", ".join(map(str, sorted(self._downloads)))
            raise named_failure(
                self._d,
                "TOO_MANY_TRANSFERS",
                f"{len(self._downloads)} downloads are being sent, at most {self.max_downloads}:"
                f" wait for one or cancel it (downloads {sending})",
            )
        stored = self.store.info(args["name"])
        self._verify(stored)
        offset, length = args["offset"], args["length"]
        end = stored.size if length == 0 else offset + length
        if offset > stored.size or end > stored.size or (length and offset == stored.size):
            raise named_failure(
                self._d,
                "DOWNLOAD_RANGE",
                f"{stored.name} has {stored.size} octets: range {offset}+{length} is outside it",
            )
        # Open now: a file deleted (or replaced) meanwhile is still sent as announced.
        file = self.store.open(stored.name)
        try:
            ctx.reply_packet(
                self._start,
                {
                    "download_id": download_id,
                    "size": stored.size,
                    "sha256": stored.sha256,
                    "offset": offset,
                    "length": end - offset,
                    "name": stored.name,
                },
            )
        except BaseException:
            file.close()
            raise
        self._downloads[download_id] = _Download(download_id, stored.name, file, offset, end, ctx)
        log.info("download %d of %s: octets %d..%d", download_id, stored.name, offset, end)
        self.tick()
        return DEFERRED

    def _verify(self, stored: StoredFile) -> None:
        """Refuse to send a file that no longer matches the SHA-256 recorded when it was stored:
        the ground would only find out after the whole transfer."""
        try:
            self.store.path_of(stored.name)  # a link or special file in its place: not followed
        except NotRegularFile as exc:
            raise store_failure(self._d, exc) from exc
        if not self.store.intact(stored.name):
            self.upsets.uncorrectable(UpsetLocation.RESULT_FILE, stored.name)
            raise named_failure(
                self._d,
                "RESULT_CORRUPT",
                f"{stored.name} no longer matches the SHA-256 recorded when it was stored",
            )

    def _cancel_download(self, args: dict[str, Any], ctx: CommandContext) -> None:
        download = self._downloads.pop(args["download_id"], None)
        if download is None:
            raise named_failure(
                self._d, "UNKNOWN_TRANSFER", f"no download {args['download_id']} is being sent"
            )
        download.file.close()
        download.ctx.reports.failure(
            Stage.COMPLETION,
            self._d.failure_named("EXECUTION_FAILED").code,
            b"cancelled by FILE_DOWNLOAD_CANCEL",
        )

    @property
    def active_downloads(self) -> int:
        return len(self._downloads)

    def tick(self) -> None:
        """Queue download chunks while VC 1's backlog allows; finish downloads that are done."""
        while self._downloads and self._bulk_backlog() < BULK_BACKLOG_OCTETS:
            # Round robin: each download in turn gets one chunk.
            for download in list(self._downloads.values()):
                self._send_chunk(download)

    def _send_chunk(self, download: _Download) -> None:
        size = min(DOWNLOAD_CHUNK_OCTETS, download.end - download.next_offset)
        data = b""
        if size > 0:
            try:
                download.file.seek(download.next_offset)
                data = download.file.read(size)
            except OSError as exc:
                self._finish(download, f"reading {download.name} failed: {exc}")
                return
        if data:
            values = {
                "download_id": download.download_id,
                "offset": download.next_offset,
                "crc32": zlib.crc32(data),
                "data": data,
            }
            self._tm.publish(
                self._chunk.service,
                self._chunk.subtype,
                self._chunk.layout.build(values),
                destination_id=download.ctx.tc.source_id,
                vcid=TM_VCID_BULK,
            )
            download.next_offset += len(data)
            download.chunks += 1
        if download.next_offset >= download.end or not data:
            self._finish(download, None if download.next_offset >= download.end else "file shrank")

    def _finish(self, download: _Download, error: str | None) -> None:
        self._downloads.pop(download.download_id, None)
        download.file.close()
        if error is not None:
            code = self._d.failure_named("EXECUTION_FAILED").code
            download.ctx.reports.failure(Stage.COMPLETION, code, error.encode()[:200])
            return
        download.ctx.reports.success(Stage.COMPLETION)
        self._events.raise_event(
            "DOWNLOAD_FINISHED", download_id=download.download_id, chunks=download.chunks
        )

    def close(self) -> None:
        for download in self._downloads.values():
            download.file.close()
        self._downloads.clear()
        self.store.close()
