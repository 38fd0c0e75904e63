"""A ground session on the link: FOP-1 on the uplink, frame sync and demux on the downlink
(what becomes of the packets is `groundsw.tm_delivery`'s; how COP-1 starts, link_bringup's).

One thread reads the port and does all protocol work under the session lock; another writes
CLTUs, so a slow line never delays CLCW processing. Callers send commands and get a
`CommandRecord` whose events (frame acknowledged, verification reports, drop) arrive live.
"""

from __future__ import annotations

import itertools
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import serial

from groundsw.link_bringup import InitMode, LinkUp, default_t1, start_ad_service
from groundsw.payload_link import (
    CommandEvent,
    CommandRecord,
    EventKind,
    LinkTimeout,
    PacketTooLong,
    PayloadLink,
    ReceivedTm,
    TmFilter,
    TmListener,
)
from groundsw.recovery import OutageRecovery, RecoveryError, Unconfirmed
from groundsw.tm_delivery import FrameSink, PacketSink, TmDelivery
from groundsw.uplink_security import UplinkSecurity
from spacelink.cltu import encode_cltu
from spacelink.cop1 import (
    AlertRaised,
    Clcw,
    Fop1,
    FopAlert,
    FopConfig,
    FopNotification,
    FopState,
    FrameAcknowledged,
    FrameDropped,
    InitiateConfirmed,
    InitiateFailed,
    Suspended,
)
from spacelink.errors import Cop1Error, LinkError
from spacelink.icd import TC_MAX_DATA_LENGTH, LinkParameters
from spacelink.serialport import read_next
from spacelink.spacepacket import MAX_SEQUENCE_COUNT, AckFlags, PusTc, RequestId
from spacelink.tmdemux import PacketExtractor
from spacelink.tmframe import FrameSynchronizer, TmFrame

# The link's vocabulary lives in groundsw.payload_link and its bring-up in groundsw.link_bringup;
# most callers import them from here.
__all__ = [
    "DEFAULT_RECOVERY_TIMEOUT_S",
    "READ_GATHER_S",
    "CommandEvent",
    "CommandRecord",
    "EventKind",
    "InitMode",
    "LinkSession",
    "LinkTimeout",
    "LinkUp",
    "PacketTooLong",
    "PayloadLink",
    "ReceivedTm",
    "SessionStats",
    "TmFilter",
    "TmListener",
    "default_t1",
]

log = logging.getLogger(__name__)
# Every frame, both ways: what `groundsw -v` shows (groundsw.tm_delivery logs the packets).
traffic = logging.getLogger("groundsw.traffic")

# Gather a burst from the line before decoding it: fewer wake-ups for a few ms (read_next).
READ_GATHER_S = 0.004


@dataclass
class SessionStats:
    tm_packets: int = 0
    tm_packet_errors: int = 0
    commands_sent: int = 0
    alerts: list[str] = field(default_factory=list)
    outages_recovered: int = 0
    frames_resent_after_outage: int = 0


# Alerts that mean "no acknowledgement came": the link may only be down for a while.
_OUTAGE_ALERTS = (FopAlert.T1, FopAlert.LIMIT)
DEFAULT_RECOVERY_TIMEOUT_S = 120.0


