"""The station repairs the gaps in a payload's archive by itself: it finds them in the real-time
packets as they arrive (`groundsw.gaps`), keeps them in the archive, and, while the link takes
commands, has the payload send the missing packets again from its ALL packet store (ST[15]
STORE_RETRIEVE_RANGE), one retrieval at a time, oldest gap first. Retrieved packets come on
VC 1 and are archived like the others (once: the archive knows a packet by its octets).

A gap found is kept only once the bulk packets sent before the packet after it have arrived:
file data on VC 1 takes sequence counts from the same APID, so a download makes the real-time
counts jump without anything lost; those gaps fill by themselves and are never reported.

A retrieval's completion report comes once its last packet is queued on board; the packets
still on their way are waited for (VC 1 quiet) before the gap is checked again. A gap still
missing packets after `MAX_ATTEMPTS` answered retrievals, or whose retrieval the payload
refuses for good, becomes unrecoverable with the reason.

Passes: when the link goes down (`contact_changed(False)`, told by the station at LOS), a
retrieval out is dropped without counting as an attempt (its packets went with the pass) and
the gaps found are kept at once (nothing sent before can still arrive to fill them); when it
comes back, the next retrieval goes at once. `RecoveryTiming` sets the waits: the defaults suit
passes of minutes; a bench that compresses its orbit gives passes of seconds shorter ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from groundsw.archive import ArchiveError, ArchiveStore
from groundsw.gaps import (
    MAX_ATTEMPTS,
    Gap,
    GapDetector,
    GapState,
    Hole,
    PacketMark,
    holes,
    is_filled,
    retrieval_range,
)
from groundsw.send_command import describe_failure
from groundsw.session import CommandRecord, EventKind
from groundsw.timespec import utc_text
from spacelink.errors import LinkError
from spacelink.icd import TM_VCID_BULK, TM_VCID_REALTIME
from spacelink.pus import EVENT_SERVICE, Stage
from spacelink.spacepacket import PusTm
from telemetry_defs.model import CodecError, Dictionary, UnknownName

log = logging.getLogger(__name__)

STARTED_EVENT = "PAYLOAD_STARTED"
RETRIEVE_COMMAND = "STORE_RETRIEVE_RANGE"
STORE = "ALL"
STEP_S = 0.5
# VC 1 quiet this long: the bulk packets sent before have arrived.
SETTLE_S = 2.0
# A gap found, or a completed retrieval, waits no longer than this for VC 1 to be quiet.
MAX_SETTLE_S = 30.0
# A retrieval with neither an answer nor a VC 1 frame for this long has been lost.
STALL_S = 60.0
# Before a retrieval again after one that ended without an answer or failed.
RETRY_S = 10.0
# Before a retrieval again when the store is busy with another (an operator's).
BUSY_RETRY_S = 30.0
# Failures after which asking again cannot help.
DEFINITE_FAILURES = frozenset(
    {
        "ILLEGAL_APID",
        "BAD_PACKET_LENGTH",
        "UNKNOWN_SERVICE",
        "UNKNOWN_SUBTYPE",
        "BAD_APPLICATION_DATA",
        "NOT_AUTHORISED",
        "STORE_BAD_TIME_RANGE",
    }
)
BUSY_FAILURE = "STORE_RANGE_IN_PROGRESS"


@dataclass(frozen=True, slots=True)
class RecoveryTiming:
    """The waits of recovery a station sets for its passes (seconds; the module's constants say
    what each is): a bench's passes of seconds want them shorter. The others stay constants."""

    step_s: float = STEP_S
    settle_s: float = SETTLE_S
    max_settle_s: float = MAX_SETTLE_S

    def __post_init__(self) -> None:
        for name in ("step_s", "settle_s", "max_settle_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0, found {getattr(self, name)!r}")


Clock = Callable[[], float]
# (service, subtype, application data) -> the command sent as the ground station.
Send = Callable[[int, int, bytes], CommandRecord]


@dataclass
class _Found:
    gap: Gap
    at: float  # clock


@dataclass
class _Retrieval:
    gap: Gap
    record: CommandRecord
    start: int
    end: int
    sent_at: float
    vc1_losses: int  # VC 1 frame count jumps before it was sent
    completed_at: float | None = None


