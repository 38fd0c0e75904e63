"""Resumable downloads from the payload's store (FILE_DOWNLOAD): the missing ranges asked for
round after round until the file is whole, then checked against its SHA-256.
"""

from __future__ import annotations

import queue
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from groundsw.payload_link import CommandRecord, EventKind, LinkTimeout, ReceivedTm
from groundsw.progress import Clock, Print, Progress, make_progress, summary_text
from groundsw.send_command import describe_failure
from groundsw.transfer.errors import MAX_STALLED_ROUNDS, TransferFailed, TransferStalled
from groundsw.transfer.exchange import Exchange
from groundsw.transfer.partial_download import PartialDownload
from groundsw.verification import CommandFailed
from spacelink.errors import LinkError
from spacelink.icd import TM_DATA_LENGTH, TmCoding, line_seconds
from spacelink.tmframe import channel_frame_octets
from telemetry_defs.model import CodecError

# Ranges asked for again in one round of a download; more are merged across their gaps.
MAX_DOWNLOAD_REQUESTS = 16
# Silence on the downlink, beyond the line time of what is outstanding, that ends a round.
DOWNLOAD_QUIET_S = 2.0
# How often a download's progress is made durable in its sidecar.
CHECKPOINT_INTERVAL_S = 1.0


def coalesce(ranges: Sequence[tuple[int, int]], most: int) -> list[tuple[int, int]]:
    """At most `most` ranges covering `ranges`, merging across the smallest gaps first."""
    if most < 1:
        raise ValueError(f"at least one range is needed, got {most}")
    spans = sorted((o, o + n) for o, n in ranges if n > 0)
    while len(spans) > most:
        i = min(range(len(spans) - 1), key=lambda k: spans[k + 1][0] - spans[k][1])
        spans[i : i + 2] = [(spans[i][0], spans[i + 1][1])]
    return [(s, e - s) for s, e in spans]


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
