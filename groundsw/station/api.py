"""The ground station's HTTP + WebSocket API (FastAPI; its OpenAPI document is
docs/ground-api.json). Scripts in any language send dictionary commands and follow them over
HTTP; `groundsw` itself is a client of the WebSocket link endpoint, which carries raw TCs out
and every stage and TM packet for that client back (the protocol is in `link_protocol`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Query, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field

from groundsw.archive import ArchiveError, ArchiveStore
from groundsw.session import CommandEvent, CommandRecord, PacketTooLong, ReceivedTm
from groundsw.station import link_protocol as wire
from groundsw.station.feeds import feed_websocket
from groundsw.station.http_lookup import link_or_404
from groundsw.station.owned_link import ClientLink, OwnedLink, describe_event, outcome_state
from groundsw.station.passes_api import add_pass_routes
from groundsw.station.station import (
    FIRST_CLIENT_SOURCE_ID,
    LAST_CLIENT_SOURCE_ID,
    Station,
)
from groundsw.station.transfers_api import add_transfer_routes
from groundsw.timespec import TimeSpecError, parse_time
from spacelink.errors import LinkError
from spacelink.spacepacket import PusTm, RequestId
from telemetry_defs.model import CodecError, UnknownName
from telemetry_defs.valuetypes import DictionaryValueError

log = logging.getLogger(__name__)

_T = TypeVar("_T")

API_VERSION = "1"
PREFIX = f"/api/v{API_VERSION}"
RECENT_COMMANDS = 10_000
# The first two octets of a TC's request ID (version 0, type TC, secondary header) before the
# APID, and the sequence flags of an unsegmented packet before the count.
_TC_WORD0 = 0x1800
_UNSEGMENTED = 0xC000
MAX_WAIT_S = 60.0
STOP_CHECK_S = 0.2


class CommandRequest(BaseModel):
    """A dictionary command by name, with its arguments as operators write them."""

    command: str = Field(description="The dictionary command's name, e.g. HK_GENERATE.")
    arguments: list[str] = Field(
        default_factory=list,
        description="key=value pairs as on groundsw's command line (PARAM_SET: NAME=VALUE).",
    )
    client: str = Field(default="http", description="Who sends: kept in the command history.")
    expires_in: float | None = Field(
        default=None, gt=0, description="Seconds a command may wait for the link (default 600)."
    )


class Stage(BaseModel):
    at: float = Field(description="UNIX time.")
    stage: str
    detail: str


class Reply(BaseModel):
    name: str | None
    values: dict[str, Any] | None
    raw: str = Field(description="The TM packet, hex.")


class CommandStatus(BaseModel):
    request: str = Field(description="The request ID: APID:sequence count.")
    command: str
    state: str = Field(description="queued, sent, completed, failed or dropped.")
    stages: list[Stage]
    replies: list[Reply]


class QueuedItem(BaseModel):
    request: str
    command: str
    client: str
    queued_at: float


class HistoryStage(BaseModel):
    at: float
    stage: str
    detail: str


class HistoryItem(BaseModel):
    submitted_at: float
    client: str
    request: str
    command: str
    arguments: str
    outcome: str
    stages: list[HistoryStage]


class EventItem(BaseModel):
    received_at: float
    onboard_time: float | None
    name: str
    severity: int
    text: str


class SampleItem(BaseModel):
    received_at: float
    onboard_time: float | None
    raw: Any
    engineering: float | None
    limit_state: str


class _Tracked:
    """A command sent over HTTP: its record and the replies addressed to its sender while it
    was open."""

    def __init__(self, record: CommandRecord, name: str) -> None:
        self.record = record
        self.name = name
        self.replies: list[PusTm] = []


def create_app(station: Station) -> FastAPI:
    """The API on `station`'s links."""
    app = FastAPI(
        title="groundsw ground station",
        version=API_VERSION,
        description=(
            "One ground station owns each payload's link (FOP-1, archive, command history) and "
            "serves any number of clients. Commands go out in order; while a link is down they "
            "wait in its queue until they expire."
        ),
    )
    http_clients: dict[tuple[str, str], ClientLink] = {}
    tracked: OrderedDict[tuple[str, str], _Tracked] = OrderedDict()
    lock = threading.Lock()

    def owned(name: str) -> OwnedLink:
        return link_or_404(station, name)

    def archived(name: str, query: Callable[[ArchiveStore], _T]) -> _T:
        """A query on payload `name`'s archive; a bad time or name, or an archive that cannot
        be read, is HTTP 422 with its sentence."""
        link = owned(name)
        assert link.archive is not None
        try:
            return query(link.archive)
        except (TimeSpecError, ArchiveError, UnknownName) as exc:
            raise HTTPException(422, str(exc)) from None

    def http_client(link: OwnedLink, name: str) -> ClientLink:
        with lock:
            client = http_clients.get((link.name, name))
            if client is None:
                source_id = link.free_source_id(FIRST_CLIENT_SOURCE_ID, LAST_CLIENT_SOURCE_ID)
                client = link.client(name, source_id)
                client.listen(lambda item: on_reply(link.name, client, item))
                http_clients[(link.name, name)] = client
            return client

    def on_reply(payload: str, client: ClientLink, item: ReceivedTm) -> None:
        if item.tm.destination_id != client.source_id:
            return
        with lock:
            for (p, _), entry in tracked.items():
                record = entry.record
                mine = p == payload and record.tc.source_id == client.source_id
                if mine and not record.finished.is_set():
                    entry.replies.append(item.tm)

    def status(link: OwnedLink, entry: _Tracked) -> CommandStatus:
        stages = []
        state = "sent"
        to_wall = time.time() - time.monotonic()  # the link's clock is the monotonic one
        for event in list(entry.record.history):
            stage, detail, outcome = describe_event(event, link.dictionary)
            stages.append(Stage(at=event.at + to_wall, stage=stage, detail=detail))
            if outcome is not None:
                state = outcome_state(outcome)
        replies = [reply(link, tm) for tm in list(entry.replies)]
        return CommandStatus(
            request=request_text(entry.record.request_id),
            command=entry.name,
            state=state,
            stages=stages,
            replies=replies,
        )

    @app.get(f"{PREFIX}/payloads", summary="Every payload: link state, mode, jobs")
    def payloads() -> list[dict[str, Any]]:
        return [station.summary(name).to_json() for name in station.links]

    @app.get(f"{PREFIX}/payloads/{{name}}", summary="One payload: link state, mode, jobs")
    def payload(name: str) -> dict[str, Any]:
        owned(name)
        return station.summary(name).to_json()

    @app.post(
        f"{PREFIX}/payloads/{{name}}/commands",
        summary="Send a dictionary command (queued while the link is down)",
        status_code=202,
    )
    def send_command(name: str, request: CommandRequest) -> CommandStatus:
        link = owned(name)
        try:
            command, data = link.dictionary.command_from_text(request.command, request.arguments)
        except (UnknownName, DictionaryValueError, CodecError) as exc:
            raise HTTPException(422, str(exc)) from None
        client = http_client(link, request.client)
        tc = link.session.build(command.service, command.subtype, data, source_id=client.source_id)
        try:
            record = link.submit(request.client, tc, request.expires_in)
        except PacketTooLong as exc:
            raise HTTPException(422, str(exc)) from None
        except LinkError as exc:
            raise HTTPException(503, str(exc)) from None
        entry = _Tracked(record, command.name)
        with lock:
            tracked[(name, request_text(record.request_id))] = entry
            while len(tracked) > RECENT_COMMANDS:
                tracked.popitem(last=False)
        return status(link, entry)

    @app.get(
        f"{PREFIX}/payloads/{{name}}/commands/{{request}}",
        summary="A command's stages and replies; waits up to `wait` seconds for its end",
    )
    def command_status(
        name: str, request: str, wait: float = Query(0.0, ge=0, le=MAX_WAIT_S)
    ) -> CommandStatus:
        link = owned(name)
        with lock:
            entry = tracked.get((name, request))
        if entry is None:
            raise HTTPException(404, f"no command {request} sent over HTTP to {name} lately")
        if wait:
            wait_unless_stopping(entry.record.finished, wait, station.stopping)
        return status(link, entry)

    @app.get(f"{PREFIX}/payloads/{{name}}/queue", summary="Commands waiting for the link")
    def queue(name: str) -> list[QueuedItem]:
        link = owned(name)
        return [
            QueuedItem(
                request=request_text(item.request_id),
                command=describe_tc(link, item.tc.service, item.tc.subtype),
                client=item.client,
                queued_at=item.queued_at,
            )
            for item in link.queued()
        ]

    @app.delete(
        f"{PREFIX}/payloads/{{name}}/queue/{{request}}",
        summary="Cancel a command waiting for the link",
        status_code=204,
    )
    def cancel(name: str, request: str) -> None:
        link = owned(name)
        try:
            request_id = parse_request(request)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if not link.cancel(request_id):
            raise HTTPException(404, f"command {request} is not waiting in the queue")

    @app.get(f"{PREFIX}/payloads/{{name}}/history", summary="Commands sent, with their stages")
    def history(name: str, since: str = "1h", limit: int = Query(0, ge=0)) -> list[HistoryItem]:
        commands = archived(name, lambda a: a.commands(parse_time(since, time.time()), limit))
        return [
            HistoryItem(
                submitted_at=c.submitted_at,
                client=c.client,
                request=c.request,
                command=c.name,
                arguments=c.arguments,
                outcome=c.outcome,
                stages=[HistoryStage(at=s.at, stage=s.stage, detail=s.detail) for s in c.stages],
            )
            for c in commands
        ]

    @app.get(f"{PREFIX}/payloads/{{name}}/events", summary="Archived events")
    def events(
        name: str, since: str = "1h", severity: int = Query(1, ge=1, le=4)
    ) -> list[EventItem]:
        records = archived(name, lambda a: a.events(parse_time(since, time.time()), severity))
        return [
            EventItem(
                received_at=e.received_at,
                onboard_time=e.onboard_time,
                name=e.name,
                severity=e.severity,
                text=e.text,
            )
            for e in records
        ]

    @app.get(
        f"{PREFIX}/payloads/{{name}}/parameters/{{parameter}}",
        summary="A parameter's archived values",
    )
    def parameter(name: str, parameter: str, since: str = "1h") -> list[SampleItem]:
        samples = archived(
            name, lambda a: a.parameter_samples(parameter, parse_time(since, time.time()))
        )
        return [
            SampleItem(
                received_at=s.received_at,
                onboard_time=s.onboard_time,
                raw=s.raw,
                engineering=s.engineering,
                limit_state=s.limit_state,
            )
            for s in samples
        ]

    @app.websocket(f"{PREFIX}/payloads/{{name}}/link")
    async def link_socket(websocket: WebSocket, name: str, client: str = "websocket") -> None:
        """A client's end of the link: raw TCs in, their stages and the TM for it out."""
        link = await accept_for(websocket, name)
        if link is not None:
            await serve_link_client(websocket, link, client)

    @app.websocket(f"{PREFIX}/payloads/{{name}}/telemetry")
    async def telemetry_socket(websocket: WebSocket, name: str) -> None:
        """Live telemetry for scripts: every packet sent to everyone (housekeeping, events,
        reports), decoded, as it arrives."""
        link = await accept_for(websocket, name)
        if link is not None:
            await stream_telemetry(websocket, link)

    async def accept_for(websocket: WebSocket, name: str) -> OwnedLink | None:
        """The payload's link, the socket accepted; None, the socket closed with 4404, when
        the station has no such payload."""
        try:
            link = station.link(name)
        except KeyError:
            await websocket.close(code=4404, reason=f"no payload named {name!r}")
            return None
        await websocket.accept()
        return link

    @app.websocket(f"{PREFIX}/payloads/{{name}}/commands/{{request}}/stages")
    async def stages_socket(websocket: WebSocket, name: str, request: str) -> None:
        """A command's stages as they happen (one JSON object each); closed at its end."""
        with lock:
            entry = tracked.get((name, request))
        if entry is None:
            await websocket.close(code=4404, reason=f"no command {request} sent to {name} lately")
            return
        await websocket.accept()
        link = station.link(name)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[CommandEvent | None] = asyncio.Queue()
        record = entry.record

        def forward(_: CommandRecord, event: CommandEvent) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        record.listeners.append(forward)
        for event in list(record.history):  # what came before: may be forwarded twice
            events.put_nowait(event)
        to_wall = time.time() - time.monotonic()
        sent: set[int] = set()

        async def send(event: CommandEvent) -> bool:
            if id(event) in sent:
                return False
            sent.add(id(event))
            stage, detail, outcome = describe_event(event, link.dictionary)
            state = None if outcome is None else outcome_state(outcome)
            await websocket.send_json(
                {"at": event.at + to_wall, "stage": stage, "detail": detail, "state": state}
            )
            return state in ("completed", "failed", "dropped")

        try:
            await feed_websocket(websocket, events, send)
        finally:
            record.listeners.remove(forward)

    add_transfer_routes(app, station)
    add_pass_routes(app, station)
    return app


