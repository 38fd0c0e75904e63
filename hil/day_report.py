"""The numbers of a simulated day (hil/simulated_day.py), read back from what the ground has:
the station's pass log (its contacts and the results it fetched), the result files checked bit
for bit against onnxruntime run on the ground, and the archived telemetry (the battery's lowest
charge, the hottest temperature, the events of the day), beside what the bench flew."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from groundsw.archive import Archive, ArchiveError
from groundsw.gaps import GapState
from groundsw.station.config import payload_data_dir
from groundsw.timespec import utc_text
from hil.day_ground import PAYLOAD, StationClient
from hil.day_workload import Workload
from hil.orbit_driver import OrbitDriver, OrbitEventKind
from orbit import OrbitClock
from telemetry_defs.loader import default_dictionary

if TYPE_CHECKING:
    from hil.simulated_day import DaySettings

# Contacts are matched to the passes flown with this slack (bench seconds): the station sees
# the first frame a little after AOS and calls the link down a little after LOS.
MATCH_SLACK_S = 2.0
WATCHED_EVENTS = (
    "POWER_FLOOR", "POWER_LOW", "POWER_SLOWED", "POWER_JOBS_HELD", "ECLIPSE_ENTERED",
    "ECLIPSE_LEFT", "THERMAL_THROTTLED", "THERMAL_PAUSED", "SAFE_MODE_ENTERED",
    "THERMAL_CRITICAL", "JOB_SUCCEEDED", "JOB_FAILED",
)  # fmt: skip


@dataclass(frozen=True)
class PassNumbers:
    """One pass flown: its times (orbit and bench), and what the station did in it."""

    number: int
    aos: float  # orbit time
    los: float
    aos_bench: float
    los_bench: float
    max_elevation_deg: float
    contacts: tuple[int, ...]  # the station's contacts in it
    results: int
    result_octets: int
    commands_sent: int
    packets: int

    @property
    def duration_s(self) -> float:
        return self.los - self.aos

    @property
    def bench_s(self) -> float:
        return self.los_bench - self.aos_bench


@dataclass(frozen=True)
class DayResult:
    """One job's result as the station has it after the day."""

    job_id: int
    model: str
    input: str
    state: str
    fetched_at: float | None  # the bench's clock; None: not on the ground
    exact: bool  # what the ground computes, bit for bit (False when not on the ground)


@dataclass(frozen=True)
class DayReport:
    """The day's numbers (see `lines` for their reading)."""

    submission: str
    orbits: float
    time_scale: float
    clock: OrbitClock  # the flight's mapping of orbit time onto the bench's clock
    day_end: float  # orbit time
    passes: list[PassNumbers]
    eclipses: int
    jobs: int  # in the workload
    delivered: int  # results fetched during the day's passes and found bit-exact
    delivered_after_day: int  # fetched after the day (the next pass), bit-exact
    mismatched: list[int]  # jobs whose result is not what the ground computes
    not_on_ground: int  # jobs of the workload without a checked result on the ground
    job_states: dict[str, int]
    finished_after_last_pass: int  # jobs that ended after the day's last LOS
    min_soc_pct: float
    floor_soc_pct: float
    peak_temp_c: float
    thresholds_c: dict[str, float]
    events: dict[str, int]
    open_gaps: int
    times: dict[str, float]
    results: list[DayResult]

    @property
    def per_pass_results(self) -> list[int]:
        """The results each pass carried, in order."""
        return [p.results for p in self.passes]

    @property
    def lost(self) -> int:
        """Jobs of the workload whose result never reached the ground intact."""
        return self.not_on_ground + len(self.mismatched)

    def lines(self) -> list[str]:
        per_pass = ", ".join(f"{p.number}: {p.results} ({p.bench_s:.1f} s)" for p in self.passes)
        thermal = ", ".join(f"{k} {v:g} C" for k, v in self.thresholds_c.items())
        watched = ", ".join(f"{k} {v}" for k, v in sorted(self.events.items()) if v)
        return [
            f"simulated day ({self.submission}): {self.orbits:g} orbits at "
            f"{self.time_scale:g}x, {len(self.passes)} passes, {self.eclipses} eclipses",
            f"results: {self.delivered} of {self.jobs} on the ground by the last pass, "
            f"{self.delivered_after_day} after the day, {len(self.mismatched)} not bit-exact, "
            f"{self.lost} lost; {self.finished_after_last_pass} jobs ended after the last pass",
            f"results per pass (pass: results (bench seconds)): {per_pass}",
            f"job states: {dict(sorted(self.job_states.items()))}",
            f"battery: lowest {self.min_soc_pct:.1f} % (floor {self.floor_soc_pct:g} %)",
            f"temperature: peak {self.peak_temp_c:.1f} C ({thermal})",
            f"events: {watched or 'none'}; telemetry gaps still open: {self.open_gaps}",
            "wall time: "
            + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in self.times.items()),
        ]


