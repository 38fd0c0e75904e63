"""One payload's link as the ground station owns it: the session (FOP-1 kept running, started
again whenever the payload's CLCW flows and the AD service is not active), every packet archived,
the link's state, and commands from any number of clients, each with its own PUS source ID and
only its own replies, queued while the link is down and recorded with every stage."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from groundsw.archive import ArchiveError, ArchiveStore
from groundsw.dictionary_check import HASH_PARAMETER
from groundsw.send_command import describe_failure
from groundsw.session import (
    CommandEvent,
    CommandRecord,
    EventKind,
    InitMode,
    LinkSession,
    LinkTimeout,
    LinkUp,
    ReceivedTm,
    TmListener,
)
from groundsw.station.gap_recovery import GapRecovery, RecoveryTiming
from groundsw.station.pass_queue import PassQueue, QueuedCommand
from groundsw.uplink_security import RefusalLog, security_event_sink
from spacelink.cop1 import FopState
from spacelink.errors import Cop1Error, LinkError
from spacelink.icd import TM_VCID_REALTIME
from spacelink.pus import VERIFICATION_SERVICE, Stage
from spacelink.spacepacket import AckFlags, PusTc, PusTm, RequestId
from spacelink.tmframe import TmFrame
from telemetry_defs.model import CodecError, Dictionary, UnknownName

log = logging.getLogger(__name__)

# The payload sends a frame every second at least: a link with none for this long is down.
LINK_UP_S = 3.0
SUPERVISE_S = 0.1
RETRY_INIT_S = 2.0
DEFAULT_QUEUE_EXPIRY_S = 600.0
ARGUMENTS_TEXT_MAX = 200
# Packets that carry parameter values (housekeeping, parameter reports) and events.
LATEST_VALUE_SERVICES = (3, 5, 20)
STARTED_EVENT = "PAYLOAD_STARTED"

Clock = Callable[[], float]
CommandListener = Callable[[CommandRecord, CommandEvent], None]


@dataclass(frozen=True)
class LinkState:
    """What an operator needs to know of a link at a glance."""

    payload: str
    port: str
    up: bool
    last_frame_age: float | None
    clcw: str | None
    cop1: str
    alert: str | None
    frames: int
    frame_errors: int
    frames_lost: int
    tm_coding: str
    rs_corrected_symbols: int  # symbols the Reed-Solomon decoder corrected (ICD 6a)
    rs_uncorrectable: int  # codeblocks it could not correct (also in frame_errors)
    packets: int
    packet_errors: int
    commands: int
    queued: int
    clients: int
    refusals: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class OwnedLink:
    """The link of one payload, owned by the ground station. Thread-safe."""

    def __init__(
        self,
        name: str,
        session: LinkSession,
        dictionary: Dictionary,
        archive: ArchiveStore | None,
        *,
        init_mode: InitMode = InitMode.AUTO,
        init_timeout: float = 10.0,
        queue_expiry_s: float = DEFAULT_QUEUE_EXPIRY_S,
        ask_dictionary: bool = False,
        recover_gaps: bool | None = None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        link_timeout_s: float = LINK_UP_S,
        recovery_timing: RecoveryTiming | None = None,
    ) -> None:
        """`init_mode`: how the AD service is first started (AUTO after that);
        `ask_dictionary`: ask the payload for its dictionary's hash when the link comes up;
        `recover_gaps`: find the gaps in the archive and have the payload send the missing
        packets again (None: as `ask_dictionary`, both being the station's own business);
        `link_timeout_s`: no frame for this long and the link is down; `recovery_timing`:
        gap recovery's waits."""
        self.name = name
        self.link_timeout_s = link_timeout_s
        # Queued commands sent once the link took them again (pass operations count them).
        self.released = 0
        self.session = session
        self.dictionary = dictionary
        self.archive = archive
        self.queue_expiry_s = queue_expiry_s
        self._ask_dictionary_hash = ask_dictionary
        self._init_mode = init_mode
        self._init_timeout = init_timeout
        self._clock = clock
        self._wall = wall
        # Lock order: self._lock, then the session's lock (submit sends under ours, so that no
        # command overtakes the queue). The session calls its sinks and listeners holding its
        # lock, so those may only take leaf locks such as _values_lock, never self._lock.
        self._lock = threading.RLock()
        self._values_lock = threading.Lock()
        self._init_lock = threading.Lock()
        self._queue = PassQueue()
        self._clients: dict[int, ClientLink] = {}
        self._stop = threading.Event()
        self._next_init_at = 0.0
        self.last_init_error: str | None = None
        self.latest: dict[str, tuple[Any, float]] = {}
        security = session.security
        self.refusals = RefusalLog(
            None if security is None else security.sa.spi,
            None if security is None else security.counter.path,
        )
        handlers = [self.refusals.on_event]
        if security is not None:
            handlers.insert(0, security.on_event)
        session.add_packet_sink(security_event_sink(dictionary, *handlers))
        # The virtual channel of the frame being taken apart: its packets' (the session calls
        # the frame sinks, then the packet sinks for the packets that frame completes).
        self._frame_vcid = TM_VCID_REALTIME
        session.add_frame_sink(self._on_frame)
        session.add_packet_sink(self._on_packet)
        self.gaps: GapRecovery | None = None
        if archive is not None:
            recover = ask_dictionary if recover_gaps is None else recover_gaps
            if recover and GapRecovery.possible(dictionary):
                self.gaps = GapRecovery(
                    name,
                    archive,
                    dictionary,
                    send=self._send_as_station,
                    takes_commands=self.takes_commands,
                    clock=clock,
                    wall=wall,
                    timing=recovery_timing,
                )
            session.add_frame_sink(archive.store_frame)
            session.add_packet_sink(self._archive_packet)
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"station-{name}", daemon=True
        )

    # -- lifetime -------------------------------------------------------------------------

    def start(self) -> OwnedLink:
        """Start the session and the supervision that keeps its AD service running."""
        self.session.start()
        self._supervisor.start()
        if self.gaps is not None:
            self.gaps.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join(2.0)
        self.session.close()
        if self.gaps is not None:
            self.gaps.close()

    def bring_up(self, mode: InitMode | None = None, timeout: float | None = None) -> LinkUp:
        """Start the AD service now (a one-off command's first step); LinkTimeout when no frame
        comes, Cop1Error when the payload does not confirm."""
        with self._init_lock:
            up = self.session.initiate(mode or self._init_mode, timeout or self._init_timeout)
            self._init_mode = InitMode.AUTO
        self._release()
        return up

    # -- clients and commands ---------------------------------------------------------------

    def client(self, name: str, source_id: int) -> ClientLink:
        """A client's end of the link, sending from `source_id` (unique among the clients)."""
        with self._lock:
            if source_id in self._clients:
                raise ValueError(f"source ID {source_id} is in use by another client")
            client = ClientLink(self, name, source_id)
            self._clients[source_id] = client
            return client

    def free_source_id(self, first: int, last: int) -> int:
        """The lowest source ID in first..last no client uses."""
        with self._lock:
            for candidate in range(first, last + 1):
                if candidate not in self._clients:
                    return candidate
        raise ValueError(f"every source ID from {first} to {last} is in use")

    def _forget(self, client: ClientLink) -> None:
        with self._lock:
            self._clients.pop(client.source_id, None)

    def submit(
        self,
        client: str,
        tc: PusTc,
        expiry_s: float | None = None,
        listeners: Sequence[CommandListener] = (),
    ) -> CommandRecord:
        """Send `tc` now if the link takes commands, else queue it until it does (or until its
        expiry); archived with every stage, each also told to `listeners`. PacketTooLong,
        LinkError as the session raises."""
        self.session.check_length(tc)
        record = CommandRecord(tc, self._clock(), listeners=list(listeners))
        name, arguments = self._describe(tc)
        history = self._record(client, tc, name, arguments)
        if history is not None:
            record.listeners.append(self._stage_recorder(history))
        with self._lock:
            if self.takes_commands() and not len(self._queue):
                try:
                    self.session.send(tc, record)
                    return record
                except Cop1Error:  # the service went down meanwhile: queued like the rest
                    pass
            expiry = self.queue_expiry_s if expiry_s is None else expiry_s
            self._queue.add(QueuedCommand(tc, record, client, self._wall(), self._clock() + expiry))
            record._add(self._event(EventKind.QUEUED, "link down"))
        return record

    def queued(self) -> list[QueuedCommand]:
        """The commands waiting for the link, oldest first."""
        with self._lock:
            return self._queue.items()

    def cancel(self, request_id: RequestId) -> bool:
        """Drop a queued command; False when it is not waiting (sent, expired, unknown)."""
        with self._lock:
            item = self._queue.cancel(request_id)
        if item is None:
            return False
        item.record._add(self._event(EventKind.DROPPED, "cancelled in the queue"))
        return True

    # -- state --------------------------------------------------------------------------------

    def state(self) -> LinkState:
        session = self.session
        now = self._clock()
        age = None if session.last_frame_at is None else max(0.0, now - session.last_frame_at)
        sync, demux = session.sync.stats, session.demux.stats
        fop = session.fop
        if session.error is not None:
            cop1 = f"port failed: {session.error}"
        elif session.active:
            cop1 = "active" if fop.state is FopState.ACTIVE else f"S{int(fop.state)}"
        else:
            cop1 = "initial"
        with self._lock:
            queued, clients = len(self._queue), len(self._clients)
        return LinkState(
            payload=self.name,
            port=str(getattr(session.port, "name", session.port)),
            up=age is not None and age < self.link_timeout_s and session.error is None,
            last_frame_age=age,
            clcw=None if session.last_clcw is None else str(session.last_clcw),
            cop1=cop1,
            alert=fop.last_alert.value if fop.last_alert else self.last_init_error,
            frames=sync.frames,
            frame_errors=sync.fecf_errors
            + sync.header_errors
            + sync.scid_errors
            + sync.rs_uncorrectable,
            frames_lost=demux.frame_gaps,
            tm_coding=session.params.tm_coding.value,
            rs_corrected_symbols=sync.rs_corrected_symbols,
            rs_uncorrectable=sync.rs_uncorrectable,
            packets=session.stats.tm_packets,
            packet_errors=session.stats.tm_packet_errors,
            commands=session.stats.commands_sent,
            queued=queued,
            clients=clients,
            refusals=self.refusals.explain(),
        )

    def value(self, parameter: str) -> tuple[Any, float] | None:
        """The latest housekeeping value of `parameter` and when (UNIX time) it arrived."""
        with self._values_lock:
            return self.latest.get(parameter)

    # -- internals ------------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stop.wait(SUPERVISE_S):
            try:
                self._supervise_once()
            except Exception:  # supervision must outlive any one failure
                log.exception("link supervision of %s failed", self.name)

    def _supervise_once(self) -> None:
        now = self._clock()
        with self._lock:
            expired = self._queue.expire(now)
        for item in expired:
            waited = self._wall() - item.queued_at
            reason = f"expired in the queue: the link was not up for {waited:.0f} s"
            item.record._add(self._event(EventKind.DROPPED, reason))
        session = self.session
        if session.error is not None:
            return
        if session.active:
            if self._link_up():
                self._release()
            return
        if not self._link_up() or now < self._next_init_at:
            return
        if not self._init_lock.acquire(blocking=False):
            return
        try:
            session.initiate(self._init_mode, self._init_timeout)
        except (LinkTimeout, Cop1Error, LinkError) as exc:
            self.last_init_error = str(exc)
            self._next_init_at = self._clock() + RETRY_INIT_S
            log.warning("%s: COP-1 not started: %s", self.name, exc)
            return
        finally:
            self._init_lock.release()
        self._init_mode = InitMode.AUTO
        self.last_init_error = None
        log.info("%s: COP-1 active again", self.name)
        self._release()
        self._ask_dictionary()

    def _link_up(self) -> bool:
        """Frames arrive: the payload hears us, and will answer."""
        last = self.session.last_frame_at
        return last is not None and self._clock() - last < self.link_timeout_s

    def takes_commands(self) -> bool:
        """Whether a command sent now goes out (the link is up and COP-1 active)."""
        # While frames stop coming a command goes into the queue, not into FOP-1's
        # retransmissions: the operator sees it waiting, can cancel it, and it has an expiry.
        return self.session.active and self._link_up()

    def _release(self) -> None:
        """Send the queued commands, in order, while the link takes them."""
        with self._lock:
            items = self._queue.take_all()
            for n, item in enumerate(items):
                try:
                    self.session.send(item.tc, item.record)
                except Cop1Error:
                    for rest in items[n:]:
                        self._queue.add(rest)
                    return
                self.released += 1

    def _event(self, kind: EventKind, reason: str) -> CommandEvent:
        return CommandEvent(kind, self._clock(), self.session.arrival(), reason=reason)

    def _on_frame(self, frame: TmFrame, when: float) -> None:
        self._frame_vcid = frame.vcid
        if self.gaps is not None:
            self.gaps.on_frame(frame.vcid, frame.vc_count)

    def _archive_packet(self, tm: PusTm, raw: bytes, when: float) -> None:
        assert self.archive is not None
        self.archive.store(tm, raw, when, self._frame_vcid)
        if self.gaps is not None:
            self.gaps.on_packet(tm, self._frame_vcid)

    def _send_as_station(self, service: int, subtype: int, data: bytes) -> CommandRecord:
        return self.submit("ground station", self.session.build(service, subtype, data))

    def _on_packet(self, tm: PusTm, raw: bytes, when: float) -> None:
        # Housekeeping and parameter reports give the latest values; the payload's start event
        # gives its dictionary (a restarted payload may run another). Not those retrieved from
        # its packet store (VC 1): they are old.
        if tm.service not in LATEST_VALUE_SERVICES or self._frame_vcid != TM_VCID_REALTIME:
            return
        try:
            decoded = self.dictionary.decode_tm(tm.service, tm.subtype, tm.source_data)
        except (CodecError, UnknownName):
            return
        with self._values_lock:
            for name, value in decoded.parameters.items():
                self.latest[name] = (value, when)
            if decoded.name == STARTED_EVENT:
                self.latest[HASH_PARAMETER] = (decoded.values["dictionary_hash"], when)

    def _ask_dictionary(self) -> None:
        """Have the payload report its dictionary's hash, once, as the link comes up: clients
        then check theirs against it without a round trip of their own."""
        if not self._ask_dictionary_hash or self.value(HASH_PARAMETER) is not None:
            return
        command = self.dictionary.command("PARAM_REPORT")
        parameter = self.dictionary.parameter(HASH_PARAMETER)
        tc = self.session.build(
            command.service, command.subtype, command.encode({"ids": [parameter.id]})
        )
        try:
            self.submit("ground station", tc)
        except LinkError as exc:
            log.warning("%s: dictionary not asked for: %s", self.name, exc)

    def _describe(self, tc: PusTc) -> tuple[str, str]:
        command = self.dictionary.command_for(tc.service, tc.subtype)
        if command is None:
            return f"TC[{tc.service},{tc.subtype}]", tc.app_data.hex()[:ARGUMENTS_TEXT_MAX]
        try:
            text = command.layout.to_text(command.decode(tc.app_data))
        except (CodecError, ValueError):
            text = tc.app_data.hex()
        if len(text) > ARGUMENTS_TEXT_MAX:
            text = text[: ARGUMENTS_TEXT_MAX - 3] + "..."
        return command.name, text

    def _record(self, client: str, tc: PusTc, name: str, arguments: str) -> int | None:
        if self.archive is None:
            return None
        try:
            return self.archive.record_command(self._wall(), client, tc, name, arguments, "sent")
        except ArchiveError as exc:  # the command goes out all the same
            log.error("%s", exc)
            return None

    def _stage_recorder(self, command_id: int) -> Callable[[CommandRecord, CommandEvent], None]:
        archive = self.archive
        assert archive is not None
        wall = self._wall

        def record(_: CommandRecord, event: CommandEvent) -> None:
            stage, detail, outcome = describe_event(event, self.dictionary)
            archive.record_stage(command_id, wall(), stage, detail, outcome)

        return record


