"""ST[3] housekeeping: periodic TM[3,25] reports of the dictionary's structures.

Each structure keeps its own schedule; reports go out on the first main-loop tick after they are
due, and the next one is due an interval after the previous due time (no drift), unless the
loop fell behind by a whole interval, when the schedule restarts from now instead of bursting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flight.commanding import BadApplicationData, CommandContext
from flight.parameters import ParameterPool
from flight.router import CommandRouter
from flight.services.events import EventReporter
from flight.telemetry import TmPublisher
from spacelink.pus import HOUSEKEEPING_SERVICE
from telemetry_defs.model import Dictionary, Housekeeping

log = logging.getLogger(__name__)

HOUSEKEEPING_REPORT = 25


@dataclass
class StructureState:
    """How one structure is being generated now."""

    structure: Housekeeping
    enabled: bool
    interval_s: float
    next_due: float


class HousekeepingService:
    """Generates housekeeping reports and serves TC[3,5], [3,6], [3,27] and [3,31]."""

    def __init__(
        self,
        dictionary: Dictionary,
        pool: ParameterPool,
        tm: TmPublisher,
        events: EventReporter,
        now: float,
    ) -> None:
        self._dictionary = dictionary
        self._pool = pool
        self._tm = tm
        self._events = events
        self.structures = {
            h.sid: StructureState(h, h.enabled, h.interval_ms / 1000, now)
            for h in dictionary.housekeeping.values()
        }
        self.reports_sent = 0

    def register(self, router: CommandRouter) -> None:
        d = self._dictionary
        router.register_command(d.command("HK_ENABLE"), self._enable, self._check_sids)
        router.register_command(d.command("HK_DISABLE"), self._disable, self._check_sids)
        router.register_command(d.command("HK_GENERATE"), self._generate, self._check_sids)
        router.register_command(d.command("HK_SET_INTERVAL"), self._set_interval, self._check_sid)

    # -- generation ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Send every enabled report that is due."""
        for state in self.structures.values():
            if not state.enabled or now < state.next_due:
                continue
            self.report(state.structure)
            state.next_due += state.interval_s
            if state.next_due <= now:
                state.next_due = now + state.interval_s

    def next_due(self) -> float | None:
        due = [s.next_due for s in self.structures.values() if s.enabled]
        return min(due) if due else None

    def report(self, structure: Housekeeping, destination_id: int = 0) -> None:
        values = {p.name: self._pool.read(p) for p in structure.parameters}
        data = self._dictionary.encode_housekeeping(structure.sid, values)
        self._tm.publish(
            HOUSEKEEPING_SERVICE, HOUSEKEEPING_REPORT, data, destination_id=destination_id
        )
        self.reports_sent += 1

    # -- commands -----------------------------------------------------------------------------

    def _state(self, sid: int) -> StructureState:
        state = self.structures.get(sid)
        if state is None:
            raise BadApplicationData(f"no housekeeping structure has ID {sid}")
        return state

    def _check_sids(self, args: dict[str, Any]) -> list[StructureState]:
        return [self._state(sid) for sid in args["sids"]]

    def _check_sid(self, args: dict[str, Any]) -> tuple[StructureState, float]:
        return self._state(args["sid"]), args["interval_ms"] / 1000

    def _enable(self, states: list[StructureState], ctx: CommandContext) -> None:
        now = ctx.now
        for state in states:
            if not state.enabled:
                state.enabled = True
                state.next_due = now  # the first report at once, so the operator sees it work
            self._changed(state)

    def _disable(self, states: list[StructureState], ctx: CommandContext) -> None:
        for state in states:
            state.enabled = False
            self._changed(state)

    def _generate(self, states: list[StructureState], ctx: CommandContext) -> None:
        for state in states:
            self.report(state.structure, destination_id=ctx.tc.source_id)

    def _set_interval(self, args: tuple[StructureState, float], ctx: CommandContext) -> None:
        state, interval = args
        state.interval_s = interval
        state.next_due = min(state.next_due, ctx.now + interval)
        self._changed(state)

    def _changed(self, state: StructureState) -> None:
        self._events.raise_event(
            "HK_CHANGED",
            sid=state.structure.sid,
            enabled=state.enabled,
            interval_ms=round(state.interval_s * 1000),
        )