async def stream_telemetry(websocket: WebSocket, link: OwnedLink) -> None:
    """Every packet for everyone, decoded, until the client goes."""
    loop = asyncio.get_running_loop()
    packets: asyncio.Queue[ReceivedTm | None] = asyncio.Queue()
    client = link.client(
        "telemetry socket", link.free_source_id(FIRST_CLIENT_SOURCE_ID, LAST_CLIENT_SOURCE_ID)
    )

    def deliver(item: ReceivedTm) -> None:  # on the link's thread
        loop.call_soon_threadsafe(packets.put_nowait, item)

    client.listen(deliver)
    to_wall = time.time() - time.monotonic()

    async def send(item: ReceivedTm) -> bool:
        tm = item.tm
        if tm.destination_id != 0:
            return False
        message = reply(link, tm).model_dump()
        message.update(
            received_at=item.received_at + to_wall,
            onboard_time=tm.time.to_unix(),
            service=tm.service,
            subtype=tm.subtype,
            vcid=item.vcid,  # 1: bulk data, or a packet retrieved from the payload's store
        )
        await websocket.send_json(message)
        return False

    try:
        await feed_websocket(websocket, packets, send)
    finally:
        client.close()


async def serve_link_client(websocket: WebSocket, link: OwnedLink, name: str) -> None:
    """Run one client's link socket until it closes (link_protocol)."""
    loop = asyncio.get_running_loop()
    outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def post(message: dict[str, Any]) -> None:  # from the link's threads
        # The client may be gone and its loop closed while a report was on its way.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(outbox.put_nowait, message)

    source_id = link.free_source_id(FIRST_CLIENT_SOURCE_ID, LAST_CLIENT_SOURCE_ID)
    client = link.client(name, source_id)
    client.listen(lambda item: post(wire.tm_message(item)))

    def forward(record: CommandRecord, event: CommandEvent) -> None:
        post(wire.event_message(record.request_id, event))

    async def send_loop() -> None:
        while True:
            message = await outbox.get()
            if message is None:
                return
            await websocket.send_json(message)

    sender = asyncio.create_task(send_loop())
    try:
        await websocket.send_json(wire.hello_message(link.name, client))
        while True:
            op = await websocket.receive_json()
            if op.get("op") != "command":
                post(wire.refused_message(op.get("tag"), "unknown operation"))
                continue
            try:
                service, subtype, data, ack = wire.parse_command(op)
                record = await asyncio.to_thread(
                    client.command, service, subtype, data, ack, [forward]
                )
            except (ValueError, PacketTooLong, LinkError) as exc:
                post(wire.refused_message(op.get("tag"), str(exc)))
                continue
            post(wire.submitted_message(op.get("tag"), record))
    except WebSocketDisconnect:
        pass
    finally:
        client.close()
        outbox.put_nowait(None)
        await sender


