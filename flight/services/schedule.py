"""ST[11] time-based scheduling (ECSS-E-ST-70-41C 6.11): TC[11,1..17] served, and each
activity released at its time into the command router, where it runs exactly as a TC from the
ground does, with the verification reports its acknowledgement flags ask for.

Every change is committed to the schedule's store before its completion is reported. Checks
follow the router's stages: the application data and each activity's packet at acceptance, the
schedule's own checks (time margin, room, request IDs) at start of execution, the change at
completion. A request with one refused instruction is refused whole (docs/schedule.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flight.commanding import BadApplicationData, CommandContext, CommandError, named_failure
from flight.router import CommandRouter
from flight.schedule import (
    Activity,
    DropReason,
    DuplicateRequest,
    Fate,
    Limits,
    Loaded,
    ScheduleError,
    ScheduleFull,
    ScheduleStore,
    ScheduleStoreError,
    TimeSchedule,
    TooEarly,
    UnknownRequest,
)
from flight.schedule.config import ScheduleConfig
from flight.services.events import EventReporter
from spacelink.errors import PacketError
from spacelink.pus_schedule import (
    SCHEDULE_SERVICE,
    SUMMARY_ENTRY_OCTETS,
    ScheduleCodecError,
    ScheduleRequestId,
    SummaryEntry,
    TimeTaggedTc,
    decode_insert,
    encode_activities,
    encode_summary,
    tc_type,
)
from spacelink.spacepacket import PusTc
from telemetry_defs.model import Dictionary

log = logging.getLogger(__name__)

# Source data of one TM[11,10] or TM[11,13] at most: a longer report is sent as several, each
# with whole entries (a report of all activities could otherwise reach hundreds of kB).
REPORT_OCTETS = 4096


@dataclass
class _Plan:
    """A request on its way through the stages: what acceptance read, what start checked."""

    tagged: list[TimeTaggedTc] = field(default_factory=list)
    request_ids: list[ScheduleRequestId] | None = None
    offset_ms: int = 0
    activities: list[Activity] = field(default_factory=list)


class ScheduleService:
    """The time-based schedule: its TCs, and the release of its activities."""

    def __init__(
        self,
        dictionary: Dictionary,
        store: ScheduleStore,
        config: ScheduleConfig,
        apid: int,
        events: EventReporter,
        clock: Callable[[], float],
    ) -> None:
        """`clock`: the payload's time (UNIX s, as TM packets are stamped with)."""
        self.dictionary = dictionary
        self.store = store
        self.config = config
        self.apid = apid
        self.events = events
        self.clock = clock
        self.released = 0
        self.dropped = 0
        self._dispatch: Callable[[bytes], None] | None = None
        self._verify_due = threading.Event()
        loaded = store.load()
        limits = Limits(round(config.time_margin_s * 1000), config.max_activities)
        self.schedule = TimeSchedule(limits, loaded.activities, loaded.enabled)
        self._lost_at_load = loaded
        # The first pass releases or drops what came due while the payload was down.
        self._started = False
        log.info(
            "schedule: %d activities, %s",
            len(self.schedule),
            "enabled" if self.schedule.enabled else "disabled",
        )

    def register(self, router: CommandRouter) -> None:
        """Serve TC[11,x]; released activities go to `router.dispatch`."""
        self._dispatch = router.dispatch
        d, reg = self.dictionary, router.register_command
        reg(d.command("SCHEDULE_ENABLE"), self._enable)
        reg(d.command("SCHEDULE_DISABLE"), self._disable)
        reg(d.command("SCHEDULE_RESET"), self._reset)
        reg(d.command("SCHEDULE_INSERT"), self._insert, self._read_insert, self._check_insert)
        reg(d.command("SCHEDULE_DELETE"), self._delete, self._read_ids, self._check_known)
        reg(d.command("SCHEDULE_SHIFT"), self._shift, self._read_shift, self._check_shift)
        reg(d.command("SCHEDULE_SHIFT_ALL"), self._shift, self._read_shift, self._check_shift)
        reg(d.command("SCHEDULE_DETAIL"), self._detail, self._read_ids, self._check_known)
        reg(d.command("SCHEDULE_DETAIL_ALL"), self._detail, self._read_all, self._check_known)
        reg(d.command("SCHEDULE_SUMMARY"), self._summary, self._read_ids, self._check_known)
        reg(d.command("SCHEDULE_SUMMARY_ALL"), self._summary, self._read_all, self._check_known)

    # -- release ------------------------------------------------------------------------------

    def seconds_to_next(self) -> float | None:
        """How long until the next activity is due (negative: overdue); None when none is."""
        if not self._started:
            return 0.0
        next_ms = self.schedule.next_release_ms()
        return None if next_ms is None else next_ms / 1000 - self.clock()

    def tick(self) -> None:
        """Release (or drop) every activity that is due, in release order."""
        if self._verify_due.is_set():
            self._verify_due.clear()
            self._verify()
        now_ms = self._now_ms()
        grace = None
        if not self._started:
            self._started = True
            self._report_lost(self._lost_at_load)
            grace = round(self.config.missed_grace_s * 1000)
        for fate in self.schedule.due(now_ms, grace):
            self._settle(fate)

    def _settle(self, fate: Fate) -> None:
        activity = fate.activity
        try:
            # Deleted first: a release is never repeated, even by a restart right after it.
            self.store.delete([activity.request_id])
        except ScheduleStoreError as exc:
            log.error("released activity %s not deleted from the store: %s", activity, exc)
        self.schedule.remove([activity.request_id])
        if fate.drop is not None:
            self._dropped(activity.request_id.value, activity.packet, fate.drop, fate.late_ms)
            return
        self.released += 1
        service, subtype = tc_type(activity.packet)
        self.events.raise_event(
            "SCHEDULE_ACTIVITY_RELEASED",
            request_id=activity.request_id.value,
            service=service,
            subtype=subtype,
            late_ms=min(fate.late_ms, 0xFFFFFFFF),
        )
        assert self._dispatch is not None, "register() wires the router before the first tick"
        self._dispatch(activity.packet)

    def _dropped(self, request_id: int, packet: bytes, reason: DropReason, late_ms: int) -> None:
        self.dropped += 1
        service, subtype = tc_type(packet)
        self.events.raise_event(
            "SCHEDULE_ACTIVITY_DROPPED",
            request_id=request_id & 0xFFFFFFFFFFFFFFFF,
            service=service,
            subtype=subtype,
            reason=int(reason),
            late_s=min(max(late_ms, 0) // 1000, 0xFFFFFFFF),
        )

    def _report_lost(self, found: Loaded) -> None:
        for record in found.lost:
            self._dropped(record.request_id, record.packet, DropReason.DAMAGED, 0)
        found.lost.clear()

    def verify(self) -> None:
        """Have every stored record voted again at the next pass of the main loop (the
        scrubber's pass calls this from its own thread; the schedule belongs to the main one)."""
        self._verify_due.set()

    def _verify(self) -> None:
        """Repair what one damaged part explains, drop what nothing does, and make the schedule
        in memory agree with the store."""
        try:
            found = self.store.load()
        except ScheduleStoreError as exc:
            log.error("schedule check: %s", exc)
            return
        kept = {a.request_id for a in found.activities}
        lost = [a.request_id for a in self.schedule.activities() if a.request_id not in kept]
        self.schedule.remove(lost)
        self.schedule.put(found.activities)
        self._report_lost(found)

    # -- acceptance: the application data -----------------------------------------------------

    def _read_insert(self, args: dict[str, Any]) -> _Plan:
        try:
            tagged = decode_insert(args["activities"])
        except ScheduleCodecError as exc:
            if exc.index is None:  # the request's own layout (its count, octets left over)
                raise BadApplicationData(str(exc)) from None
            raise self._invalid(exc.index, str(exc)) from None
        for index, activity in enumerate(tagged):
            try:
                tc = PusTc.unpack(activity.packet)
            except PacketError as exc:
                raise self._invalid(index, f"activity {index}: {exc.detail}") from None
            if tc.apid != self.apid:
                raise self._invalid(index, f"activity {index}: APID {tc.apid}, not {self.apid}")
            if tc.service == SCHEDULE_SERVICE:
                # The schedule never releases into itself: a nested TC[11,x] would run with no
                # time margin and no acceptance of its own at insertion.
                raise self._invalid(index, f"activity {index}: TC[11,{tc.subtype}] is nested")
        return _Plan(tagged=tagged)

    def _invalid(self, index: int, message: str) -> CommandError:
        return named_failure(
            self.dictionary, "SCHEDULE_ACTIVITY_INVALID", message, index=index, detail=message
        )

    def _read_ids(self, args: dict[str, Any]) -> _Plan:
        ids = []
        for value in args["request_ids"]:
            try:
                ids.append(ScheduleRequestId.from_value(value))
            except ValueError:  # spare bits set: no TC has that request ID
                raise named_failure(
                    self.dictionary,
                    "SCHEDULE_UNKNOWN_REQUEST",
                    f"0x{value:016X} is not a request ID",
                    request_id=value,
                ) from None
        return _Plan(request_ids=ids)

    def _read_all(self, args: dict[str, Any]) -> _Plan:
        return _Plan()

    def _read_shift(self, args: dict[str, Any]) -> _Plan:
        plan = self._read_ids(args) if "request_ids" in args else _Plan()
        plan.offset_ms = args["offset_ms"]
        return plan

    # -- start of execution: the schedule's checks --------------------------------------------

    def _check_insert(self, plan: _Plan) -> None:
        plan.activities = self._checked(
            lambda: self.schedule.check_insert(plan.tagged, self._now_ms())
        )

    def _check_known(self, plan: _Plan) -> None:
        ids = plan.request_ids
        plan.activities = self._checked(
            lambda: self.schedule.activities() if ids is None else self.schedule.find(ids)
        )

    def _check_shift(self, plan: _Plan) -> None:
        plan.activities = self._checked(
            lambda: self.schedule.check_shift(plan.request_ids, plan.offset_ms, self._now_ms())
        )

    def _checked(self, check: Callable[[], list[Activity]]) -> list[Activity]:
        try:
            return check()
        except ScheduleError as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: ScheduleError) -> CommandError:
        d, text = self.dictionary, str(exc)
        if isinstance(exc, TooEarly):
            return named_failure(
                d,
                "SCHEDULE_TOO_EARLY",
                text,
                request_id=exc.request_id.value,
                release_ms=max(exc.release_ms, 0),
                earliest_ms=exc.earliest_ms,
            )
        if isinstance(exc, ScheduleFull):
            return named_failure(
                d, "SCHEDULE_FULL", text, scheduled=exc.scheduled, capacity=exc.capacity
            )
        if isinstance(exc, DuplicateRequest):
            return named_failure(
                d, "SCHEDULE_DUPLICATE_REQUEST", text, request_id=exc.request_id.value
            )
        if isinstance(exc, UnknownRequest):
            return named_failure(
                d, "SCHEDULE_UNKNOWN_REQUEST", text, request_id=exc.request_id.value
            )
        raise AssertionError(f"unmapped schedule error {exc!r}")

    # -- completion: the change, durable before it is reported ---------------------------------

    def _stored(self, write: Callable[[], None]) -> None:
        try:
            write()
        except ScheduleStoreError as exc:
            raise named_failure(
                self.dictionary, "SCHEDULE_STORE_FAILED", str(exc), detail=str(exc)
            ) from None

    def _enable(self, args: dict[str, Any], ctx: CommandContext) -> None:
        self._stored(lambda: self.store.set_enabled(True))
        self.schedule.enabled = True

    def _disable(self, args: dict[str, Any], ctx: CommandContext) -> None:
        self._stored(lambda: self.store.set_enabled(False))
        self.schedule.enabled = False

    def _reset(self, args: dict[str, Any], ctx: CommandContext) -> None:
        self._stored(self.store.reset)
        self.schedule.reset()
        log.info("schedule reset: every activity deleted, execution disabled")

    def _insert(self, plan: _Plan, ctx: CommandContext) -> None:
        self._stored(lambda: self.store.put(plan.activities))
        self.schedule.put(plan.activities)
        log.info("schedule: %s inserted", ", ".join(_describe(a) for a in plan.activities))

    def _delete(self, plan: _Plan, ctx: CommandContext) -> None:
        ids = [a.request_id for a in plan.activities]
        self._stored(lambda: self.store.delete(ids))
        self.schedule.remove(ids)

    def _shift(self, plan: _Plan, ctx: CommandContext) -> None:
        self._stored(lambda: self.store.put(plan.activities))
        self.schedule.put(plan.activities)

    def _detail(self, plan: _Plan, ctx: CommandContext) -> None:
        packet = self.dictionary.packets["SCHEDULE_DETAIL_REPORT"]
        parts = _parts(plan.activities, lambda a: 7 + len(a.packet))
        for part in parts:
            ctx.reply(packet.service, packet.subtype, encode_activities([a.tagged() for a in part]))
        _reports_sent(ctx, len(parts))

    def _summary(self, plan: _Plan, ctx: CommandContext) -> None:
        packet = self.dictionary.packets["SCHEDULE_SUMMARY_REPORT"]
        parts = _parts(plan.activities, lambda a: SUMMARY_ENTRY_OCTETS)
        for part in parts:
            entries = [SummaryEntry(a.tagged().release, a.request_id) for a in part]
            ctx.reply(packet.service, packet.subtype, encode_summary(entries))
        _reports_sent(ctx, len(parts))

    # -- parameters ---------------------------------------------------------------------------

    def getters(self) -> dict[str, Callable[[], object]]:
        """The SCHEDULE_STATUS parameters (UPSETS_SCHEDULE comes with the other upsets)."""

        def next_release() -> int:
            next_ms = self.schedule.next_release_ms()
            return 0 if next_ms is None else min(max(next_ms // 1000, 0), 0xFFFFFFFF)

        return {
            "SCHEDULE_ENABLED": lambda: self.schedule.enabled,
            "SCHEDULE_ACTIVITIES": lambda: min(len(self.schedule), 0xFFFF),
            "SCHEDULE_NEXT_RELEASE": next_release,
            "SCHEDULE_RELEASED": lambda: self.released & 0xFFFFFFFF,
            "SCHEDULE_DROPPED": lambda: self.dropped & 0xFFFFFFFF,
        }

    def close(self) -> None:
        self.store.close()

    def _now_ms(self) -> int:
        return round(self.clock() * 1000)


def _parts(activities: Sequence[Activity], size: Callable[[Activity], int]) -> list[list[Activity]]:
    """The activities cut into reports of at most REPORT_OCTETS (one at least each); one empty
    report when there are none, as the standard reports an empty schedule."""
    parts: list[list[Activity]] = [[]]
    used = 2
    for activity in activities:
        octets = size(activity)
        if parts[-1] and used + octets > REPORT_OCTETS:
            parts.append([])
            used = 2
        parts[-1].append(activity)
        used += octets
    return parts


def _reports_sent(ctx: CommandContext, count: int) -> None:
    """A progress report (TM[1,5]) whose step is how many reports were sent, modulo 256: with
    their message type counters, which follow one another, it tells the ground a whole answer
    from one with a report lost on the downlink (docs/schedule.md)."""
    ctx.progress(count & 0xFF)


def _describe(activity: Activity) -> str:
    service, subtype = tc_type(activity.packet)
    return f"{activity.request_id} TC[{service},{subtype}] at {activity.tagged().release}"
