"""Resumable uploads into the payload's store (FILE_UPLOAD_*), checked against the SHA-256.

An upload is resumed by announcing the same transfer again: the payload's list of missing ranges
is the truth, so a lost chunk or a lost report can hide nothing.
"""

from __future__ import annotations

import hashlib
import logging
import queue
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from groundsw.payload_link import CommandRecord, EventKind, LinkTimeout
from groundsw.progress import Clock, Print, Progress, make_progress, summary_text
from groundsw.send_command import describe_failure
from groundsw.transfer.errors import MAX_STALLED_ROUNDS, GroundInputError, TransferStalled
from groundsw.transfer.exchange import Exchange, failure_code
from groundsw.transfer.file_checks import file_sha256, readable_file
from groundsw.verification import CommandFailed
from spacelink.errors import LinkError
from spacelink.icd import TC_MAX_DATA_LENGTH
from spacelink.spacepacket import AckFlags

log = logging.getLogger(__name__)

# A TC packet around FILE_UPLOAD_CHUNK data: primary header 6, PUS-C secondary header 5, packet
# error control 2, transfer ID 2 and offset 4. What remains of a maximum frame is chunk data.
_TC_PACKET_OVERHEAD = 6 + 5 + 2
_CHUNK_ARGUMENTS = 2 + 4


def chunk_octets(max_packet_octets: int) -> int:
    """The FILE_UPLOAD_CHUNK data that fills a packet of `max_packet_octets` (976 under an
    HMAC or CMAC security association, 964 under AES-GCM)."""
    return max_packet_octets - _TC_PACKET_OVERHEAD - _CHUNK_ARGUMENTS


UPLOAD_CHUNK_OCTETS = chunk_octets(TC_MAX_DATA_LENGTH)  # 998, unauthenticated
# Frames sent and not yet acknowledged by the CLCW: inside FOP-1's window (K = 15), so chunks
# never pile up in the session's queue ahead of the commands that follow them.
UPLOAD_WINDOW = 12
# Failures may still arrive for chunks sent without success reports; wait this long beyond the
# answer timeout for an acknowledgement, since the session holds commands through an outage.
ACK_GRACE_S = 130.0

# Failure codes of the payload's file service that change what an upload does next.
FILE_EXISTS = 258
CHECKSUM_MISMATCH = 265
TRANSFER_CONFLICT = 262

_RECEIVING, _COMPLETE, _STORED = 0, 1, 2


def plan_chunks(
    ranges: Iterable[tuple[int, int]], chunk: int = UPLOAD_CHUNK_OCTETS
) -> Iterator[tuple[int, int]]:
    """Split (offset, length) ranges into pieces of at most `chunk` octets, in order."""
    if chunk <= 0:
        raise ValueError(f"the chunk size must be positive, got {chunk}")
    for offset, length in ranges:
        end = offset + length
        while offset < end:
            piece = min(chunk, end - offset)
            yield offset, piece
            offset += piece


def transfer_id_for(name: str, sha256: bytes) -> int:
    """The upload's transfer ID: the same file under the same name resumes the same transfer."""
    return int.from_bytes(hashlib.sha256(name.encode() + sha256).digest()[:2], "big")


@dataclass(frozen=True, slots=True)
class UploadResult:
    """How an upload ended."""

    name: str
    size: int
    sha256: bytes
    sent: int
    """Chunk octets sent over the link by this run."""
    already: int
    """Octets the payload held already when this run began."""
    seconds: float
    stored_before: bool = False
    """The payload had the file stored already (a content-addressed name)."""


