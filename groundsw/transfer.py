"""File transfer with the payload (service 128): resumable uploads and downloads, the request and
reply exchange every ground operation on models, jobs and files shares, and `groundsw file`.

Uploads are resumed by announcing the same transfer again: the payload's list of missing ranges
is the truth, so a lost chunk or a lost report can hide nothing. Downloads keep what arrived in
`<out>.part` and its ranges in `<out>.part.json`, so an interrupted download asks only for the
rest. Both end checked against the file's SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import queue
import random
import re
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

from groundsw.progress import Clock, Print, Progress, make_progress, summary_text
from groundsw.send_command import describe_failure
from groundsw.session import (
    CommandEvent,
    CommandRecord,
    EventKind,
    LinkTimeout,
    PayloadLink,
    ReceivedTm,
)
from groundsw.uplink_security import UplinkSecurity
from groundsw.verification import CommandFailed, drain
from spacelink.errors import LinkError
from spacelink.icd import TC_MAX_DATA_LENGTH, TM_DATA_LENGTH, TmCoding, line_seconds
from spacelink.pus import EVENT_SERVICE, Stage, VerificationReport
from spacelink.ranges import RangeSet
from spacelink.spacepacket import AckFlags
from spacelink.tmframe import channel_frame_octets
from telemetry_defs.model import CodecError, Dictionary, TmPacket, UnknownName

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
# Rounds of resending that move nothing forward before the transfer is declared stalled.
MAX_STALLED_ROUNDS = 5
# Ranges asked for again in one round of a download; more are merged across their gaps.
MAX_DOWNLOAD_REQUESTS = 16
# Silence on the downlink, beyond the line time of what is outstanding, that ends a round.
DOWNLOAD_QUIET_S = 2.0
# How often a download's progress is made durable in its sidecar.
CHECKPOINT_INTERVAL_S = 1.0
# Failures may still arrive for chunks sent without success reports; wait this long beyond the
# answer timeout for an acknowledgement, since the session holds commands through an outage.
ACK_GRACE_S = 130.0
# A reply packet normally precedes the completion report on VC 0; allow for it to lag.
REPLY_GRACE_S = 2.0
# Requests of a read-only query within its timeout: at BER 1e-5 and 921600 baud one TM frame in
# twelve is lost, and with it a query's reports and reply now and then.
QUERY_ATTEMPTS = 3

_SHA256_OCTETS = hashlib.sha256().digest_size
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")

FILE_EXISTS = 258
CHECKSUM_MISMATCH = 265
TRANSFER_CONFLICT = 262

_RECEIVING, _COMPLETE, _STORED = 0, 1, 2


# -- errors -------------------------------------------------------------------------------------


class GroundInputError(Exception):
    """Bad input on the ground: a missing or unreadable file, a bad name or value."""


class TransferStalled(LinkTimeout):
    """A transfer stopped moving forward: the link loses what is sent."""


class TransferFailed(CommandFailed):
    """A transfer ended without a verified file (the checksum did not match)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, None)


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


# -- range bookkeeping --------------------------------------------------------------------------


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


def coalesce(ranges: Sequence[tuple[int, int]], most: int) -> list[tuple[int, int]]:
    """At most `most` ranges covering `ranges`, merging across the smallest gaps first."""
    if most < 1:
        raise ValueError(f"at least one range is needed, got {most}")
    spans = sorted((o, o + n) for o, n in ranges if n > 0)
    while len(spans) > most:
        i = min(range(len(spans) - 1), key=lambda k: spans[k + 1][0] - spans[k][1])
        spans[i : i + 2] = [(spans[i][0], spans[i + 1][1])]
    return [(s, e - s) for s, e in spans]


def transfer_id_for(name: str, sha256: bytes) -> int:
    """The upload's transfer ID: the same file under the same name resumes the same transfer."""
    return int.from_bytes(hashlib.sha256(name.encode() + sha256).digest()[:2], "big")


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.digest()


# -- the download's resumable state -------------------------------------------------------------