class LinkSession:
    """The ground end of the link on one open serial port."""

    def __init__(
        self,
        port: serial.SerialBase,
        *,
        params: LinkParameters | None = None,
        baud: int | None = None,
        fop: FopConfig | None = None,
        source_id: int = 1,
        recovery_timeout: float | None = DEFAULT_RECOVERY_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        security: UplinkSecurity | None = None,
    ) -> None:
        """`recovery_timeout`: seconds to hold commands through a link outage (None: never).
        `security`: secures every frame sent (retransmissions with a new ARSN); None sends ICD
        v1 frames, which a payload requiring authentication discards."""
        self.port = port
        self.security = security
        self.recovery_timeout = recovery_timeout
        self.params = params or LinkParameters()
        self.source_id = source_id
        self._clock = clock
        self._baud = baud or int(getattr(port, "baudrate", 0) or 115200)
        self.fop = Fop1(
            self.params.scid, self.params.tc_vcid, fop or FopConfig(t1=default_t1(self._baud))
        )
        self.sync = FrameSynchronizer(
            scid=self.params.scid,
            frame_length=self.params.tm_frame_length,
            coding=self.params.tm_coding,
        )
        self.demux = PacketExtractor()
        self.stats = SessionStats()
        self.last_clcw: Clcw | None = None
        # When (this session's clock) the last TM frame arrived: the link's liveness.
        self.last_frame_at: float | None = None
        self._clcw_seen = threading.Condition()
        self._lock = threading.RLock()
        self._arrivals = itertools.count()
        self._seq = random.randrange(MAX_SEQUENCE_COUNT + 1)
        self._pending: deque[tuple[bytes, RequestId]] = deque()
        self._in_fop: dict[RequestId, bytes] = {}
        self._recovery: OutageRecovery | None = None
        self._outage_since: float | None = None
        self._records: dict[RequestId, CommandRecord] = {}
        self.delivery = TmDelivery(self._lock, self.stats, self._arrivals, self._event)
        self._init_done = threading.Event()
        self._init_error: str | None = None
        self._tx: queue.Queue[bytes | None] = queue.Queue()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._read_loop, name="ground-rx", daemon=True),
            threading.Thread(target=self._write_loop, name="ground-tx", daemon=True),
        ]

    # -- lifetime -------------------------------------------------------------------------

    def start(self) -> LinkSession:
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._tx.put(None)
        for thread in self._threads:
            thread.join(2.0)

    def __enter__(self) -> LinkSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- link acquisition -------------------------------------------------------------------

    def wait_for_clcw(self, timeout: float) -> Clcw:
        """The first CLCW from the payload (any TM frame carries one)."""
        deadline = self._clock() + timeout
        with self._clcw_seen:
            while self.last_clcw is None:
                self._raise_if_failed()
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise LinkTimeout(
                        f"no frame from the payload within {timeout:g} s on {self.port.name}"
                    )
                self._clcw_seen.wait(min(remaining, 0.1))
            return self.last_clcw

    def initiate(self, mode: InitMode = InitMode.AUTO, timeout: float = 10.0) -> LinkUp:
        """Start the AD service (FOP-1 S6 -> S1) from the payload's CLCW."""
        clcw = self.wait_for_clcw(timeout)
        now = self._clock()
        with self._lock:
            if self.fop.state is not FopState.INITIAL:
                # An active service is terminated first; its alert is not this initiation's.
                self.fop.terminate()
                self._after_fop()
            self._init_done.clear()
            self._init_error = None
            directive = start_ad_service(self.fop, clcw, mode, now)
            self._after_fop()
        if not self._init_done.wait(timeout):
            raise LinkTimeout(f"the payload did not confirm COP-1 initiation within {timeout:g} s")
        if self._init_error is not None:
            raise Cop1Error(f"COP-1 initiation failed: {self._init_error}")
        return LinkUp(clcw, directive, self.fop.v_s)

    # -- commanding ---------------------------------------------------------------------------

    def arrival(self) -> int:
        """The next arrival index: orders an event the ground makes among those of the link."""
        with self._lock:
            return next(self._arrivals)

    def next_seq(self) -> int:
        with self._lock:
            seq = self._seq
            self._seq = (self._seq + 1) & MAX_SEQUENCE_COUNT
            return seq

    def command(
        self,
        service: int,
        subtype: int,
        data: bytes = b"",
        ack: AckFlags = AckFlags.ALL,
        source_id: int | None = None,
    ) -> CommandRecord:
        """Build a TC for the payload's APID (from `source_id`, this session's when None) and
        send it through the AD service."""
        return self.send(self.build(service, subtype, data, ack, source_id))

    def build(
        self,
        service: int,
        subtype: int,
        data: bytes = b"",
        ack: AckFlags = AckFlags.ALL,
        source_id: int | None = None,
    ) -> PusTc:
        """A TC for the payload's APID with the next sequence count, not sent."""
        return PusTc(
            self.params.apid,
            service,
            subtype,
            data,
            seq_count=self.next_seq(),
            source_id=self.source_id if source_id is None else source_id,
            ack_flags=ack,
        )

    def check_length(self, tc: PusTc) -> None:
        """PacketTooLong when `tc` does not fit in one TC frame with the security fields."""
        length = len(tc.pack())
        if length > self.max_packet_octets:
            raise PacketTooLong(
                f"TC[{tc.service},{tc.subtype}] of {length} octets does not fit in a TC frame "
                f"({self.max_packet_octets} at most)"
            )

    @property
    def active(self) -> bool:
        """The AD service takes commands (active, or holding them through an outage)."""
        return self.fop.state is not FopState.INITIAL or self._recovery is not None

    @property
    def max_packet_octets(self) -> int:
        """The longest TC packet one frame carries (less with the security fields)."""
        return TC_MAX_DATA_LENGTH - (self.security.overhead if self.security else 0)

    def send(self, tc: PusTc, record: CommandRecord | None = None) -> CommandRecord:
        """Queue one TC packet (one frame) for sequence-controlled transfer; its events go to
        `record` when given (one made when the command was queued by the ground station)."""
        self._raise_if_failed()
        self.check_length(tc)
        if record is None:
            record = CommandRecord(tc, self._clock())
        with self._lock:
            if self.fop.state is FopState.INITIAL and self._recovery is None:
                reason = self.fop.last_alert.value if self.fop.last_alert else "not initiated"
                raise Cop1Error(f"the uplink (AD service) is not active: {reason}")
            self._records[tc.request_id] = record
            self._pending.append((tc.pack(), tc.request_id))
            self.stats.commands_sent += 1
            self._feed_fop()
            self._after_fop()
        return record

    def subscribe(self, accept: TmFilter | None = None) -> queue.Queue[ReceivedTm]:
        """A queue of every TM packet but verification reports from now on (`TmDelivery`)."""
        return self.delivery.subscribe(accept)

    def listen(
        self, deliver: TmListener, accept: TmFilter | None = None, key: object = None
    ) -> object:
        """Call `deliver` with every TM packet but verification reports (`TmDelivery`)."""
        return self.delivery.listen(deliver, accept, key)

    def add_packet_sink(self, sink: PacketSink) -> None:
        """Call `sink(tm, raw, unix_time)` for every TM packet received (`TmDelivery`)."""
        self.delivery.add_packet_sink(sink)

    def add_frame_sink(self, sink: FrameSink) -> None:
        """Call `sink(frame, unix_time)` for every TM frame received (`TmDelivery`)."""
        self.delivery.add_frame_sink(sink)

    def unsubscribe(self, handle: object) -> None:
        """Stop a subscription (its queue) or a listener (its handle)."""
        self.delivery.unsubscribe(handle)

    # -- internals ------------------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise LinkError(f"serial port {self.port.name} failed: {self.error}")

    def _feed_fop(self) -> None:
        now = self._clock()
        while (
            self._pending
            and self.fop.wait_queue_empty
            and self.fop.state
            in (
                FopState.ACTIVE,
                FopState.RETRANSMIT_WITHOUT_WAIT,
                FopState.RETRANSMIT_WITH_WAIT,
            )
        ):
            data, tag = self._pending.popleft()
            self._in_fop[tag] = data
            self.fop.request_ad(data, tag, now)

    def _after_fop(self) -> None:
        """Hand the FOP's frames to the writer, its notifications to the records, and refill it."""
        while True:
            self._feed_fop()
            frames = self.fop.take_output()
            notes = self.fop.take_notifications()
            if not frames and not notes:
                return
            for frame in frames:
                if self.security is not None:
                    frame = self.security.secure(frame)
                packed = frame.pack()
                if traffic.isEnabledFor(logging.DEBUG):
                    traffic.debug(
                        "TC frame %s N(S)=%d, %d octets",
                        frame.frame_type.name,
                        frame.seq,
                        len(packed),
                    )
                self._tx.put(encode_cltu(packed))
            alert = next((n.alert for n in notes if isinstance(n, AlertRaised)), None)
            if alert in _OUTAGE_ALERTS and self.recovery_timeout is not None:
                self._hold_through_outage(notes)
                continue
            for note in notes:
                self._notify(note)

    def _hold_through_outage(self, notes: list[FopNotification]) -> None:
        """FOP-1 gave up for want of acknowledgements: keep its FDUs until CLCWs flow again."""
        dropped = []
        for note in notes:
            if isinstance(note, FrameDropped) and isinstance(note.tag, RequestId):
                data = self._in_fop.pop(note.tag, None)
                if data is not None:
                    dropped.append(Unconfirmed(note.tag, data, note.seq))
            elif isinstance(note, AlertRaised):
                self.stats.alerts.append(note.alert.name)
                log.warning(
                    "COP-1 alert: %s; holding %d commands until the link is back",
                    note.alert.value,
                    len(dropped) + len(self._pending),
                )
            elif not isinstance(note, FrameDropped):
                self._notify(note)
        if self._recovery is None:
            self._recovery = OutageRecovery()
        self._recovery.add(dropped)
        if self._outage_since is None:
            self._outage_since = self._clock()

    def _resume_after_outage(self, clcw: Clcw) -> None:
        """A CLCW after an outage: settle the held FDUs and restart the AD service."""
        recovery, self._recovery = self._recovery, None
        assert recovery is not None
        try:
            accepted, resend = recovery.resolve(clcw.report_value)
        except RecoveryError as exc:
            log.error("%s", exc)
            self._drop_held(recovery.held, str(exc))
            self._drop_pending(str(exc))
            self._outage_since = None
            return
        now = self._clock()
        for done in accepted:
            self._event(
                done.tag, CommandEvent(EventKind.FRAME_ACKNOWLEDGED, now, next(self._arrivals))
            )
        for held in reversed(resend):
            assert isinstance(held.tag, RequestId)
            self._pending.appendleft((held.data, held.tag))
        self.stats.outages_recovered += 1
        self.stats.frames_resent_after_outage += sum(1 for u in resend if u.seq is not None)
        start_ad_service(self.fop, clcw, InitMode.AUTO, now)
        log.warning(
            "link back (CLCW %s): %d held commands had arrived, %d sent again",
            clcw,
            len(accepted),
            len(resend),
        )

    def _drop_held(self, held: list[Unconfirmed], reason: str) -> None:
        now = self._clock()
        for item in held:
            self._event(
                item.tag, CommandEvent(EventKind.DROPPED, now, next(self._arrivals), reason=reason)
            )

    def _check_outage_deadline(self) -> None:
        """Give up on commands held through an outage that has lasted too long."""
        since, limit = self._outage_since, self.recovery_timeout
        if since is None or limit is None or self._clock() - since < limit:
            return
        reason = f"no acknowledgement from the payload for {limit:g} s"
        if self._recovery is not None:
            self._drop_held(self._recovery.held, reason)
            self._recovery = None
        self.fop.terminate()
        self._after_fop()
        self._drop_pending(reason)
        self._outage_since = None

    def _notify(self, note: FopNotification) -> None:
        now = self._clock()
        if isinstance(note, FrameAcknowledged):
            self._outage_since = None
            if isinstance(note.tag, RequestId):
                self._in_fop.pop(note.tag, None)
            self._event(
                note.tag, CommandEvent(EventKind.FRAME_ACKNOWLEDGED, now, next(self._arrivals))
            )
        elif isinstance(note, FrameDropped):
            if isinstance(note.tag, RequestId):
                self._in_fop.pop(note.tag, None)
            reason = self.fop.last_alert.value if self.fop.last_alert else "dropped"
            self._event(
                note.tag, CommandEvent(EventKind.DROPPED, now, next(self._arrivals), reason=reason)
            )
        elif isinstance(note, AlertRaised):
            self.stats.alerts.append(note.alert.name)
            log.warning("COP-1 alert: %s", note.alert.value)
            self._drop_pending(note.alert.value)
            if not self._init_done.is_set():
                self._init_error = note.alert.value
                self._init_done.set()
        elif isinstance(note, Suspended):
            log.warning("COP-1 AD service suspended (state S%d)", note.suspend_state)
        elif isinstance(note, InitiateConfirmed):
            self._init_done.set()
        elif isinstance(note, InitiateFailed):
            self._init_error = note.alert.value if note.alert else "refused"
            self._init_done.set()

    def _drop_pending(self, reason: str) -> None:
        now = self._clock()
        while self._pending:
            _, tag = self._pending.popleft()
            self._event(
                tag, CommandEvent(EventKind.DROPPED, now, next(self._arrivals), reason=reason)
            )

    def _event(self, tag: object, event: CommandEvent) -> None:
        if not isinstance(tag, RequestId):
            return
        record = self._records.get(tag)
        if record is not None:
            record._add(event)

    def _read_loop(self) -> None:
        data = b""
        while not self._stop.is_set():
            try:
                awaited = self.sync.octets_awaited() if data else 0
                data = read_next(self.port, READ_GATHER_S, awaited, self._baud)
            except (serial.SerialException, OSError) as exc:
                self.error = exc
                with self._clcw_seen:
                    self._clcw_seen.notify_all()
                return
            with self._lock:
                if data:
                    for frame in self.sync.feed(data):
                        self._on_frame(frame)
                self.fop.on_time(self._clock())
                self._after_fop()
                self._check_outage_deadline()

    def _on_frame(self, frame: TmFrame) -> None:
        self.last_frame_at = self._clock()
        self.delivery.frame(frame)
        clcw = Clcw.from_int(frame.ocf)
        if traffic.isEnabledFor(logging.DEBUG):
            traffic.debug(
                "TM frame VC %d, MC %d, VC count %d, FHP %d; CLCW %s",
                frame.vcid, frame.mc_count, frame.vc_count, frame.fhp, clcw,
            )  # fmt: skip
        if clcw.vcid == self.params.tc_vcid and clcw.cop_in_effect == 1:
            if self._recovery is not None:
                self._resume_after_outage(clcw)
            else:
                self.fop.on_clcw(clcw, self._clock())
            self._after_fop()
            with self._clcw_seen:
                self.last_clcw = clcw
                self._clcw_seen.notify_all()
        now = self._clock()
        for raw in self.demux.feed(frame):
            self.delivery.packet(raw, now, frame.vcid)

    def _write_loop(self) -> None:
        while True:
            data = self._tx.get()
            if data is None:
                return
            try:
                self.port.write(data)
            except (serial.SerialException, OSError) as exc:
                self.error = exc
                return