class Uploader:
    """Sends a local file to the payload's store, resuming whatever part it holds already."""

    def __init__(
        self,
        exchange: Exchange,
        out: Print,
        *,
        tty: bool = False,
        window: int = UPLOAD_WINDOW,
        chunk: int | None = None,
    ) -> None:
        self.exchange = exchange
        self.out = out
        self.tty = tty
        self.window = window
        # By default each chunk fills the largest packet the link's security leaves room for.
        self.chunk = chunk_octets(exchange.link.max_packet_octets) if chunk is None else chunk
        d = exchange.dictionary
        self._chunk_cmd = d.command("FILE_UPLOAD_CHUNK")

    @property
    def _clock(self) -> Clock:
        return self.exchange.clock

    def upload(self, path: Path, name: str, *, content_addressed: bool = False) -> UploadResult:
        """Store `path` on board as `name`. With `content_addressed`, a file of that name stored
        already is this content (the name holds its hash): that is success, not FILE_EXISTS."""
        size = readable_file(path)
        sha = file_sha256(path)
        transfer_id = transfer_id_for(name, sha)
        begin = {"transfer_id": transfer_id, "size": size, "sha256": sha, "name": name}
        label = f"upload {name}"
        t0 = self._clock()
        sent = 0
        already: int | None = None
        with open(path, "rb") as f:
            for attempt in (1, 2):
                try:
                    report = self._report("FILE_UPLOAD_BEGIN", begin, transfer_id)
                except CommandFailed as exc:
                    if content_addressed and failure_code(exc) == FILE_EXISTS:
                        self.out(f"{label}: stored on board already")
                        return UploadResult(name, size, sha, 0, size, self._clock() - t0, True)
                    if failure_code(exc) == TRANSFER_CONFLICT:
                        raise CommandFailed(
                            f"{exc}; abort the other upload with "
                            f"`groundsw cmd FILE_UPLOAD_ABORT transfer_id={transfer_id}`",
                            exc.report,
                        ) from None
                    raise
                if already is None:
                    already = int(report["received"])
                    if already:
                        self.out(f"{label}: resuming, {already} of {size} octets on board")
                progress = make_progress(
                    label, size, self.out, tty=self.tty, clock=self._clock, start=already
                )
                try:
                    sent += self._fill(transfer_id, f, size, report, progress)
                    self._commit(begin)
                except CommandFailed as exc:
                    if failure_code(exc) == CHECKSUM_MISMATCH and attempt == 1:
                        self.out(f"{label}: the payload found a checksum mismatch; sending again")
                        continue
                    raise
                finally:
                    progress.close()
                seconds = self._clock() - t0
                self.out(summary_text(label, sent, seconds, already))
                return UploadResult(name, size, sha, sent, already, seconds)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _commit(self, begin: Mapping[str, Any]) -> None:
        """FILE_UPLOAD_COMMIT of the upload `begin` started; when its answer is lost, `begin`
        again tells whether the file was stored (FILE_EXISTS: the transfer ended and its name
        is stored) or is still held whole (commit again)."""
        transfer_id, name = begin["transfer_id"], begin["name"]
        try:
            self.exchange.request("FILE_UPLOAD_COMMIT", {"transfer_id": transfer_id})
            return
        except LinkTimeout as exc:
            lost = exc
        try:
            report = self._report("FILE_UPLOAD_BEGIN", begin, transfer_id)
        except CommandFailed as exc:
            if failure_code(exc) == FILE_EXISTS:
                log.info("%s: the commit's answer was lost; the file is stored", name)
                return
            raise
        if int(report["missing_ranges"]) > 0:
            raise lost
        self.exchange.request("FILE_UPLOAD_COMMIT", {"transfer_id": transfer_id})

    def _report(self, command: str, values: Mapping[str, Any], transfer_id: int) -> dict[str, Any]:
        # BEGIN of a transfer the payload holds and STATUS only report: asked again when the
        # report is lost on the downlink.
        return self.exchange.query(
            command,
            values,
            reply="FILE_UPLOAD_REPORT",
            match=lambda v: v["transfer_id"] == transfer_id,
        )

    def _fill(
        self, transfer_id: int, f: IO[bytes], size: int, report: dict[str, Any], progress: Progress
    ) -> int:
        """Send what the payload reports missing until it reports none; octets sent."""
        sent = 0
        stalled = 0
        while int(report["state"]) == _RECEIVING and int(report["missing_ranges"]) > 0:
            received = int(report["received"])
            ranges = list(zip(report["missing_offsets"], report["missing_lengths"], strict=True))
            progress.update(received)
            records = self._send_ranges(transfer_id, f, ranges, received, progress)
            sent += sum(n for _, n in ranges)
            report = self._report("FILE_UPLOAD_STATUS", {"transfer_id": transfer_id}, transfer_id)
            # Failures of chunks precede the status answer on the same virtual channel.
            for record in records:
                if record.failure is not None:
                    raise CommandFailed(
                        "FILE_UPLOAD_CHUNK failed: "
                        f"{describe_failure(self.exchange.dictionary, record.failure)}",
                        record.failure,
                    )
            if int(report["received"]) <= received:
                stalled += 1
                if stalled >= MAX_STALLED_ROUNDS:
                    raise TransferStalled(
                        f"upload {transfer_id}: {stalled} rounds of chunks moved nothing "
                        f"forward ({received} of {size} octets on board)"
                    )
            else:
                stalled = 0
        progress.update(int(report["received"]))
        return sent

    def _send_ranges(
        self,
        transfer_id: int,
        f: IO[bytes],
        ranges: list[tuple[int, int]],
        received: int,
        progress: Progress,
    ) -> list[CommandRecord]:
        link = self.exchange.link
        cmd = self._chunk_cmd
        inflight: deque[CommandRecord] = deque()
        records: list[CommandRecord] = []
        done = 0
        for offset, length in plan_chunks(ranges, self.chunk):
            while len(inflight) >= self.window:
                self._await_ack(inflight.popleft())
            f.seek(offset)
            data = f.read(length)
            if len(data) != length:
                raise GroundInputError(f"{f.name} changed during the upload (it is shorter now)")
            values = {"transfer_id": transfer_id, "offset": offset, "data": data}
            record = link.command(cmd.service, cmd.subtype, cmd.encode(values), AckFlags.NONE)
            inflight.append(record)
            records.append(record)
            done += length
            progress.update(received + done)
        while inflight:
            self._await_ack(inflight.popleft())
        return records

    def _await_ack(self, record: CommandRecord) -> None:
        """Until the CLCW acknowledges the record's frame (FOP-1 window flow control)."""
        limit = self.exchange.timeout + ACK_GRACE_S
        deadline = self._clock() + limit
        while True:
            try:
                event = record.events.get(timeout=0.05)
            except queue.Empty:
                link = self.exchange.link
                if link.error is not None:
                    raise LinkError(f"the serial port failed: {link.error}") from None
                if self._clock() > deadline:
                    raise LinkTimeout(
                        f"no acknowledgement of an upload chunk within {limit:g} s"
                    ) from None
                continue
            if event.kind is EventKind.FRAME_ACKNOWLEDGED:
                return
            if event.kind is EventKind.DROPPED:
                raise LinkTimeout(f"the uplink gave up on an upload chunk: {event.reason}")
            if event.report is not None and not event.report.success:
                # Kept in record.failure and reported after the next status answer.
                return