class PartialDownload:
    """`<out>.part` filled at each chunk's offset, with its received ranges in `<out>.part.json`.

    The sidecar names only octets already fsynced in `.part`, so a crash loses at most what
    arrived since the last checkpoint.
    """

    def __init__(self, out: Path, name: str) -> None:
        self.out = out
        self.name = name
        self.part = out.with_name(out.name + ".part")
        self.sidecar = out.with_name(out.name + ".part.json")
        self.size: int | None = None
        self.sha256: bytes | None = None
        self.received = RangeSet()
        self.dropped = 0
        self._fd: int | None = None
        self._dirty = False
        self._load()

    def _load(self) -> None:
        try:
            saved = json.loads(self.sidecar.read_text())
            if saved["name"] != self.name:
                return
            size, sha = int(saved["size"]), bytes.fromhex(saved["sha256"])
            ranges = RangeSet((int(o), int(n)) for o, n in saved["ranges"])
            if len(sha) != _SHA256_OCTETS or self.part.stat().st_size != size:
                return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if self.sidecar.exists():
                log.warning("ignoring the download state in %s: %s", self.sidecar, exc)
            return
        self.size, self.sha256, self.received = size, sha, ranges

    @property
    def resumable(self) -> bool:
        return self.size is not None

    def start(self, size: int, sha256: bytes) -> bool:
        """Take the file's size and SHA-256; False when what was kept belongs to another file."""
        kept = self.size == size and self.sha256 == sha256
        if not kept:
            self.received = RangeSet()
        self.size, self.sha256 = size, sha256
        if self._fd is None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | (0 if kept else os.O_TRUNC)
            self._fd = os.open(self.part, flags, 0o644)
        elif not kept:
            os.ftruncate(self._fd, 0)
        os.ftruncate(self._fd, size)
        self._dirty = True
        return kept

    def accept(self, offset: int, data: bytes, crc32: int) -> bool:
        """Write one chunk if its CRC-32 holds and it lies within the file; False if dropped."""
        if self._fd is None or self.size is None:
            raise RuntimeError("a chunk arrived before the download's size was known")
        if zlib.crc32(data) != crc32 or not data or offset + len(data) > self.size:
            self.dropped += 1
            return False
        written = os.pwrite(self._fd, data, offset)
        if written != len(data):
            raise OSError(f"wrote {written} of {len(data)} octets to {self.part}")
        self.received.add(offset, len(data))
        self._dirty = True
        return True

    def missing(self) -> list[tuple[int, int]]:
        if self.size is None:
            raise RuntimeError("the download's size is not known yet")
        return list(self.received.missing(self.size))

    @property
    def complete(self) -> bool:
        return self.size is not None and not self.missing()

    def checkpoint(self) -> None:
        """Make what arrived durable and record it in the sidecar (atomically replaced)."""
        if self._fd is None or not self._dirty or self.size is None or self.sha256 is None:
            return
        os.fsync(self._fd)
        state = {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256.hex(),
            "ranges": [list(r) for r in self.received.ranges],
        }
        tmp = self.sidecar.with_name(self.sidecar.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.sidecar)
        self._dirty = False

    def finish(self) -> bytes:
        """Check the whole file's SHA-256, then move it to its final path; TransferFailed if the
        octets do not match (they are discarded)."""
        if self._fd is None or self.sha256 is None or not self.complete:
            raise RuntimeError("finish() before the download is complete")
        os.fsync(self._fd)
        found, announced = file_sha256(self.part), self.sha256
        if found != announced:
            self.discard()
            raise TransferFailed(
                f"{self.name} arrived with SHA-256 {found.hex()[:16]}..., the payload announced "
                f"{announced.hex()[:16]}...: discarded"
            )
        os.close(self._fd)
        self._fd = None
        os.replace(self.part, self.out)
        _fsync_directory(self.out.parent)
        self.sidecar.unlink(missing_ok=True)
        return found

    def discard(self) -> None:
        self.close()
        self.part.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)
        self.size, self.sha256, self.received = None, None, RangeSet()

    def close(self) -> None:
        if self._fd is not None:
            try:
                self.checkpoint()
            finally:
                os.close(self._fd)
                self._fd = None


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- requests and replies -----------------------------------------------------------------------


def failure_code(exc: CommandFailed) -> int | None:
    return exc.report.failure_code if exc.report is not None else None


_T = TypeVar("_T")
# A progress report's step is one octet: an answer in several packets is counted modulo 256.
_STEP_MODULO = 256


@dataclass(frozen=True, slots=True)
class _Reply:
    """A reply packet of a request: its arrival, its message type counter, its values."""

    order: int
    counter: int
    values: dict[str, Any]


