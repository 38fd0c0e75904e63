"""The HIL test API: command the payload and assert on what comes back, as F Prime's
integration-test API does.

Every TM packet and every command sent is kept in a history. Waits end at the first match or
raise `TestApiError` (an AssertionError) that says what was expected and lists what arrived.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from groundsw.session import CommandEvent, CommandRecord, EventKind, LinkSession, ReceivedTm
from spacelink.pus import EVENT_SERVICE, Stage, VerificationReport, failure_name
from spacelink.spacepacket import AckFlags, PusTm
from telemetry_defs.loader import default_dictionary
from telemetry_defs.model import CodecError, DecodedTm, Dictionary, UnknownName

_STAGE_FLAGS = (
    (Stage.ACCEPTANCE, AckFlags.ACCEPTANCE),
    (Stage.START, AckFlags.START),
    (Stage.COMPLETION, AckFlags.COMPLETION),
)


class TestApiError(AssertionError):
    """An expectation of a HIL test that the payload did not meet."""

    __test__ = False  # not a pytest test class


def describe_event(event: CommandEvent, t0: float) -> str:
    at = f"+{event.at - t0:.3f} s"
    if event.kind is EventKind.REPORT and event.report is not None:
        r = event.report
        if r.success:
            return f"{r.stage.name.lower()} ok {at}"
        code = r.failure_code or 0
        return f"{r.stage.name.lower()} FAILED code {code} ({failure_name(code)}) {at}"
    if event.kind is EventKind.DROPPED:
        return f"dropped ({event.reason}) {at}"
    return f"{event.kind.value} {at}"


def describe_tm(tm: PusTm) -> str:
    return f"TM[{tm.service},{tm.subtype}]"


def _summarise(items: Iterable[ReceivedTm], limit: int = 12) -> str:
    names: list[str] = []
    counts: dict[str, int] = {}
    for item in items:
        name = describe_tm(item.tm)
        if name not in counts:
            names.append(name)
        counts[name] = counts.get(name, 0) + 1
    if not names:
        return "nothing"
    shown = [f"{n} x{counts[n]}" if counts[n] > 1 else n for n in names[:limit]]
    more = f" and {len(names) - limit} more kinds" if len(names) > limit else ""
    return ", ".join(shown) + more


@dataclass(frozen=True)
class EventPacket:
    """A decoded ST[5] event report: severity is the subtype (1 informative .. 4 high)."""

    event_id: int
    severity: int
    data: bytes
    received: ReceivedTm


class GroundTestApi:
    """Commands and telemetry assertions over one ground session."""

    __test__ = False

    def __init__(
        self,
        session: LinkSession,
        default_timeout: float = 15.0,
        dictionary: Dictionary | None = None,
    ) -> None:
        self.session = session
        self.default_timeout = default_timeout
        self.dictionary = dictionary or default_dictionary()
        self._history: list[ReceivedTm] = []
        self._commands: list[CommandRecord] = []
        self._cond = threading.Condition()
        self._feed = session.subscribe()
        self._stop = threading.Event()
        self._collector = threading.Thread(target=self._collect, name="testapi", daemon=True)
        self._collector.start()

    def close(self) -> None:
        self._stop.set()
        self._collector.join(2.0)
        self.session.unsubscribe(self._feed)

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._feed.get(timeout=0.1)
            except queue.Empty:
                continue
            with self._cond:
                self._history.append(item)
                self._cond.notify_all()

    # -- histories ----------------------------------------------------------------------------

    def tm_history(
        self, service: int | None = None, subtype: int | None = None
    ) -> list[ReceivedTm]:
        """Every TM packet received (verification reports excepted), optionally of one type."""
        with self._cond:
            return [
                r
                for r in self._history
                if (service is None or r.tm.service == service)
                and (subtype is None or r.tm.subtype == subtype)
            ]

    def event_history(self) -> list[EventPacket]:
        return [_event(r) for r in self.tm_history(EVENT_SERVICE)]

    @property
    def command_history(self) -> list[CommandRecord]:
        return list(self._commands)

    def clear_histories(self) -> None:
        with self._cond:
            self._history.clear()
        self._commands.clear()

    # -- commanding ---------------------------------------------------------------------------

    def send(
        self, service: int, subtype: int, data: bytes = b"", ack: AckFlags = AckFlags.ALL
    ) -> CommandRecord:
        record = self.session.command(service, subtype, data, ack)
        self._commands.append(record)
        return record

    def send_and_assert(
        self,
        service: int,
        subtype: int,
        data: bytes = b"",
        *,
        ack: AckFlags = AckFlags.ALL,
        timeout: float | None = None,
    ) -> CommandRecord:
        """Send, then assert a success report for every stage `ack` asks for, within `timeout`."""
        record = self.send(service, subtype, data, ack)
        self.assert_stages(record, [st for st, flag in _STAGE_FLAGS if ack & flag], timeout)
        return record

    def send_expect_failure(
        self,
        service: int,
        subtype: int,
        data: bytes = b"",
        *,
        code: int,
        stage: Stage | None = None,
        timeout: float | None = None,
    ) -> VerificationReport:
        """Send, then assert that it fails with `code` (at `stage`, if given)."""
        record = self.send(service, subtype, data)
        failure = self._wait_failure(record, timeout)
        wanted = f"failure code {code} ({failure_name(code)})" + (
            f" at {stage.name.lower()}" if stage else ""
        )
        if failure is None or failure.failure_code != code or (stage and failure.stage != stage):
            raise TestApiError(
                f"expected {wanted} for {_name(record)}; received: {self._events(record)}"
            )
        return failure

    def assert_stages(
        self, record: CommandRecord, stages: Iterable[Stage], timeout: float | None = None
    ) -> None:
        """Assert a success report for each of `stages`, and no failure, within `timeout`."""
        wanted = list(stages)
        deadline = time.monotonic() + (timeout or self.default_timeout)
        while True:
            seen = {
                e.report.stage
                for e in record.history
                if e.kind is EventKind.REPORT and e.report is not None and e.report.success
            }
            if record.failure is not None or any(
                e.kind is EventKind.DROPPED for e in record.history
            ):
                break
            if all(stage in seen for stage in wanted):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            record.finished.wait(min(remaining, 0.05))
        names = ", ".join(s.name.lower() for s in wanted)
        raise TestApiError(
            f"expected {names} success for {_name(record)} within "
            f"{timeout or self.default_timeout:g} s; received: {self._events(record)}"
        )

    def assert_delivered(self, records: list[CommandRecord], timeout: float) -> None:
        """Assert that FARM-1 acknowledged every command's frame within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            missing = [r for r in records if not _acknowledged(r)]
            dropped = [r for r in missing if any(e.kind is EventKind.DROPPED for e in r.history)]
            if not missing:
                return
            if dropped or time.monotonic() > deadline:
                first = (dropped or missing)[0]
                raise TestApiError(
                    f"expected all {len(records)} frames acknowledged within {timeout:g} s; "
                    f"{len(missing)} not ({len(dropped)} dropped), first {_name(first)}: "
                    f"{self._events(first)}"
                )
            time.sleep(0.05)

    def _wait_failure(
        self, record: CommandRecord, timeout: float | None
    ) -> VerificationReport | None:
        record.finished.wait(timeout or self.default_timeout)
        return record.failure

    @staticmethod
    def _events(record: CommandRecord) -> str:
        events = [describe_event(e, record.sent_at) for e in record.history]
        return "; ".join(events) if events else "nothing"

    # -- telemetry ----------------------------------------------------------------------------

    def await_tm(
        self,
        predicate: Callable[[PusTm], bool],
        *,
        timeout: float | None = None,
        since: float | None = None,
        description: str = "a matching TM packet",
    ) -> ReceivedTm:
        """The first TM packet received after `since` (default: now) that satisfies `predicate`."""
        start = time.monotonic() if since is None else since
        deadline = time.monotonic() + (timeout or self.default_timeout)
        with self._cond:
            while True:
                for item in self._history:
                    if item.received_at >= start and predicate(item.tm):
                        return item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    arrived = [r for r in self._history if r.received_at >= start]
                    raise TestApiError(
                        f"expected {description} within {timeout or self.default_timeout:g} s;"
                        f" received: {_summarise(arrived)}"
                    )
                self._cond.wait(min(remaining, 0.1))

    def await_packet(
        self,
        service: int,
        subtype: int,
        *,
        timeout: float | None = None,
        since: float | None = None,
    ) -> ReceivedTm:
        return self.await_tm(
            lambda tm: (tm.service, tm.subtype) == (service, subtype),
            timeout=timeout,
            since=since,
            description=f"TM[{service},{subtype}]",
        )

    def await_event(
        self,
        event_id: int | None = None,
        predicate: Callable[[EventPacket], bool] | None = None,
        *,
        timeout: float | None = None,
        since: float | None = None,
    ) -> EventPacket:
        """The first ST[5] event (of `event_id`, matching `predicate`) after `since`."""

        def match(tm: PusTm) -> bool:
            if tm.service != EVENT_SERVICE or len(tm.source_data) < 2:
                return False
            event = _event(ReceivedTm(tm, b"", 0.0, 0))
            return (event_id is None or event.event_id == event_id) and (
                predicate is None or predicate(event)
            )

        what = f"event {event_id}" if event_id is not None else "an event"
        return _event(self.await_tm(match, timeout=timeout, since=since, description=what))

    def query(
        self,
        service: int,
        subtype: int,
        data: bytes,
        reply: tuple[int, int],
        *,
        attempts: int = 5,
        timeout: float | None = None,
    ) -> ReceivedTm:
        """Send a request and await its reply, asking again if the reply is lost on the way."""
        failures = []
        for _ in range(attempts):
            since = time.monotonic()
            self.send(service, subtype, data, AckFlags.NONE)
            try:
                return self.await_packet(*reply, timeout=timeout, since=since)
            except TestApiError as exc:
                failures.append(str(exc))
        raise TestApiError(
            f"no answer to TC[{service},{subtype}] in {attempts} attempts: " + failures[-1]
        )

    # -- through the dictionary ------------------------------------------------------------------

    def decode(self, item: ReceivedTm) -> DecodedTm:
        return self.dictionary.decode_tm(item.tm.service, item.tm.subtype, item.tm.source_data)

    def command(self, name: str, ack: AckFlags = AckFlags.ALL, /, **values: Any) -> CommandRecord:
        """Send a dictionary command with its arguments as keywords."""
        command = self.dictionary.command(name)
        return self.send(command.service, command.subtype, command.encode(values), ack)

    def command_and_assert(self, name: str, /, **values: Any) -> CommandRecord:
        """Send a dictionary command and assert every stage it asked for succeeded."""
        command = self.dictionary.command(name)
        return self.send_and_assert(command.service, command.subtype, command.encode(values))

    def command_expect_failure(self, name: str, code: int, /, **values: Any) -> VerificationReport:
        command = self.dictionary.command(name)
        return self.send_expect_failure(
            command.service, command.subtype, command.encode(values), code=code
        )

    def await_value(
        self,
        parameter: str,
        predicate: Callable[[Any], bool] | None = None,
        *,
        timeout: float | None = None,
        since: float | None = None,
    ) -> Any:
        """The first raw value of `parameter` (in housekeeping or TM[20,2]) after `since` that
        satisfies `predicate` (on the raw value)."""
        name = self.dictionary.parameter(parameter).name
        found: list[Any] = []

        def match(tm: PusTm) -> bool:
            try:
                decoded = self.dictionary.decode_tm(tm.service, tm.subtype, tm.source_data)
            except (CodecError, UnknownName):
                return False
            if name not in decoded.parameters:
                return False
            value = decoded.parameters[name]
            if predicate is not None and not predicate(value):
                return False
            found.append(value)
            return True

        self.await_tm(match, timeout=timeout, since=since, description=f"a value of {name}")
        return found[-1]

    def await_named_event(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        timeout: float | None = None,
        since: float | None = None,
    ) -> DecodedTm:
        """The first event `name` after `since` whose data satisfy `predicate`."""
        event = self.dictionary.event(name)
        found: list[DecodedTm] = []

        def match(tm: PusTm) -> bool:
            if tm.service != EVENT_SERVICE:
                return False
            try:
                decoded = self.dictionary.decode_tm(tm.service, tm.subtype, tm.source_data)
            except (CodecError, UnknownName):
                return False
            if decoded.name != event.name or (predicate and not predicate(decoded.values)):
                return False
            found.append(decoded)
            return True

        self.await_tm(match, timeout=timeout, since=since, description=f"event {event.name}")
        return found[-1]

    def query_command(
        self,
        name: str,
        reply: str,
        /,
        *,
        attempts: int = 5,
        timeout: float | None = None,
        **values: Any,
    ) -> DecodedTm:
        """Send dictionary command `name` and await its reply packet `reply`, decoded (asking
        again if the reply is lost)."""
        command = self.dictionary.command(name)
        packet = self.dictionary.packets[reply]
        item = self.query(
            command.service,
            command.subtype,
            command.encode(values),
            (packet.service, packet.subtype),
            attempts=attempts,
            timeout=timeout,
        )
        return self.decode(item)

    def get_parameters(self, *names: str) -> dict[str, Any]:
        """Current raw values, asked for with TC[20,1]."""
        ids = [self.dictionary.parameter(n).id for n in names]
        return self.query_command("PARAM_REPORT", "PARAM_VALUES", ids=ids).parameters


def _acknowledged(record: CommandRecord) -> bool:
    return any(e.kind is EventKind.FRAME_ACKNOWLEDGED for e in record.history)


def _event(item: ReceivedTm) -> EventPacket:
    data = item.tm.source_data
    return EventPacket(int.from_bytes(data[:2], "big"), item.tm.subtype, data[2:], item)


def _name(record: CommandRecord) -> str:
    return f"TC[{record.tc.service},{record.tc.subtype}] {record.request_id}"
