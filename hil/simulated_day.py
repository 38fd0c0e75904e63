"""A simulated day on the bench: the payload flies N orbits over a ground station at a chosen
speed-up while the ground station (`groundsw serve`) works pass by pass, and the numbers of the
day come back: passes, eclipses, results delivered per pass and checked on the ground, the
battery's lowest charge, the hottest temperature, the wall time.

The day in four steps:

1. Before flight, on a free link (the bench before launch): the ground uploads the workload's
   models and inputs through the station, and the `Submission` does what it does before flight
   (the naive one holds the queue and submits every job).
2. Into flight: the payload is restarted on the orbit's configuration (its battery and thermal
   models from a fresh start, k times faster; the restart releases the queue's hold) and the
   orbit driver begins: the link only in passes, sunlight and baseplate from the orbit. The
   `Submission` may queue commands for the first pass (a planner's schedule).
3. The day: N orbits flown at the time scale; the station sends what is queued at each AOS,
   recovers the telemetry it missed and fetches the results of the jobs finished since.
4. After the day, the link is left up a little (the next day's first pass, compressed): the
   telemetry of the day's end comes down, then the numbers are read from the station's pass
   log and archive. Results fetched then count as not delivered during the day.

`fly_day` is the function; a planner compares ways of submitting with the same settings and
workload, each a `Submission`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from groundsw.timespec import utc_second
from hil.bench import Bench
from hil.day_ground import (
    DayError,
    StationClient,
    StationProcess,
    compressed_pass_settings,
    station_config_text,
)
from hil.day_report import DayReport, build_report, open_gaps
from hil.day_workload import Workload
from hil.orbit_driver import OrbitDriver, OrbitEvent, OrbitFlight, orbit_payload_config
from orbit import OrbitClock, OrbitTimeline, parse_station, read_tle

SAMPLE_TLE = Path(__file__).resolve().parent.parent / "orbit" / "data" / "aipayload-1.tle"
MUNICH = "48.1,11.6,550"

Say = Callable[[str], None]


@dataclass(frozen=True)
class DaySettings:
    """What the day flies and how.

    `start`: orbit time at which the flight begins; None: `lead_s` of orbit time before the
    first pass after the TLE's epoch (so that the day opens with a pass, as an operator plans
    it). `initial_soc_pct`: the battery's charge when the flight begins (None: the bench model's
    default). `payload_config`: more TOML for the payload (loads, power levels), after the
    orbit's. `debrief_s`: bench seconds of link after the day at least; then until no telemetry
    gap is open, `debrief_timeout_s` at most."""

    tle: Path = SAMPLE_TLE
    station: str = MUNICH
    min_elevation_deg: float = 5.0
    orbits: float = 15.0
    time_scale: float = 200.0
    start: float | None = None
    lead_s: float = 1200.0
    baud: int = 921600
    initial_soc_pct: float | None = None
    payload_config: str = ""
    debrief_s: float = 5.0
    debrief_timeout_s: float = 60.0


@dataclass
class DayContext:
    """What a `Submission` works with: the station (its HTTP client, and its data directory,
    where any groundsw command finds it and becomes its client), the workload, the orbit (its
    timeline in orbit time, and once the flight began, its mapping onto the bench's clock)."""

    ground: StationClient
    workload: Workload
    settings: DaySettings
    timeline: OrbitTimeline
    orbit_start: float
    data_dir: Path
    clock: OrbitClock | None = None
    say: Say = print
    # When the flight begins on the bench's clock, if the submission fixed it before flight
    # (a plan uploaded ahead releases on that clock); None: as soon as the payload restarted.
    flight_start: float | None = None


class Submission(Protocol):
    """A way of getting the day's jobs to the payload."""

    name: str

    def before_flight(self, day: DayContext) -> None:
        """On the free link before flight (the models and inputs are on board already); may
        fix `day.flight_start`."""
        ...

    def at_orbit_start(self, day: DayContext) -> None:
        """When the flight begins (`day.clock` set); commands sent now wait for a pass."""
        ...


class SubmitAllBeforeFlight:
    """The naive way: every job submitted before flight, the queue held until the flight
    begins; the payload then runs them as soon as its power and thermal budgets let it."""

    name = "all jobs before flight"

    def before_flight(self, day: DayContext) -> None:
        day.ground.run("PARAM_SET", "JOB_QUEUE_HOLD=true")
        requests = [day.ground.send("JOB_SUBMIT", *job.arguments()) for job in day.workload.jobs]
        for request in requests:
            day.ground.reply(request, "JOB_ACCEPTED")  # DayError if one is refused
        day.say(f"{len(requests)} jobs submitted, the queue held until the flight begins")

    def at_orbit_start(self, day: DayContext) -> None:
        return None


def first_pass_start(settings: DaySettings) -> float:
    """The orbit start the settings give (see DaySettings)."""
    if settings.start is not None:
        return settings.start
    tle = read_tle(settings.tle)
    station = parse_station(settings.station, settings.min_elevation_deg)
    timeline = OrbitTimeline(tle, station, tle.epoch)
    found = timeline.next_pass(tle.epoch)
    if found is None:
        raise DayError(f"no pass over {settings.station} in the week after the TLE's epoch")
    return found.aos - settings.lead_s


def fly_day(
    workdir: Path,
    submission: Submission,
    workload: Workload,
    settings: DaySettings | None = None,
    say: Say = print,
) -> DayReport:
    """Fly the day (see the module's docstring) in `workdir`; its numbers. DayError when the
    bench, the payload or the station fails on the way."""
    settings = settings or DaySettings()
    wall0 = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    tle = read_tle(settings.tle)
    station = parse_station(settings.station, settings.min_elevation_deg)
    orbit_start = first_pass_start(settings)
    flight = OrbitFlight(tle, station, settings.time_scale, orbit_start)
    state = workdir / "state"
    orbit_config = workdir / "orbit.toml"
    orbit_config.write_text(
        orbit_payload_config(settings.time_scale, settings.baud, settings.initial_soc_pct)
        + settings.payload_config
    )
    bench = Bench(state, baud=settings.baud, time_scale=settings.time_scale)
    data = workdir / "ground"
    events: list[OrbitEvent] = []
    driver = OrbitDriver(flight, bench.link, state, on_event=events.append)
    ground_station: StationProcess | None = None
    client: StationClient | None = None
    try:
        bench.start()
        socket = workdir / "station.sock"
        ground_station = StationProcess(
            workdir,
            station_config_text(
                socket, data, bench.ground_port, settings.baud, bench.key_file,
                compressed_pass_settings(),
            ),
            data,
        )  # fmt: skip
        ground_station.start()
        client = StationClient(socket)
        client.wait_up()
        day = DayContext(client, workload, settings, driver.timeline, orbit_start, data, say=say)
        t = time.monotonic()
        for name, octets in workload.models.items():
            client.upload(f"{name}.onnx", octets)
            client.run(
                "MODEL_REGISTER", f"file={name}.onnx", f"model={name}", "version=1", "tolerance=0"
            )
        for name, octets in workload.inputs.items():
            client.upload(name, octets)
        say(
            f"before flight: {len(workload.models)} models and {len(workload.inputs)} inputs "
            f"({workload.upload_octets} octets) uploaded in {time.monotonic() - t:.1f} s"
        )
        submission.before_flight(day)
        setup_s = time.monotonic() - wall0

        # Into flight: the payload starts again on the orbit's models, the link follows it.
        bench.stop_flight()
        bench.flight_args = ["--config", str(orbit_config)]
        if day.flight_start is not None:
            wait = day.flight_start - time.time()
            if wait < 0:
                raise DayError(
                    f"the flight was to begin {-wait:.1f} s ago: '{submission.name}' took "
                    "longer before flight than it allowed"
                )
            time.sleep(wait)
        clock = driver.begin(day.flight_start)
        bench.start_flight()
        driver.start()
        day.clock = clock
        # What the submission sends now waits in the station's queue for the first pass: once
        # the station has seen the link go (a command sent into a link it still takes would go
        # to COP-1, and the restarted payload's first CLCW drops it with an alert).
        first = driver.timeline.next_pass(orbit_start)
        before_aos = clock.bench_seconds(first.aos - orbit_start) if first else 10.0
        if not client.wait_down(timeout=max(0.0, before_aos - 0.2)):
            say("the station did not see the link go before the first pass")
        submission.at_orbit_start(day)
        day_end = orbit_start + settings.orbits * tle.period_s
        say(
            f"flight: {settings.orbits:g} orbits from {utc_second(orbit_start)} at "
            f"{settings.time_scale:g}x: {clock.bench_seconds(day_end - orbit_start):.0f} s"
        )
        reported = 0
        while time.time() < clock.to_bench(day_end):
            _check(bench, driver, ground_station)
            for event in events[reported:]:
                say(event.describe(settings.time_scale))
            reported = len(events)
            time.sleep(0.2)
        driver.stop()
        flight_s = time.monotonic() - wall0 - setup_s

        # After the day: the link up, the day's last telemetry comes down.
        bench.link.set_available(True)
        debrief_start = time.time()
        _debrief(client, data, settings)
        return build_report(
            client,
            workload,
            submission.name,
            settings,
            driver,
            clock,
            day_end,
            debrief_start,
            {"setup_s": setup_s, "flight_s": flight_s, "wall_s": time.monotonic() - wall0},
            data,
        )
    finally:
        driver.stop()
        if client is not None:
            client.close()
        if ground_station is not None:
            ground_station.stop()
        bench.stop()


def _debrief(client: StationClient, data: Path, settings: DaySettings) -> None:
    """The link up after the day until its telemetry is down: the last reports asked for (the
    battery and the temperatures; a real-time packet also shows a gap lost at the last LOS),
    then every gap recovered, within the debrief's bounds."""
    start = time.monotonic()
    # The reports are archived before the command's completion, which comes after them.
    client.run("HK_GENERATE", "sids=POWER_STATUS,THERMAL_STATUS,JOBS_STATUS")
    quiet = 0
    while time.monotonic() - start < settings.debrief_timeout_s:
        time.sleep(0.5)
        quiet = quiet + 1 if open_gaps(data) == 0 else 0
        # Two looks without a gap, a settle of gap recovery apart (a gap found is kept later).
        if quiet >= 3 and time.monotonic() - start >= settings.debrief_s:
            return


def _check(bench: Bench, driver: OrbitDriver, station: StationProcess) -> None:
    failure = bench.flight_failure()
    if failure is not None:
        raise DayError(f"the payload stays down ({failure}); see {bench.flight_log}")
    if bench.link.error is not None:
        raise DayError(f"the link relay failed: {bench.link.error}")
    if driver.error is not None:
        raise DayError(f"the orbit driver failed: {driver.error}")
    if not station.alive():
        raise DayError(f"the ground station exited; see {station.log_path}")