class _Answer:
    """What one request heard: its replies, and (for an answer in several packets, as
    `Exchange.query_all` reads it) what tells whether every one of them came."""

    def __init__(self) -> None:
        self.replies: list[_Reply] = []
        # Arrival of this request's latest acceptance or start report: replies before it
        # answer an earlier request.
        self.since: int | None = None
        # The progress report's step (how many replies were sent) and its arrival.
        self.sent: tuple[int, int] | None = None

    def note(self, event: CommandEvent) -> None:
        report = event.report
        if report is None or not report.success:
            return
        if report.stage in (Stage.ACCEPTANCE, Stage.START):
            self.since = event.order
        elif report.stage is Stage.PROGRESS and report.step is not None:
            self.sent = (report.step, event.order)

    def _mine(self) -> list[_Reply]:
        if self.since is None or self.sent is None:
            return []
        since, (_, until) = self.since, self.sent
        return sorted((r for r in self.replies if since < r.order < until), key=lambda r: r.order)

    def whole(self) -> list[dict[str, Any]]:
        """Every reply of the answer, or none while one is missing."""
        mine = self._mine()
        if self.sent is None or not mine or len(mine) % _STEP_MODULO != self.sent[0]:
            return []
        if any((b.counter - a.counter) & 0xFFFF != 1 for a, b in pairwise(mine)):
            return []
        return [r.values for r in mine]

    def lost(self, command: str, reply: TmPacket, every: bool) -> str:
        """Why a completed request has no answer to return, in one sentence."""
        packet = reply.name
        if not every or not self.replies:
            return (
                f"{command} completed but its {packet} reply "
                f"(TM[{reply.service},{reply.subtype}]) was lost on the downlink"
            )
        if self.since is None:
            return f"{command} completed but its acceptance and start reports were lost"
        if self.sent is None:
            return (
                f"{command} completed but its progress report, which tells how many {packet} "
                "it sent, was lost on the downlink"
            )
        return (
            f"{command} completed but {len(self._mine())} of its {packet} replies came, not the "
            f"{self.sent[0]} (modulo {_STEP_MODULO}) it sent in a row: lost on the downlink"
        )