def build_report(
    client: StationClient,
    workload: Workload,
    submission: str,
    settings: DaySettings,
    driver: OrbitDriver,
    clock: OrbitClock,
    day_end: float,
    debrief_start: float,
    times: dict[str, float],
    data: Path,
) -> DayReport:
    """The day's numbers from the station, its files and what the driver flew."""
    d = default_dictionary()
    contacts = client.contacts()
    flown = _passes(driver, clock, day_end, contacts)
    records = client.results()
    delivered = after = 0
    mismatched: list[int] = []
    results = []
    for record in records:
        exact = False
        if record["path"] is not None:
            content = client.result(int(record["job_id"]))
            exact = workload.matches(record["model"], record["input"], content)
        results.append(
            DayResult(
                int(record["job_id"]),
                str(record["model"]),
                str(record["input"]),
                str(record["state"]),
                record["fetched_at"] if record["path"] is not None else None,
                exact,
            )
        )
        if record["path"] is None:
            continue
        if not exact:
            mismatched.append(int(record["job_id"]))
        elif clock.bench_start <= record["fetched_at"] < debrief_start:
            # By when it was fetched, not by the contact: the day's last contact goes on into
            # the debrief when the day ends within the station's link timeout of a LOS.
            delivered += 1
        else:
            after += 1
    last_los = max((p.los_bench for p in flown), default=-math.inf)
    flight_start, flight_end = clock.bench_start, clock.to_bench(day_end)
    events = Counter(
        e["name"]
        for e in client.events(since=utc_text(flight_start))
        if e["name"] in WATCHED_EVENTS and flight_start <= (e["onboard_time"] or 0.0) < flight_end
    )
    eclipses = sum(
        1 for e in driver.events if e.kind is OrbitEventKind.ECLIPSE and e.orbit_time < day_end
    )
    return DayReport(
        submission=submission,
        orbits=settings.orbits,
        time_scale=settings.time_scale,
        clock=clock,
        day_end=day_end,
        passes=flown,
        eclipses=eclipses,
        jobs=len(workload.jobs),
        delivered=delivered,
        delivered_after_day=after,
        mismatched=mismatched,
        not_on_ground=len(workload.jobs) - delivered - after,
        job_states=dict(Counter(str(r["state"]) for r in records)),
        finished_after_last_pass=sum(1 for r in records if r["finished"] > last_los),
        min_soc_pct=_latest(client, "BATTERY_SOC_MIN", flight_start),
        floor_soc_pct=float(d.parameter("POWER_FLOOR_SOC").default),
        peak_temp_c=_latest(client, "TEMP_PEAK", flight_start),
        thresholds_c={
            name: float(d.parameter(name).default)
            for name in ("THERMAL_THROTTLE", "THERMAL_PAUSE", "THERMAL_CRITICAL")
        },
        events=dict(events),
        open_gaps=open_gaps(data),
        times=times,
        results=results,
    )


def _passes(
    driver: OrbitDriver, clock: OrbitClock, day_end: float, contacts: Sequence[dict[str, Any]]
) -> list[PassNumbers]:
    flown = []
    for event in driver.events:
        if event.kind is not OrbitEventKind.AOS or event.pass_ is None:
            continue
        if event.orbit_time >= day_end:
            continue
        p = event.pass_
        aos_bench, los_bench = clock.to_bench(max(p.aos, event.orbit_time)), clock.to_bench(p.los)
        mine = [
            c
            for c in contacts
            if aos_bench - MATCH_SLACK_S <= c["aos"] <= los_bench + MATCH_SLACK_S
        ]
        flown.append(
            PassNumbers(
                number=event.number,
                aos=p.aos,
                los=p.los,
                aos_bench=aos_bench,
                los_bench=los_bench,
                max_elevation_deg=p.max_elevation_deg,
                contacts=tuple(int(c["number"]) for c in mine),
                results=sum(int(c["results"]) for c in mine),
                result_octets=sum(int(c["result_octets"]) for c in mine),
                commands_sent=sum(int(c["commands_sent"]) for c in mine),
                packets=sum(int(c["packets"]) for c in mine),
            )
        )
    return flown


def _latest(client: StationClient, parameter: str, since: float) -> float:
    """The value of `parameter` generated last on board (NaN: none archived since `since`)."""
    samples = [
        s
        for s in client.samples(parameter, since=utc_text(since))
        if s["engineering"] is not None and (s["onboard_time"] or 0.0) >= since
    ]
    if not samples:
        return math.nan
    return float(max(samples, key=lambda s: s["onboard_time"])["engineering"])


def open_gaps(data: Path) -> int:
    """Telemetry gaps of the day's archive not recovered nor given up on (-1: unreadable)."""
    try:
        with Archive(payload_data_dir(data, PAYLOAD), default_dictionary()) as archive:
            return len(archive.gaps([GapState.OPEN, GapState.RETRIEVING]))
    except ArchiveError:
        return -1
