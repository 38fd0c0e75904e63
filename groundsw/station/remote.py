"""A client's end of a link the ground station owns in another process (`groundsw serve`): what
commands, transfers and views need of a link (`session.PayloadLink`), over the station's link
socket (`link_protocol`). Commands get records whose events arrive live, as on a session."""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect, unix_connect

from groundsw.session import CommandEvent, CommandRecord, ReceivedTm, TmListener
from groundsw.station import link_protocol as wire
from spacelink.errors import LinkError, PacketError
from spacelink.spacepacket import AckFlags, PusTm, RequestId

log = logging.getLogger(__name__)

SUBMIT_TIMEOUT_S = 10.0
RECONNECT_S = 1.0


class StationUnavailable(LinkError):
    """The ground station cannot be reached, or closed the link socket; one sentence."""


class RefusedByStation(LinkError):
    """The station refused to send a command (too long for a frame, the port failed...)."""


# A client that leaves (a command done, Ctrl-C on a --follow) waits this long at most for the
# station's answer to its closing handshake, not the library's 10 s: the station has nothing
# more to say to it.
CLOSE_TIMEOUT_S = 1.0


class ServiceLink:
    """This process's end of payload `payload`'s link at the station at `base_url` (or its
    Unix socket). Thread-safe."""

    def __init__(
        self,
        base_url: str,
        payload: str,
        client: str,
        unix_socket: Path | None = None,
        timeout: float = 10.0,
        reconnect: bool = True,
    ) -> None:
        """StationUnavailable when the station cannot be reached. `reconnect`: after the
        station goes away (a restart), connect again, every second, until closed; commands
        meanwhile raise StationUnavailable."""
        url = base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self._uri = f"{url}/api/v1/payloads/{quote(payload)}/link?client={quote(client)}"
        self._where = str(unix_socket) if unix_socket else base_url
        self._timeout = timeout
        self._reconnect = reconnect
        self.payload = payload
        self.base_url = base_url
        self.unix_socket = unix_socket
        self.error: BaseException | None = None
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._tags = itertools.count(1)
        self._order = itertools.count()
        self._waiting: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._records: dict[RequestId, CommandRecord] = {}
        # Events of a command that came before the station said it was submitted (queued).
        self._early: defaultdict[RequestId, list[CommandEvent]] = defaultdict(list)
        self._listeners: dict[object, TmListener] = {}
        self._stack = contextlib.ExitStack()
        self._ws = self._connect()
        self._reader = threading.Thread(target=self._read_loop, name="station-link", daemon=True)
        self._reader.start()

    def _connect(self) -> ClientConnection:
        """Open the link socket and read the station's greeting (this client's source ID)."""
        stack = contextlib.ExitStack()
        try:
            if self.unix_socket is not None:
                opening = unix_connect(
                    str(self.unix_socket),
                    self._uri,
                    open_timeout=self._timeout,
                    close_timeout=CLOSE_TIMEOUT_S,
                    max_size=None,
                )
            else:
                opening = connect(
                    self._uri,
                    open_timeout=self._timeout,
                    close_timeout=CLOSE_TIMEOUT_S,
                    max_size=None,
                )
            ws = stack.enter_context(opening)
            message = wire.decode_message(ws.recv(self._timeout))
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError, ConnectionClosed) as exc:
            stack.close()
            raise StationUnavailable(
                f"cannot reach the ground station at {self._where}: {exc}"
            ) from None
        if message.get("type") != "hello":
            stack.close()
            raise StationUnavailable(
                f"the ground station at {self._where} did not greet: {message}"
            )
        self.source_id = int(message["source_id"])
        self._max_packet_octets = int(message["max_packet_octets"])
        self._stack = stack
        return ws

    @property
    def max_packet_octets(self) -> int:
        return self._max_packet_octets

    def command(
        self, service: int, subtype: int, data: bytes = b"", ack: AckFlags = AckFlags.ALL
    ) -> CommandRecord:
        """Have the station send (or queue) a TC; its record, events arriving live."""
        if self.error is not None:
            raise StationUnavailable(f"the ground station's link socket failed: {self.error}")
        tag = next(self._tags)
        answer: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._waiting[tag] = answer
        try:
            self._send(wire.command_message(tag, service, subtype, data, ack))
            try:
                message = answer.get(timeout=SUBMIT_TIMEOUT_S)
            except queue.Empty:
                raise StationUnavailable(
                    f"the ground station did not take TC[{service},{subtype}] within "
                    f"{SUBMIT_TIMEOUT_S:g} s"
                ) from None
        finally:
            with self._lock:
                self._waiting.pop(tag, None)
        if message["type"] == "refused":
            raise RefusedByStation(str(message.get("error")))
        if message["type"] == "closed":
            raise StationUnavailable(f"the ground station closed the link socket: {self.error}")
        record = CommandRecord(wire.parse_packet(message), time.monotonic())
        with self._lock:
            self._records[record.request_id] = record
            early = self._early.pop(record.request_id, [])
        for event in early:
            record._add(event)
        return record

    def subscribe(self) -> queue.Queue[ReceivedTm]:
        q: queue.Queue[ReceivedTm] = queue.Queue()
        with self._lock:
            self._listeners[q] = q.put
        return q

    def listen(self, deliver: TmListener) -> object:
        handle = object()
        with self._lock:
            self._listeners[handle] = deliver
        return handle

    def unsubscribe(self, handle: object) -> None:
        with self._lock:
            self._listeners.pop(handle, None)

    def link_state(self) -> dict[str, Any] | None:
        """The station's view of the link (LinkState as JSON); None when it does not answer."""
        transport = httpx.HTTPTransport(uds=str(self.unix_socket)) if self.unix_socket else None
        try:
            with httpx.Client(base_url=self.base_url, transport=transport, timeout=2.0) as http:
                answer = http.get(f"/api/v1/payloads/{quote(self.payload)}")
                answer.raise_for_status()
                state = answer.json()["link"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        return dict(state)

    def close(self) -> None:
        self._closed.set()
        self._stack.close()
        self._reader.join(2.0)

    # -- internals --------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        try:
            with self._send_lock:
                self._ws.send(wire.encode_message(message))
        except (ConnectionClosed, OSError) as exc:
            self.error = exc
            raise StationUnavailable(f"the ground station's link socket failed: {exc}") from None

    def _read_loop(self) -> None:
        while True:
            try:
                for text in self._ws:
                    self._dispatch(wire.decode_message(text))
            except (ConnectionClosed, OSError) as exc:
                self.error = exc
            else:
                self.error = StationUnavailable("the ground station closed the link socket")
            with self._lock:
                waiting = list(self._waiting.values())
            for answer in waiting:
                answer.put({"type": "closed"})
            if not self._reconnect or not self._back():
                return

    def _back(self) -> bool:
        """Connect again once the station is back; False when closed meanwhile."""
        while not self._closed.wait(RECONNECT_S):
            try:
                ws = self._connect()
            except StationUnavailable:
                continue
            with self._send_lock:
                self._ws = ws
            log.warning("link socket to the ground station open again")
            self.error = None
            return True
        return False

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in ("submitted", "refused"):
            with self._lock:
                answer = self._waiting.get(message.get("tag", -1))
            if answer is not None:
                answer.put(message)
        elif kind == "event":
            try:
                request_id, event = wire.parse_event(message, time.monotonic(), next(self._order))
            except (KeyError, ValueError, PacketError) as exc:
                log.error("event from the ground station not understood: %s", exc)
                return
            with self._lock:
                record = self._records.get(request_id)
                if record is None:
                    self._early[request_id].append(event)
                    return
            record._add(event)
        elif kind == "tm":
            raw = bytes.fromhex(message["raw"])
            try:
                tm = PusTm.unpack(raw)
            except PacketError as exc:
                log.error("TM from the ground station not understood: %s", exc)
                return
            vcid = int(message.get("vcid", 0))
            item = ReceivedTm(tm, raw, time.monotonic(), next(self._order), vcid)
            with self._lock:
                listeners = list(self._listeners.values())
            for deliver in listeners:
                deliver(item)