@dataclass
class Exchange:
    """Sends commands and waits for their reports and replies on one link."""

    link: PayloadLink
    dictionary: Dictionary
    timeout: float
    clock: Clock = time.monotonic

    def query(
        self,
        command: str,
        values: Mapping[str, Any] | None = None,
        *,
        reply: str,
        match: Callable[[dict[str, Any]], bool] | None = None,
        attempts: int = QUERY_ATTEMPTS,
    ) -> dict[str, Any]:
        """`request` for a command that only reads (asking twice changes nothing): asked again
        when its answer is lost, `attempts` times within the timeout in all."""

        def ask(timeout: float) -> dict[str, Any]:
            found = self.request(command, values, reply=reply, match=match, timeout=timeout)
            assert found is not None
            return found

        return self._asked_again(command, attempts, ask)

    def query_all(
        self,
        command: str,
        values: Mapping[str, Any] | None = None,
        *,
        reply: str,
        attempts: int = QUERY_ATTEMPTS,
    ) -> list[dict[str, Any]]:
        """Every `reply` packet of a command that only reads and answers in several, in the order
        they were sent; asked again, as `query` is, when any of them is lost.

        The payload tells how many it sent in a progress report (TM[1,5], its step the count
        modulo 256) before the completion report, and the replies' message type counters follow
        one another: the answer is whole when as many came between this request's acceptance
        (or start) report and that progress report, with no counter missing. A partial answer
        is never returned. While replies keep coming, an attempt waits on past its share of the
        timeout (a long answer on a slow downlink)."""
        return self._asked_again(
            command,
            attempts,
            lambda timeout: self._exchange(
                command, values, reply=reply, every=True, timeout=timeout
            ),
        )

    def _asked_again(self, command: str, attempts: int, ask: Callable[[float], _T]) -> _T:
        per_attempt = self.timeout / attempts
        for attempt in range(1, attempts + 1):
            try:
                return ask(per_attempt)
            except LinkTimeout as exc:
                if attempt == attempts:
                    raise LinkTimeout(
                        f"no answer to {command} ({attempts} requests in {self.timeout:g} s; "
                        f"last: {exc})"
                    ) from None
                log.info("%s: %s; asking again", command, exc)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def request(
        self,
        command: str,
        values: Mapping[str, Any] | None = None,
        *,
        reply: str | None = None,
        match: Callable[[dict[str, Any]], bool] | None = None,
        until_reply: bool = False,
        on_report: Callable[[VerificationReport, float], None] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any] | None:
        """Send `command` with every success report asked for; its `reply` packet's values.

        Waits for the completion report, or only for the reply with `until_reply`. Raises
        CommandFailed (one sentence naming the failure) or LinkTimeout.
        """
        found = self._exchange(
            command,
            values,
            reply=reply,
            match=match,
            until_reply=until_reply,
            on_report=on_report,
            timeout=timeout,
        )
        return found[0] if found else None

    def _exchange(
        self,
        command: str,
        values: Mapping[str, Any] | None,
        *,
        reply: str | None,
        match: Callable[[dict[str, Any]], bool] | None = None,
        until_reply: bool = False,
        on_report: Callable[[VerificationReport, float], None] | None = None,
        timeout: float | None = None,
        every: bool = False,
    ) -> list[dict[str, Any]]:
        """`request`'s exchange: the first matching reply, or with `every` every reply of a
        whole answer in several packets (`query_all`); none without `reply`."""
        cmd = self.dictionary.command(command)
        packet = self.dictionary.packets[reply] if reply is not None else None
        replies = self.link.subscribe() if packet is not None else None
        limit = self.timeout if timeout is None else timeout
        answer = _Answer()
        try:
            record = self.link.command(cmd.service, cmd.subtype, cmd.encode(values or {}))
            deadline = self.clock() + limit
            completed_at: float | None = None
            while True:
                if replies is not None and packet is not None and (every or not answer.replies):
                    for item in drain(replies):
                        tm = item.tm
                        if (tm.service, tm.subtype) != (packet.service, packet.subtype):
                            continue
                        if tm.destination_id != self.link.source_id:
                            continue
                        try:
                            got = packet.layout.parse(tm.source_data)
                        except CodecError as exc:
                            log.warning("%s not decoded: %s", packet.name, exc)
                            continue
                        if match is None or match(got):
                            answer.replies.append(_Reply(item.order, tm.msg_type_counter, got))
                            if not every:
                                break
                            deadline = max(deadline, self.clock() + limit)
                found = answer.whole() if every else [r.values for r in answer.replies[:1]]
                if found and (until_reply or completed_at is not None):
                    # Reports that came with the reply are told before it is returned.
                    for event in drain(record.events):
                        self._take_report(command, event, record, on_report)
                    return found
                if completed_at is not None:
                    if packet is None:
                        return []
                    if self.clock() - completed_at > REPLY_GRACE_S:
                        raise LinkTimeout(answer.lost(command, packet, every))
                if self.link.error is not None:
                    raise LinkError(f"the serial port failed: {self.link.error}")
                if self.clock() > deadline:
                    raise LinkTimeout(f"no answer to {command} within {limit:g} s")
                try:
                    event = record.events.get(timeout=0.05)
                except queue.Empty:
                    continue
                answer.note(event)
                if self._take_report(command, event, record, on_report):
                    completed_at = self.clock()
        finally:
            if replies is not None:
                self.link.unsubscribe(replies)

    def _take_report(
        self,
        command: str,
        event: CommandEvent,
        record: CommandRecord,
        on_report: Callable[[VerificationReport, float], None] | None,
    ) -> bool:
        """Act on one event of a request: True at its completion; CommandFailed on a failure
        report, LinkTimeout when the uplink gave it up."""
        if event.kind is EventKind.DROPPED:
            raise LinkTimeout(f"the uplink gave up on {command}: {event.reason}")
        report = event.report
        if report is None:
            return False
        if not report.success:
            raise CommandFailed(
                f"{command} failed at {report.stage.name.lower()}: "
                f"{describe_failure(self.dictionary, report)}",
                report,
            )
        if on_report is not None:
            on_report(report, event.at - record.sent_at)
        return report.stage is Stage.COMPLETION


def event_values(
    dictionary: Dictionary, item: ReceivedTm, names: Iterable[str]
) -> tuple[str, dict[str, Any]] | None:
    """(name, values) if the packet is one of the named events, else None."""
    tm = item.tm
    if tm.service != EVENT_SERVICE:
        return None
    try:
        decoded = dictionary.decode_tm(tm.service, tm.subtype, tm.source_data)
    except (CodecError, UnknownName):
        return None
    if decoded.name not in names:
        return None
    return decoded.name, decoded.values