class GapRecovery:
    """Finds and repairs the gaps of one payload's archive. The link calls `on_frame` and
    `on_packet` from its receiving thread; a thread of its own (`start`) does the rest."""

    def __init__(
        self,
        name: str,
        archive: ArchiveStore,
        dictionary: Dictionary,
        *,
        send: Send,
        takes_commands: Callable[[], bool],
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        timing: RecoveryTiming | None = None,
    ) -> None:
        self.name = name
        self.timing = timing or RecoveryTiming()
        # Set by contact_changed (the link's threads), acted on by step (the recovery thread).
        self._link_lost = threading.Event()
        self._link_back = threading.Event()
        self.archive = archive
        self.dictionary = dictionary
        self._send = send
        self._takes_commands = takes_commands
        self._clock = clock
        self._wall = wall
        self._command = dictionary.command(RETRIEVE_COMMAND)
        self._store_id = dictionary.enums["PacketStoreId"].values[STORE]
        # Leaf lock: taken on the receiving thread, which holds the session's lock.
        self._lock = threading.Lock()
        self._found: list[_Found] = []
        self._last_vc1_at = -float("inf")
        self._vc1_next: int | None = None
        self._vc1_losses = 0
        self._retrieval: _Retrieval | None = None
        self._next_try = 0.0
        self._open: list[Gap] = []
        last: list[PacketMark] = []
        try:
            for gap in archive.gaps([GapState.OPEN, GapState.RETRIEVING]):
                # A retrieval out when the station stopped is over: asked again.
                if gap.state is GapState.RETRIEVING:
                    gap = replace(gap, state=GapState.OPEN, updated_at=wall())
                    archive.update_gap(gap)
                self._open.append(gap)
            last = archive.last_live_marks([dictionary.apid])
        except ArchiveError as exc:
            log.error("%s: gaps not resumed: %s", name, exc)
        if self._open:
            log.info("%s: %d gaps to recover from before", name, len(self._open))
        self._detector = GapDetector(last)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"gaps-{name}", daemon=True)

    @staticmethod
    def possible(dictionary: Dictionary) -> bool:
        """The dictionary has what recovery asks the payload for (a dictionary before ICD v2
        has no ST[15]: its payload keeps no packets)."""
        enum = dictionary.enums.get("PacketStoreId")
        if enum is None or STORE not in enum.values:
            return False
        return RETRIEVE_COMMAND in dictionary.commands

    # -- lifetime -----------------------------------------------------------------------------

    def start(self) -> GapRecovery:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop; gaps found and not yet kept are kept, a retrieval out is asked again next
        time."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        try:
            self._keep_found(self._clock(), force=True)
            retrieval, self._retrieval = self._retrieval, None
            if retrieval is not None:
                self._update(retrieval.gap, state=GapState.OPEN)
        except ArchiveError as exc:
            log.error("%s: gaps not saved: %s", self.name, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.timing.step_s):
            try:
                self.step()
            except ArchiveError as exc:  # locked by another process, disk full: later
                log.error("%s: gap recovery: %s", self.name, exc)
                self._next_try = self._clock() + RETRY_S
                self._stop.wait(RETRY_S)
            except Exception:  # recovery must outlive any one failure
                log.exception("%s: gap recovery failed", self.name)
                self._stop.wait(RETRY_S)

    def contact_changed(self, up: bool) -> None:
        """The link came up (a pass begins) or went down (it ended); acted on at the next
        step."""
        (self._link_back if up else self._link_lost).set()

    # -- the receiving thread -----------------------------------------------------------------

    def on_frame(self, vcid: int, vc_count: int) -> None:
        """A TM frame arrived (before the packets it completes)."""
        if vcid != TM_VCID_BULK:
            return
        with self._lock:
            self._last_vc1_at = self._clock()
            if self._vc1_next is not None and vc_count != self._vc1_next:
                self._vc1_losses += 1  # retrieved packets may have gone with it
            self._vc1_next = (vc_count + 1) & 0xFF

    def on_packet(self, tm: PusTm, vcid: int) -> None:
        """A TM packet arrived on `vcid` (archived already)."""
        if vcid != TM_VCID_REALTIME:
            return
        mark = PacketMark(tm.apid, tm.seq_count, tm.time.to_unix(), self._is_start(tm))
        with self._lock:
            gap = self._detector.observe(mark)
            if gap is not None:
                self._found.append(_Found(gap, self._clock()))

    def _is_start(self, tm: PusTm) -> bool:
        if tm.service != EVENT_SERVICE:
            return False
        try:
            decoded = self.dictionary.decode_tm(tm.service, tm.subtype, tm.source_data)
        except (CodecError, UnknownName):
            return False
        return decoded.name == STARTED_EVENT

    # -- the recovery thread ------------------------------------------------------------------

    def open_gaps(self) -> list[Gap]:
        """The gaps not yet recovered nor given up, oldest first."""
        with self._lock:
            return list(self._open)

    def step(self) -> None:
        """Keep the gaps found that are real, follow the retrieval out, or send the next."""
        now = self._clock()
        if self._link_lost.is_set():
            self._link_lost.clear()
            # Nothing sent before the pass ended can still come to fill a gap found.
            self._keep_found(now, force=True)
            retrieval, self._retrieval = self._retrieval, None
            if retrieval is not None:
                # Not an attempt: what it brought may have gone with the pass; checked again
                # (and asked again if need be) as soon as the link is back.
                why = "the pass ended before the retrieval did"
                log.info("%s: %s: %s; asked again next pass", self.name, retrieval.gap.describe(),
                         why)  # fmt: skip
                self._update(retrieval.gap, state=GapState.OPEN, reason=why)
                self._next_try = now
        if self._link_back.is_set():
            self._link_back.clear()
            self._next_try = min(self._next_try, now)
        self._keep_found(now)
        if self._retrieval is not None:
            self._follow(self._retrieval, now)
            return
        if now < self._next_try or not self._open or not self._takes_commands():
            return
        self._retrieve(self._open[0], now)

    def _keep_found(self, now: float, force: bool = False) -> None:
        with self._lock:
            timing = self.timing
            quiet = now - self._last_vc1_at >= timing.settle_s
            ready = [
                f
                for f in self._found
                if force
                or (now - f.at >= timing.settle_s and quiet)
                or now - f.at >= timing.max_settle_s
            ]
            self._found = [f for f in self._found if f not in ready]
        for found in ready:
            gap = found.gap
            if not self._missing(gap):
                log.debug("%s: %s filled by bulk packets", self.name, gap.describe())
                continue
            wall = self._wall()
            gap = self.archive.add_gap(replace(gap, created_at=wall, updated_at=wall))
            with self._lock:
                self._open.append(gap)
            log.info(
                "%s: gap found: %s, onboard %s .. %s",
                self.name,
                gap.describe(),
                utc_text(gap.start_time),
                utc_text(gap.end_time),
            )

    def _missing(self, gap: Gap) -> list[Hole]:
        return holes(gap, self.archive.packet_marks(gap.apid, gap.start_time, gap.end_time))

    def _retrieve(self, gap: Gap, now: float) -> None:
        found = self._missing(gap)
        if not found:  # filled meanwhile: by another gap's retrieval, or bulk packets
            self._recovered(gap)
            return
        start, end = retrieval_range(found)
        try:
            data = self._command.encode({"store": self._store_id, "start": start, "end": end})
        except ValueError as exc:  # onboard times before 1970 or past 2106: a clock not set
            self._give_up(gap, f"its time range cannot be asked for: {exc}")
            return
        with self._lock:
            losses = self._vc1_losses
        try:
            record = self._send(self._command.service, self._command.subtype, data)
        except LinkError as exc:
            log.warning("%s: %s not retrieved: %s", self.name, gap.describe(), exc)
            self._next_try = now + RETRY_S
            return
        gap = self._update(gap, state=GapState.RETRIEVING)
        self._retrieval = _Retrieval(gap, record, start, end, now, losses)
        log.info(
            "%s: retrieving %s: %s store=%s start=%d end=%d",
            self.name,
            gap.describe(),
            RETRIEVE_COMMAND,
            STORE,
            start,
            end,
        )

    def _follow(self, retrieval: _Retrieval, now: float) -> None:
        record, gap = retrieval.record, retrieval.gap
        with self._lock:
            last_vc1, losses = self._last_vc1_at, self._vc1_losses
        if not record.finished.is_set():
            if now - max(retrieval.sent_at, last_vc1) >= STALL_S:
                self._again(retrieval, now + RETRY_S, "no answer to the retrieval")
            return
        if record.failure is not None:
            self._failed(retrieval, now)
            return
        if not _completed(record):
            reason = next(
                (e.reason for e in record.history if e.kind is EventKind.DROPPED), "dropped"
            )
            self._again(retrieval, now + RETRY_S, f"retrieval not sent: {reason}")
            return
        if retrieval.completed_at is None:
            retrieval.completed_at = now
        timing = self.timing
        if now - retrieval.completed_at < timing.max_settle_s and now - last_vc1 < timing.settle_s:
            return  # packets queued before the completion report are still coming
        found = self._missing(gap)
        if is_filled(found, retrieval_completed=losses == retrieval.vc1_losses):
            self._recovered(gap, answered=True)
            return
        known = sum(h.missing or 0 for h in found)
        self._answered(retrieval, now, f"{known} packets still missing" if known else "")

    def _failed(self, retrieval: _Retrieval, now: float) -> None:
        report = retrieval.record.failure
        assert report is not None
        failure = self.dictionary.failure(report.failure_code or 0)
        name = failure.name if failure is not None else ""
        text = describe_failure(self.dictionary, report)
        if name == BUSY_FAILURE:
            self._again(retrieval, now + BUSY_RETRY_S, f"store busy: {text}")
        elif name in DEFINITE_FAILURES:
            self._retrieval = None
            gap = retrieval.gap
            self._give_up(replace(gap, attempts=gap.attempts + 1), f"retrieval failed: {text}")
        else:
            self._answered(retrieval, now + RETRY_S, f"retrieval failed: {text}")

    def _answered(self, retrieval: _Retrieval, at: float, why: str) -> None:
        """An answered retrieval left the gap open: one attempt more, the last allowed? If
        not, the next at `at`."""
        self._retrieval = None
        gap = retrieval.gap
        attempts = gap.attempts + 1
        why = why or "frames of the retrieval lost"
        if attempts >= MAX_ATTEMPTS:
            self._give_up(replace(gap, attempts=attempts), f"{why} after {attempts} retrievals")
            return
        log.info("%s: %s still open: %s; asked again", self.name, gap.describe(), why)
        self._update(gap, state=GapState.OPEN, attempts=attempts, reason=why)
        self._next_try = at

    def _again(self, retrieval: _Retrieval, at: float, why: str) -> None:
        """The retrieval ended without the payload's answer: not an attempt; later."""
        self._retrieval = None
        log.warning("%s: %s: %s; asked again in %.0f s", self.name, retrieval.gap.describe(),
                    why, at - self._clock())  # fmt: skip
        self._update(retrieval.gap, state=GapState.OPEN, reason=why)
        self._next_try = at

    def _recovered(self, gap: Gap, answered: bool = False) -> None:
        self._retrieval = None
        attempts = gap.attempts + 1 if answered else gap.attempts
        gap = self._update(gap, state=GapState.RECOVERED, attempts=attempts, reason=None)
        log.info("%s: gap recovered: %s (%d retrievals)", self.name, gap.describe(), gap.attempts)

    def _give_up(self, gap: Gap, reason: str) -> None:
        gap = self._update(gap, state=GapState.UNRECOVERABLE, reason=reason)
        log.warning("%s: gap unrecoverable: %s: %s", self.name, gap.describe(), reason)

    def _update(self, gap: Gap, **changes: Any) -> Gap:
        updated: Gap = replace(gap, updated_at=self._wall(), **changes)
        self.archive.update_gap(updated)
        with self._lock:
            self._open = [updated if g.id == gap.id else g for g in self._open]
            if updated.closed:
                self._open = [g for g in self._open if g.id != gap.id]
        return updated


def _completed(record: CommandRecord) -> bool:
    return any(
        e.report is not None and e.report.success and e.report.stage is Stage.COMPLETION
        for e in record.history
    )