def wait_unless_stopping(done: threading.Event, seconds: float, stopping: threading.Event) -> None:
    """Wait up to `seconds` for `done`, but not past the station's stop (a thread blocked
    here would hold the stop up for as long)."""
    deadline = time.monotonic() + seconds
    while not stopping.is_set() and (left := deadline - time.monotonic()) > 0:
        if done.wait(min(left, STOP_CHECK_S)):
            return


def request_text(request_id: RequestId) -> str:
    return f"{request_id.apid}:{request_id.seq_count}"


def parse_request(text: str) -> RequestId:
    """The request ID of a TC "APID:SEQ" names (unsegmented, as the station sends); ValueError
    otherwise."""
    apid, sep, seq = text.partition(":")
    if not sep or not apid.isdigit() or not seq.isdigit() or int(apid) > 0x7FF or int(seq) > 0x3FFF:
        raise ValueError(f"request {text!r}: expected APID:SEQUENCE_COUNT, e.g. 100:1234")
    return RequestId(_TC_WORD0 | int(apid), _UNSEGMENTED | int(seq))


def describe_tc(link: OwnedLink, service: int, subtype: int) -> str:
    command = link.dictionary.command_for(service, subtype)
    return command.name if command else f"TC[{service},{subtype}]"


def reply(link: OwnedLink, tm: PusTm) -> Reply:
    try:
        decoded = link.dictionary.decode_tm(tm.service, tm.subtype, tm.source_data)
    except (CodecError, UnknownName):
        return Reply(name=None, values=None, raw=tm.pack().hex())
    return Reply(name=decoded.name, values=wire.json_values(decoded.values), raw=tm.pack().hex())