# -- uploads ------------------------------------------------------------------------------------


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


# -- downloads ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """How a download ended."""

    name: str
    path: Path
    size: int
    sha256: bytes
    received: int
    """Chunk octets accepted by this run."""
    dropped: int
    """Chunks dropped for a bad CRC-32 or a bad range."""
    seconds: float

    def check_is(self, what: str, size: int, sha256: bytes) -> None:
        """TransferFailed, the file deleted, unless it is `what` by the `size` and `sha256` its
        maker reports (a job's result: the file may have been replaced on board since)."""
        if self.sha256 != sha256 or self.size != size:
            self.path.unlink(missing_ok=True)
            raise TransferFailed(
                f"{self.name} ({self.size} octets, SHA-256 {self.sha256.hex()[:16]}...) is not "
                f"{what} ({size} octets, SHA-256 {sha256.hex()[:16]}...): discarded"
            )


def downlink_seconds(octets: int, baud: int) -> float:
    """Line time of `octets` of chunk data on the downlink, frame overhead included (of a coded
    frame, the longer: a wait long enough for either coding)."""
    frames = octets / TM_DATA_LENGTH
    return line_seconds(int(frames * channel_frame_octets(TmCoding.RS)) + 1, baud)


class Downloader:
    """Fetches a stored file into a local path, resuming an interrupted download."""

    def __init__(
        self,
        exchange: Exchange,
        out: Print,
        baud: int,
        *,
        tty: bool = False,
        id_source: Callable[[], int] = lambda: random.randrange(1, 0x10000),
    ) -> None:
        self.exchange = exchange
        self.out = out
        self.baud = baud
        self.tty = tty
        self._new_id = id_source
        d = exchange.dictionary
        self._download = d.command("FILE_DOWNLOAD")
        self._start = d.packets["FILE_DOWNLOAD_START"]
        self._chunk = d.packets["FILE_DOWNLOAD_CHUNK"]

    @property
    def _clock(self) -> Clock:
        return self.exchange.clock

    def download(self, name: str, path: Path) -> DownloadResult:
        label = f"download {name}"
        partial = PartialDownload(path, name)
        t0 = self._clock()
        accepted = 0
        ids: set[int] = set()
        link = self.exchange.link
        packets = link.subscribe()
        progress: Progress | None = None
        try:
            if partial.resumable:
                assert partial.size is not None
                self.out(
                    f"{label}: resuming, {partial.received.covered_bytes} of {partial.size}"
                    " octets here"
                )
                requests = coalesce(partial.missing(), MAX_DOWNLOAD_REQUESTS) or [(0, 1)]
            else:
                requests = [(0, 0)]
            stalled = 0
            last_checkpoint = self._clock()
            while True:
                before = partial.received.covered_bytes
                records = [self._ask(name, offset, length, ids) for offset, length in requests]
                last_heard = self._clock()
                done_at: float | None = None
                while True:
                    for record in records:
                        self._check(record)
                    if done_at is None and all(r.finished.is_set() for r in records):
                        done_at = self._clock()
                    try:
                        item: ReceivedTm | None = packets.get(timeout=0.05)
                    except queue.Empty:
                        item = None
                    got = self._take(item, partial, ids, path) if item is not None else 0
                    if got and progress is None and partial.size is not None:
                        progress = make_progress(
                            label,
                            partial.size,
                            self.out,
                            tty=self.tty,
                            clock=self._clock,
                            start=before,
                        )
                    if got:
                        accepted += got
                        last_heard = self._clock()
                        if progress is not None:
                            progress.update(partial.received.covered_bytes)
                    now = self._clock()
                    if now - last_checkpoint > CHECKPOINT_INTERVAL_S:
                        partial.checkpoint()
                        last_checkpoint = now
                    if partial.complete:
                        break
                    outstanding = (partial.size or 0) - partial.received.covered_bytes
                    quiet = DOWNLOAD_QUIET_S + downlink_seconds(outstanding, self.baud)
                    if done_at is not None and now - max(last_heard, done_at) > quiet:
                        break
                    if done_at is None and now - last_heard > self._answer_limit(requests):
                        # Neither data nor the completion report: both lost on a noisy
                        # downlink, or the payload is silent. Asked again, a bounded number
                        # of times, as for a round that lost only data.
                        break
                if partial.complete:
                    break
                if partial.received.covered_bytes > before:
                    stalled = 0
                else:
                    stalled += 1
                    if stalled >= MAX_STALLED_ROUNDS:
                        raise self._stalled(name, partial, stalled)
                # Without FILE_DOWNLOAD_START (lost) the size is unknown: the whole file again.
                requests = (
                    coalesce(partial.missing(), MAX_DOWNLOAD_REQUESTS)
                    if partial.size is not None
                    else [(0, 0)]
                )
            assert partial.size is not None
            if progress is not None:
                progress.update(partial.size)
                progress.close()
                progress = None
            sha = partial.finish()
            seconds = self._clock() - t0
            self.out(summary_text(label, accepted, seconds))
            if partial.dropped:
                self.out(
                    f"{label}: {partial.dropped} chunks dropped (bad CRC-32) and fetched again"
                )
            return DownloadResult(name, path, partial.size, sha, accepted, partial.dropped, seconds)
        finally:
            if progress is not None:
                progress.close()
            link.unsubscribe(packets)
            partial.close()

    @staticmethod
    def _stalled(name: str, partial: PartialDownload, rounds: int) -> LinkError:
        if partial.size is None:
            return LinkTimeout(f"no answer to FILE_DOWNLOAD of {name} ({rounds} requests)")
        return TransferStalled(
            f"download of {name}: {rounds} rounds brought nothing "
            f"({partial.received.covered_bytes} of {partial.size} octets here)"
        )

    def _answer_limit(self, requests: list[tuple[int, int]]) -> float:
        return self.exchange.timeout + downlink_seconds(sum(n for _, n in requests), self.baud)

    def _ask(self, name: str, offset: int, length: int, ids: set[int]) -> CommandRecord:
        download_id = self._new_id()
        while download_id in ids:
            download_id = self._new_id()
        ids.add(download_id)
        values = {"download_id": download_id, "name": name, "offset": offset, "length": length}
        cmd = self._download
        return self.exchange.link.command(cmd.service, cmd.subtype, cmd.encode(values))

    def _check(self, record: CommandRecord) -> None:
        if record.failure is not None:
            raise CommandFailed(
                f"FILE_DOWNLOAD failed at {record.failure.stage.name.lower()}: "
                f"{describe_failure(self.exchange.dictionary, record.failure)}",
                record.failure,
            )
        if record.finished.is_set():
            for event in record.history:
                if event.kind is EventKind.DROPPED:
                    raise LinkTimeout(f"the uplink gave up on FILE_DOWNLOAD: {event.reason}")

    def _take(self, item: ReceivedTm, partial: PartialDownload, ids: set[int], path: Path) -> int:
        """Octets of a chunk accepted from `item` (0 for anything else)."""
        tm = item.tm
        if tm.service != self._chunk.service:
            return 0
        if tm.subtype == self._start.subtype:
            try:
                start = self._start.layout.parse(tm.source_data)
            except CodecError:
                return 0
            if start["download_id"] in ids:
                if partial.sha256 is not None and partial.sha256 != start["sha256"]:
                    self.out(f"download {partial.name}: the file changed on board; starting over")
                if not partial.start(int(start["size"]), bytes(start["sha256"])):
                    return 0
            return 0
        if tm.subtype != self._chunk.subtype or partial.size is None:
            return 0
        try:
            chunk = self._chunk.layout.parse(tm.source_data)
        except CodecError:
            partial.dropped += 1
            return 0
        if chunk["download_id"] not in ids:
            return 0
        data = bytes(chunk["data"])
        if not partial.accept(int(chunk["offset"]), data, int(chunk["crc32"])):
            return 0
        return len(data)


