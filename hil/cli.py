"""hil-bench: run the payload on an emulated serial link for a ground tool to talk to.

`hil-bench run` prints `ground-port: PATH` as the first line of its standard output, then link
statistics every few seconds, until interrupted; it stops everything it started, also when it
is killed or its parent dies. Line faults apply to both directions, or `UP/DOWN` separately:
`--ber 1e-5`, `--ber 0/1e-4`, `--burst 1e-6:64` (bursts per octet : bits scrambled per burst).

`--tle FILE --station LAT,LON[,ALT] --time-scale K` flies an orbit (hil/orbit_driver.py): the
link is up only during passes, the payload's battery and thermal models see its sunlight and
eclipses, K times faster than real time; each AOS, LOS and change of sunlight is printed as it
happens, in orbit and bench time.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TypeVar

from groundsw.timespec import TimeSpecError, parse_instant, utc_second
from hil.bench import DEFAULT_BASEPLATE_C, Bench, BenchError, die_with_parent
from hil.impairments import ImpairmentError, Impairments
from hil.orbit_driver import OrbitDriver, OrbitEvent, OrbitFlight, orbit_payload_config
from orbit import OrbitError, parse_station, read_tle
from orbit.station import DEFAULT_MIN_ELEVATION_DEG
from spacelink.icd import DEFAULT_BAUD, TmCoding
from spacelink.serialport import PortError, open_port

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_EMULATOR_OPTIONS = (
    "ber", "burst", "drop", "latency", "cut", "baseplate", "time_scale", "unauthenticated",
    "tm_coding", "tle",
)  # fmt: skip
# Options that only mean something with an orbit to fly.
_ORBIT_OPTIONS = ("station", "min_elevation", "start")
T = TypeVar("T")


class UsageError(Exception):
    """A command-line value that does not parse or does not fit."""


def _both_ways(text: str, parse: Callable[[str], T], what: str, form: str) -> tuple[T, T]:
    parts = text.split("/")
    try:
        if len(parts) > 2:
            raise ValueError(text)
        values = [parse(p) for p in parts]
    except ValueError:
        raise UsageError(f"{what} {text!r}: give {form}, or UP/DOWN to set each way") from None
    return values[0], values[-1]


def _burst(text: str) -> tuple[float, int]:
    rate, _, bits = text.partition(":")
    if not bits:
        raise ValueError(text)
    return float(rate), int(bits)


def _cut(text: str) -> tuple[float, float]:
    at, _, seconds = text.partition(":")
    try:
        start, length = float(at), float(seconds)
    except ValueError:
        raise UsageError(f"--cut {text!r}: give AT:SECONDS, e.g. 30:5") from None
    if start < 0 or length <= 0:
        raise UsageError(f"--cut {text!r}: AT must be >= 0 and SECONDS > 0")
    return start, length


def impairments_from(args: argparse.Namespace) -> tuple[Impairments, Impairments]:
    """The (uplink, downlink) impairments the options ask for."""
    ber = _both_ways(args.ber, float, "--ber", "a probability") if args.ber else (0.0, 0.0)
    drop = _both_ways(args.drop, float, "--drop", "a probability") if args.drop else (0.0, 0.0)
    latency = (0.0, 0.0)
    if args.latency:
        latency = _both_ways(args.latency, float, "--latency", "milliseconds")
    burst = ((0.0, 0), (0.0, 0))
    if args.burst:
        burst = _both_ways(args.burst, _burst, "--burst", "RATE:BITS such as 1e-6:64")
    try:
        return tuple(  # type: ignore[return-value]
            Impairments(
                ber=ber[i],
                burst_rate=burst[i][0],
                burst_bits=burst[i][1],
                drop_rate=drop[i],
                latency_s=latency[i] / 1000,
            )
            for i in (0, 1)
        )
    except ImpairmentError as exc:
        raise UsageError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hil-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="emulated link + payload until interrupted")
    run.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    run.add_argument("--ber", help="bit error rate, e.g. 1e-5 or UP/DOWN")
    run.add_argument("--burst", help="error bursts RATE:BITS (bursts per octet : bits each)")
    run.add_argument("--drop", help="probability that an octet is lost")
    run.add_argument("--latency", help="added one-way latency in milliseconds")
    run.add_argument(
        "--cut",
        action="append",
        default=[],
        metavar="AT:SECONDS",
        help="cut the link AT seconds after start for SECONDS (repeatable)",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of the line faults (replayable)")
    run.add_argument("--state-dir", type=Path, help="payload state (default: a new temp dir)")
    run.add_argument("--stats-interval", type=float, default=10.0, help="seconds between stats")
    run.add_argument(
        "--baseplate",
        type=float,
        help=f"baseplate of the payload's thermal model, C (default {DEFAULT_BASEPLATE_C:g})",
    )
    run.add_argument(
        "--time-scale",
        type=float,
        help="the thermal model's seconds per real second (default 1)",
    )
    run.add_argument(
        "--unauthenticated",
        action="store_true",
        default=None,
        help="turn the payload's uplink authentication off (default: a development key)",
    )
    run.add_argument(
        "--tm-coding",
        choices=[c.value for c in TmCoding],
        help="the TM channel coding the payload sends: rs (default, ICD v2) or none (v1); "
        "give the ground the same (groundsw --tm-coding)",
    )
    orbit = run.add_argument_group("orbit", "fly an orbit: the link only during passes")
    orbit.add_argument("--tle", type=Path, help="the orbit: a file with one two-line element set")
    orbit.add_argument(
        "--station",
        metavar="LAT,LON[,ALT_M]",
        help="the ground station (degrees north and east, metres); a southern one as "
        "--station=-33.9,18.4",
    )
    orbit.add_argument(
        "--min-elevation",
        type=float,
        metavar="DEG",
        help=f"the station's mask: the link is up above it (default {DEFAULT_MIN_ELEVATION_DEG:g})",
    )
    orbit.add_argument(
        "--start",
        metavar="TIME",
        help="orbit time at which the bench starts: ISO 8601 (UTC unless it says otherwise) or "
        "UNIX seconds (default: the TLE's epoch)",
    )
    run.add_argument(
        "--flight-port",
        metavar="DEVICE",
        help="a real board's serial port: no emulator, no local payload",
    )
    return parser


class _Stopper:
    def __init__(self) -> None:
        self.event = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.event.set()


def run_real_board(args: argparse.Namespace, stopper: _Stopper) -> int:
    used = [
        "--" + name.replace("_", "-")
        for name in _EMULATOR_OPTIONS
        if getattr(args, name) not in (None, [])
    ]
    if used:
        raise UsageError(f"{used[0]} needs the emulated link; it cannot go with --flight-port")
    open_port(args.flight_port, args.baud).close()  # fail now, with a sentence, if it is wrong
    print(f"ground-port: {args.flight_port}", flush=True)
    print(
        "real board: no emulator and no local payload; the ground talks to the port directly",
        flush=True,
    )
    stopper.event.wait()
    return EXIT_OK


def orbit_flight(args: argparse.Namespace, time_scale: float) -> OrbitFlight | None:
    """The orbit the options ask the bench to fly; None without --tle."""
    if args.tle is None:
        given = [name for name in _ORBIT_OPTIONS if getattr(args, name) is not None]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} needs --tle: there is no orbit")
        return None
    if args.station is None:
        raise UsageError("--tle needs --station LAT,LON[,ALT_M]: the link follows its passes")
    if args.baseplate is not None:
        raise UsageError("--baseplate cannot go with --tle: the orbit drives the baseplate")
    mask = DEFAULT_MIN_ELEVATION_DEG if args.min_elevation is None else args.min_elevation
    try:
        tle = read_tle(args.tle)
        station = parse_station(args.station, mask)
    except OrbitError as exc:
        raise UsageError(str(exc)) from None
    try:
        start = tle.epoch if args.start is None else parse_instant(args.start)
    except TimeSpecError as exc:
        raise UsageError(f"--start {exc}") from None
    return OrbitFlight(tle, station, time_scale, start)


def run_emulated(args: argparse.Namespace, stopper: _Stopper) -> int:
    uplink, downlink = impairments_from(args)
    cuts = [_cut(c) for c in args.cut]
    if args.time_scale is not None and args.time_scale <= 0:
        raise UsageError("--time-scale must be above 0")
    baseplate = DEFAULT_BASEPLATE_C if args.baseplate is None else args.baseplate
    time_scale = 1.0 if args.time_scale is None else args.time_scale
    flight = orbit_flight(args, time_scale)
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="hil-bench-")) / "state"
    flight_args: list[str] = []
    if flight is not None:
        orbit_config = state_dir.parent / f"{state_dir.name}-orbit.toml"
        orbit_config.parent.mkdir(parents=True, exist_ok=True)
        orbit_config.write_text(orbit_payload_config(time_scale, args.baud))
        flight_args = ["--config", str(orbit_config)]
    bench = Bench(
        state_dir,
        baud=args.baud,
        uplink=uplink,
        downlink=downlink,
        seed=args.seed,
        baseplate_c=baseplate,
        time_scale=time_scale,
        authentication=not args.unauthenticated,
        tm_coding=TmCoding(args.tm_coding or TmCoding.RS.value),
        flight_args=flight_args,
    )
    driver = None if flight is None else OrbitDriver(flight, bench.link, state_dir)

    def say(event: OrbitEvent) -> None:
        print(event.describe(time_scale), flush=True)

    try:
        if driver is not None:
            # The files are there before the payload starts: it never reads a bench without.
            driver.begin()
        bench.start()
    except BenchError as exc:
        print(f"hil-bench: {exc}", file=sys.stderr)
        bench.stop()
        return EXIT_FAILED
    started = time.monotonic()
    timers = [threading.Timer(at, bench.link.cut, (length,)) for at, length in cuts]
    try:
        print(f"ground-port: {bench.ground_port}", flush=True)
        print(f"state-dir: {state_dir}\nflight-log: {bench.flight_log}", flush=True)
        print(
            f"line: {args.baud} baud, seed {args.seed}; uplink {uplink}; downlink {downlink}",
            flush=True,
        )
        print(f"TM coding: {bench.tm_coding.value}", flush=True)
        if driver is None:
            print(
                f"thermal model: baseplate {baseplate:g} C, {time_scale:g}x real time", flush=True
            )
        else:
            print(describe_flight(driver), flush=True)
            for event in driver.events:  # under way at the start, told after the ports
                say(event)
            driver.on_event = say
            driver.start()
        if bench.key_file is None:
            print("uplink: unauthenticated (anyone on the link commands the payload)", flush=True)
        else:
            print(
                f"uplink-keys: {bench.key_file} (export GROUNDSW_KEYS={bench.key_file})", flush=True
            )
        for timer in timers:
            timer.daemon = True
            timer.start()
        told = 0
        while not stopper.event.wait(args.stats_interval):
            told = _tell_exits(bench, told)
            failure = bench.flight_failure()
            if failure is not None:  # its supervisor restarts it, up to its start limit
                print(
                    f"hil-bench: payload-flight stays down ({failure}); see {bench.flight_log}",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            if bench.link.error is not None:
                print(f"hil-bench: link relay failed: {bench.link.error}", file=sys.stderr)
                return EXIT_FAILED
            if driver is not None and driver.error is not None:
                print(f"hil-bench: the orbit driver failed: {driver.error}", file=sys.stderr)
                return EXIT_FAILED
            print(f"t={time.monotonic() - started:.0f}s {bench.link.describe()}", flush=True)
        print(f"t={time.monotonic() - started:.0f}s {bench.link.describe()}", flush=True)
        return EXIT_OK
    finally:
        for timer in timers:
            timer.cancel()
        if driver is not None:
            driver.stop()
        bench.stop()


def _tell_exits(bench: Bench, told: int) -> int:
    """Print the payload's ends since the first `told` (its supervisor restarts it); how many
    are told now. An operator who kills it, or sees it crash, reads it here, not in a log."""
    exits = [] if bench.supervisor is None else list(bench.supervisor.exits)
    for gone in exits[told:]:
        print(
            f"payload-flight (pid {gone.pid}) ended: {gone.result}, {gone.exit_code} "
            f"{gone.exit_status}; its supervisor starts it again",
            flush=True,
        )
    return len(exits)


def describe_flight(driver: OrbitDriver) -> str:
    """The orbit being flown and what its next day holds, in a line or two."""
    flight, clock = driver.flight, driver.orbit_clock
    assert clock is not None
    day = 86400.0
    passes = driver.timeline.passes(flight.orbit_start, flight.orbit_start + day)
    eclipses = driver.timeline.eclipses(flight.orbit_start, flight.orbit_start + day)
    period = flight.tle.period_s
    return (
        f"orbit: {flight.tle.name or flight.tle.catalog_number} over {flight.station.describe()}, "
        f"from {utc_second(flight.orbit_start)}, {flight.time_scale:g}x real time (an orbit of "
        f"{period / 60:.1f} min in {clock.bench_seconds(period):.1f} s); the next day holds "
        f"{len(passes)} passes and {len(eclipses)} eclipses\n"
        f"payload models: battery in the orbit's sunlight ({driver.sunlight_path.name}), "
        f"baseplate {flight.interface.eclipse_c:g} to {flight.interface.sunlit_c:g} C "
        f"({driver.baseplate_path.name})\n"
        # What a planner needs to aim at this bench (docs/planning.md), ready to paste.
        f"plan for it with: groundsw plan --time-scale {flight.time_scale:g} "
        f"--orbit-start {clock.orbit_start!r} --bench-start {clock.bench_start!r}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Die with whoever started us (a test runner, a script), taking the payload along.
    die_with_parent()
    stopper = _Stopper()
    try:
        if args.baud <= 0:
            raise UsageError(f"baud rate {args.baud} is not a positive number")
        if args.flight_port:
            return run_real_board(args, stopper)
        return run_emulated(args, stopper)
    except (UsageError, PortError) as exc:
        print(f"hil-bench: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