def outcome_state(outcome: str) -> str:
    """The state an outcome text names: queued, sent, completed, failed or dropped."""
    return outcome.split(":")[0].split(" ")[0]


def describe_event(event: CommandEvent, dictionary: Dictionary) -> tuple[str, str, str | None]:
    """(stage, detail, the command's outcome when this event settles or changes it)."""
    if event.kind is EventKind.QUEUED:
        return "queued", event.reason, "queued"
    if event.kind is EventKind.FRAME_ACKNOWLEDGED:
        return "frame acknowledged", "", "sent"
    if event.kind is EventKind.DROPPED:
        return "dropped", event.reason, f"dropped: {event.reason}"
    report = event.report
    assert report is not None
    stage = report.stage.name.lower()
    if report.success:
        step = f" step {report.step}" if report.stage is Stage.PROGRESS else ""
        return stage + step, "", "completed" if report.stage is Stage.COMPLETION else None
    detail = describe_failure(dictionary, report)
    return f"{stage} failed", detail, f"failed at {stage}: {detail}"


class ClientLink:
    """A client's end of an owned link (what `transfer.PayloadLink` needs): commands from its
    own source ID, and only the TM addressed to it or to everyone."""

    def __init__(self, owner: OwnedLink, name: str, source_id: int) -> None:
        self.owner = owner
        self.name = name
        self.source_id = source_id
        self._handles: list[object] = []

    @property
    def error(self) -> BaseException | None:
        return self.owner.session.error

    @property
    def max_packet_octets(self) -> int:
        return self.owner.session.max_packet_octets

    def command(
        self,
        service: int,
        subtype: int,
        data: bytes = b"",
        ack: AckFlags = AckFlags.ALL,
        listeners: Sequence[CommandListener] = (),
    ) -> CommandRecord:
        tc = self.owner.session.build(service, subtype, data, ack, source_id=self.source_id)
        return self.owner.submit(self.name, tc, listeners=listeners)

    def subscribe(self) -> queue.Queue[ReceivedTm]:
        q: queue.Queue[ReceivedTm] = queue.Queue()
        self.listen(q.put, key=q)
        return q

    def listen(self, deliver: TmListener, key: object = None) -> object:
        """Call `deliver` with every TM packet for this client (on the receiving thread)."""
        mine = self.source_id

        def for_me(tm: PusTm) -> bool:
            return tm.service != VERIFICATION_SERVICE and tm.destination_id in (0, mine)

        handle = self.owner.session.listen(deliver, for_me, key)
        self._handles.append(handle)
        return handle

    def unsubscribe(self, handle: object) -> None:
        self.owner.session.unsubscribe(handle)
        if handle in self._handles:
            self._handles.remove(handle)

    def link_state(self) -> dict[str, Any]:
        """The link's state (LinkState as JSON)."""
        return self.owner.state().to_json()

    def close(self) -> None:
        for handle in list(self._handles):
            self.unsubscribe(handle)
        self.owner._forget(self)