# -- the shared context of operations and `groundsw file` ---------------------------------------


@dataclass
class OperationContext:
    """What an operation on models, jobs and files works with."""

    link: PayloadLink
    dictionary: Dictionary
    timeout: float
    baud: int
    out: Print
    err: Print
    tty: bool = False
    clock: Clock = time.monotonic
    security: UplinkSecurity | None = None

    def exchange(self) -> Exchange:
        return Exchange(self.link, self.dictionary, self.timeout, self.clock)

    def uploader(self) -> Uploader:
        return Uploader(self.exchange(), self.out, tty=self.tty)

    def downloader(self) -> Downloader:
        return Downloader(self.exchange(), self.out, self.baud, tty=self.tty)


Operation = Callable[[argparse.Namespace, OperationContext], int]
LocalCheck = Callable[[argparse.Namespace], None]


class OneSentenceParser(argparse.ArgumentParser):
    """Usage errors as one sentence on stderr and exit 2, like every other refusal."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"groundsw: {self.prog.removeprefix('groundsw ')}: {message}\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extra = super().parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognised arguments: {' '.join(extra)}")
        return parsed, extra


def add_operation(
    sub: argparse._SubParsersAction[Any],
    name: str,
    help: str,
    run: Operation,
    check: LocalCheck | None = None,
) -> argparse.ArgumentParser:
    """A subcommand that runs `run` on the link after `check` passed on the ground."""
    parser = sub.add_parser(name, help=help, description=help)
    parser.add_argument(
        "--force", action="store_true", help="send even if the payload's dictionary differs"
    )
    parser.set_defaults(operation=run, local_check=check)
    return parser


def add_file_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("file", help="the payload's file store: upload, list, delete, download")
    files = parser.add_subparsers(
        dest="file_command", required=True, metavar="FILE_COMMAND", parser_class=OneSentenceParser
    )
    upload = add_operation(
        files, "upload", "upload a local file (resumes an interrupted upload)", run_upload, _check
    )
    upload.add_argument("local", type=Path)
    upload.add_argument("--name", help="name on board (default: the local file's name)")
    add_operation(files, "list", "list the stored files", run_list)
    delete = add_operation(files, "delete", "delete a stored file", run_delete)
    delete.add_argument("name")
    download = add_operation(
        files, "download", "download a stored file (resumes an interrupted one)", run_download
    )
    download.add_argument("name")
    download.add_argument("--out", type=Path, required=True, help="local path to write")


def _upload_name(args: argparse.Namespace) -> str:
    return check_file_name(args.name or args.local.name)


def _check(args: argparse.Namespace) -> None:
    readable_file(args.local)
    _upload_name(args)


def run_upload(args: argparse.Namespace, ctx: OperationContext) -> int:
    result = ctx.uploader().upload(args.local, _upload_name(args))
    ctx.out(f"stored {result.name}: {result.size} octets, SHA-256 {result.sha256.hex()}")
    return 0


def describe_file_list(report: Mapping[str, Any]) -> list[str]:
    """TM[128,8] for the operator: use and room, stored files, uploads with what they reserve."""
    used, quota, room = report["used"], report["quota"], report["room"]
    disk = " (the disk has less room than the quota)" if room < quota - used else ""
    lines = [
        f"{report['files']} files, {report['uploads']} uploads in progress: {used} of {quota}"
        f" octets used or reserved, room for an upload of {room}{disk}"
    ]
    for name, size in zip(report["names"], report["sizes"], strict=True):
        lines.append(f"  {size:>10}  {name}")
    if report["files"] > len(report["names"]):
        lines.append(f"  ... and {report['files'] - len(report['names'])} more")
    uploads = zip(
        report["upload_ids"], report["upload_names"], report["upload_sizes"],
        report["upload_received"], strict=True,
    )  # fmt: skip
    for transfer_id, name, size, received in uploads:
        percent = 100 * received // size if size else 100
        lines.append(
            f"  {size:>10}  {name}  (uploading, reserved: {received} received, {percent}%;"
            f" transfer {transfer_id})"
        )
    if report["uploads"] > len(report["upload_ids"]):
        lines.append(f"  ... and {report['uploads'] - len(report['upload_ids'])} more uploads")
    return lines


def run_list(args: argparse.Namespace, ctx: OperationContext) -> int:
    for line in describe_file_list(ctx.exchange().query("FILE_LIST", reply="FILE_LIST_REPORT")):
        ctx.out(line)
    return 0


def run_delete(args: argparse.Namespace, ctx: OperationContext) -> int:
    ctx.exchange().request("FILE_DELETE", {"name": args.name})
    ctx.out(f"deleted {args.name}")
    return 0


def download_to(ctx: OperationContext, name: str, out: Path) -> DownloadResult:
    """Download `name` into `out`; a local write failure is a GroundInputError."""
    try:
        return ctx.downloader().download(name, out)
    except OSError as exc:
        raise GroundInputError(f"cannot write {out}: {exc.strerror or exc}") from None


def run_download(args: argparse.Namespace, ctx: OperationContext) -> int:
    result = download_to(ctx, args.name, args.out)
    ctx.out(f"saved {result.path}: {result.size} octets, SHA-256 {result.sha256.hex()}")
    return 0
