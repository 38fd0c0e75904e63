"""The bench flies an orbit: the link is available only while the satellite is above the
station's mask, the payload's battery model sees sunlight and eclipse through its sunlight file,
and its thermal model's baseplate follows the orbit through its baseplate file, all `time_scale`
times faster than real time (orbit time mapped onto the bench's clock by `OrbitClock`).

The payload and the ground keep the real clock. The files are written ahead, in bench time, for
`HORIZON_S` of orbit time (and again before that runs out), so that the payload's models run
exactly between the driver's wake-ups; the link is switched at each AOS and LOS as the bench's
clock passes them. Every change (AOS, LOS, eclipse entry and exit) is told to `on_event`.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from flight.power.sunlight import write_intervals
from flight.thermal.baseplate import write_profile
from groundsw.timespec import utc_text
from hil.environment import (
    DEFAULT_STEP_S,
    SPIN_UP_ORBITS,
    InterfaceModel,
    sunlight_segments,
    sunlit_spans,
)
from orbit import Change, Interval, OrbitClock, OrbitTimeline, Pass, Station, Tle
from spacelink.icd import IDLE_FRAME_INTERVAL_S, TmCoding, line_seconds
from spacelink.tmframe import channel_frame_octets

log = logging.getLogger(__name__)

# The payload's files, in its state directory (the payload's config names them relative to it).
SUNLIGHT_FILE = "orbit-sunlight.txt"
BASEPLATE_FILE = "orbit-baseplate.txt"
# Orbit time the files cover ahead of now, and how much of it is left when they are written
# again; an orbit back is kept for the models' reads of the recent past.
HORIZON_S = 86400.0
REFRESH_LEFT_S = 43200.0
# Longest sleep of the driver's thread (how soon it sees a stop).
MAX_SLEEP_S = 0.5
# Idle frames: at most this share of the line's time, never more often than MIN_IDLE_S.
IDLE_SHARE = 10.0
MIN_IDLE_S = 0.1
# Orbit seconds between two readings of the battery: a budget decision per 10 s of orbit.
POWER_POLL_ORBIT_S = 10.0
UNKNOWN_RUN_ORBIT_S = 10.0
READING_LAG_S = 1.0


class LinkSwitch(Protocol):
    """What the driver switches: the emulated link (hil.ptylink.PtyLink)."""

    def set_available(self, available: bool) -> None: ...


class OrbitEventKind(enum.Enum):
    AOS = "AOS"
    LOS = "LOS"
    ECLIPSE = "eclipse"
    SUNLIGHT = "sunlight"


@dataclass(frozen=True, slots=True)
class OrbitEvent:
    """A change the bench flew: at `orbit_time`, which it flew at `bench_time`. `number`
    counts the passes (AOS, LOS) or the eclipses (ECLIPSE, SUNLIGHT) from 1."""

    kind: OrbitEventKind
    orbit_time: float
    bench_time: float
    number: int
    pass_: Pass | None = None
    eclipse: Interval | None = None

    def describe(self, time_scale: float) -> str:
        when = f"orbit {utc_text(self.orbit_time)}, bench {utc_text(self.bench_time)}"
        if self.pass_ is not None:
            p = self.pass_
            what = (
                f"pass {self.number}: {self.kind.value} (max elevation {p.max_elevation_deg:.1f} "
                f"deg, {p.duration_s / 60:.1f} min, {p.duration_s / time_scale:.1f} s on the bench)"
            )
        else:
            e = self.eclipse
            assert e is not None
            verb = "enters" if self.kind is OrbitEventKind.ECLIPSE else "leaves"
            what = f"eclipse {self.number}: {verb} the shadow ({e.duration_s / 60:.1f} min)"
        return f"{what}; {when}"


@dataclass(frozen=True, slots=True)
class OrbitFlight:
    """What the bench flies: `tle` over `station` from `orbit_start` (UNIX seconds of orbit
    time), `time_scale` times faster than real time, with the baseplate of `interface`."""

    tle: Tle
    station: Station
    time_scale: float
    orbit_start: float
    interface: InterfaceModel = field(default_factory=InterfaceModel)


def idle_interval(baud: int) -> float:
    """The payload's longest quiet time on a compressed orbit's line: short, so that the ground
    sees a pass begin within a fraction of its few seconds, but idle frames take no more than a
    tenth of the line (1 s, the ICD's, at 115200 baud; 0.14 s at 921600)."""
    frame_s = line_seconds(channel_frame_octets(TmCoding.RS), baud)
    return min(IDLE_FRAME_INTERVAL_S, max(MIN_IDLE_S, IDLE_SHARE * frame_s))


def orbit_payload_config(time_scale: float, baud: int, initial_soc_pct: float | None = None) -> str:
    """The payload configuration an orbit flight adds to the bench's: the battery model in
    sunlight from the driver's file, the thermal model's baseplate from its other file, both
    `time_scale` times faster than real time; the battery read every POWER_POLL_ORBIT_S of
    orbit time (at most once a second); an idle frame as often as `idle_interval` says.

    The power budget reckons a job's energy on its run time on the bench's CPU times the time
    scale; a model that has not run yet is reckoned at UNKNOWN_RUN_ORBIT_S of orbit time a run
    (the payload's default, 10 s, would be 10 bench seconds: at 200x more than the battery), and
    a reading is at most READING_LAG_S old (the worker's heartbeat and the poll). The battery
    starts at `initial_soc_pct` (None: the model's default)."""
    poll = min(1.0, max(0.02, POWER_POLL_ORBIT_S / time_scale))
    unknown_run = UNKNOWN_RUN_ORBIT_S / time_scale
    return (
        "# Written by the HIL bench's orbit driver: sunlight and baseplate from the orbit.\n"
        "[link]\n"
        f"idle_interval_s = {round(idle_interval(baud), 3)!r}\n"
        "[power]\n"
        'source = "model"\n'
        f"poll_interval_s = {round(poll, 3)!r}\n"
        f"unknown_run_s = {unknown_run!r}\n"
        f"reading_lag_s = {READING_LAG_S!r}\n"
        "[power_model]\n"
        'sunlight = "file"\n'
        f'sunlight_file = "{SUNLIGHT_FILE}"\n'
        f"time_scale = {float(time_scale)!r}\n"
        + ("" if initial_soc_pct is None else f"initial_soc_pct = {float(initial_soc_pct)!r}\n")
        + "[thermal_model]\n"
        f'baseplate_file = "{BASEPLATE_FILE}"\n'
        f"time_scale = {float(time_scale)!r}\n"
    )


class OrbitDriver:
    """Flies `flight` on `link` and the payload's files in `state_dir`: `begin` fixes the
    mapping and writes the files (before the payload starts, so that it never reads a bench
    without them), `start` runs the thread that follows the clock, `advance` is one step of it."""

    def __init__(
        self,
        flight: OrbitFlight,
        link: LinkSwitch,
        state_dir: Path,
        *,
        on_event: Callable[[OrbitEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
        profile_step_s: float = DEFAULT_STEP_S,
    ) -> None:
        self.flight = flight
        self.link = link
        self.sunlight_path = state_dir / SUNLIGHT_FILE
        self.baseplate_path = state_dir / BASEPLATE_FILE
        self.on_event = on_event
        self._clock = clock
        self._step_s = profile_step_s
        start = flight.orbit_start
        spin_up = SPIN_UP_ORBITS * flight.tle.period_s
        self.timeline = OrbitTimeline(flight.tle, flight.station, start - spin_up)
        self.orbit_clock: OrbitClock | None = None
        self.events: list[OrbitEvent] = []
        self.passes_flown = 0
        self.eclipses_flown = 0
        # The baseplate computed so far (orbit time, C), from the spin-up on.
        self._baseplate = flight.interface.profile(
            sunlight_segments(self.timeline, start - spin_up, start),
            (flight.interface.sunlit_c + flight.interface.eclipse_c) / 2,
            profile_step_s,
        )
        self._written_until = start
        self._next_link: Change | None = None
        self._next_light: Change | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orbit-driver", daemon=True)
        self.error: BaseException | None = None

    @property
    def state_dir(self) -> Path:
        return self.sunlight_path.parent

    def begin(self, bench_start: float | None = None) -> OrbitClock:
        """Fix the orbit's mapping onto the bench's clock (orbit start at `bench_start`, now
        by default), write the files ahead and set the link as the orbit has it then."""
        now = self._clock() if bench_start is None else bench_start
        flight = self.flight
        self.orbit_clock = OrbitClock(flight.orbit_start, now, flight.time_scale)
        start = flight.orbit_start
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._write_files(start)
        # Whatever is under way at the start is told as beginning then.
        self.link.set_available(False)
        under_way = self.timeline.pass_at(start)
        if under_way is not None:
            self._apply(Change(start, on=True), under_way)
        self._next_link = self.timeline.next_link_change(start)
        eclipse = self.timeline.eclipse_at(start)
        if eclipse is not None:
            self._apply_light(Change(start, on=False), eclipse)
        self._next_light = self.timeline.next_sunlight_change(start)
        return self.orbit_clock

    def advance(self, now: float) -> float:
        """Fly up to bench time `now`: every change due is applied and told, the files written
        ahead when their horizon runs short. The bench time of the next change."""
        clock = self._mapping()
        orbit_now = clock.to_orbit(now)
        if self._written_until - orbit_now < REFRESH_LEFT_S:
            self._write_files(orbit_now)
        while True:
            due = [c for c in (self._next_link, self._next_light) if c and c.time <= orbit_now]
            if not due:
                break
            change = min(due, key=lambda c: c.time)
            if change is self._next_link:
                found = self.timeline.pass_at(change.time) if change.on else None
                self._apply(change, found)
                self._next_link = self.timeline.next_link_change(change.time)
            else:
                eclipse = None if change.on else self.timeline.eclipse_at(change.time)
                self._apply_light(change, eclipse)
                self._next_light = self.timeline.next_sunlight_change(change.time)
        upcoming = [c.time for c in (self._next_link, self._next_light) if c is not None]
        upcoming.append(self._written_until - REFRESH_LEFT_S)
        return clock.to_bench(min(upcoming))

    def start(self) -> OrbitDriver:
        """Follow the bench's clock in a thread (`begin` first)."""
        self._mapping()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following the clock; the link stays as it is."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                wake = self.advance(self._clock())
                self._stop.wait(min(max(wake - self._clock(), 0.0), MAX_SLEEP_S))
        except BaseException as exc:  # surfaced to the bench, which stops the run
            self.error = exc
            log.exception("the orbit driver failed")
            raise

    def _mapping(self) -> OrbitClock:
        if self.orbit_clock is None:
            raise RuntimeError("the orbit driver has not begun: call begin() first")
        return self.orbit_clock

    def _apply(self, change: Change, found: Pass | None) -> None:
        if change.on:
            self.passes_flown += 1
        self.link.set_available(change.on)
        kind = OrbitEventKind.AOS if change.on else OrbitEventKind.LOS
        self._tell(kind, change.time, self.passes_flown, pass_=found or self._last_pass())

    def _apply_light(self, change: Change, eclipse: Interval | None) -> None:
        if not change.on:
            self.eclipses_flown += 1
        kind = OrbitEventKind.SUNLIGHT if change.on else OrbitEventKind.ECLIPSE
        found = eclipse or self._last_eclipse()
        self._tell(kind, change.time, self.eclipses_flown, eclipse=found)

    def _last_pass(self) -> Pass | None:
        return next((e.pass_ for e in reversed(self.events) if e.pass_ is not None), None)

    def _last_eclipse(self) -> Interval | None:
        return next((e.eclipse for e in reversed(self.events) if e.eclipse is not None), None)

    def _tell(
        self,
        kind: OrbitEventKind,
        orbit_time: float,
        number: int,
        *,
        pass_: Pass | None = None,
        eclipse: Interval | None = None,
    ) -> None:
        clock = self._mapping()
        bench_time = clock.to_bench(orbit_time)
        event = OrbitEvent(kind, orbit_time, bench_time, number, pass_, eclipse)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _write_files(self, orbit_now: float) -> None:
        """The sunlight and baseplate files from an orbit before `orbit_now` to HORIZON_S
        after it, in bench time."""
        clock = self._mapping()
        flight = self.flight
        keep_from = max(orbit_now - flight.tle.period_s, self.timeline.start)
        until = orbit_now + HORIZON_S
        last_t, last_c = self._baseplate[-1]
        if until > last_t:
            more = flight.interface.profile(
                sunlight_segments(self.timeline, last_t, until), last_c, self._step_s
            )
            self._baseplate.extend(more[1:])
        self._baseplate = [p for p in self._baseplate if p[0] >= keep_from - self._step_s]
        lit = sunlit_spans(sunlight_segments(self.timeline, keep_from, until))
        write_intervals(self.sunlight_path, clock.to_bench_intervals(lit))
        write_profile(self.baseplate_path, [(clock.to_bench(t), c) for t, c in self._baseplate])
        self._written_until = until
        log.debug("orbit files written up to orbit time %s", utc_text(until))
