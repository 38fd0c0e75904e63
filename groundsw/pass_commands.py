"""`groundsw passes`: the payload's next passes over a ground station and its eclipses, from a
TLE file. No link, no archive: pure prediction (the `orbit` package, docs/orbit.md).

The orbit package (numpy, sgp4) is imported by the command itself, so that every other
groundsw command starts without it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from groundsw.timespec import TimeSpecError, parse_instant, utc_second, utc_text
from groundsw.transfer import GroundInputError, OneSentenceParser

if TYPE_CHECKING:
    from orbit import Interval, Pass, Station, Tle

DEFAULT_HOURS = 24.0
# orbit.station's default, which the command does not import to start (see the module).
DEFAULT_MIN_ELEVATION_DEG = 10.0
MAX_HOURS = 31 * 24.0  # a TLE is stale long before a month is out
PASS_HEADER = (
    f"{'AOS':<22}{'LOS':<22}{'duration':>8}  {'max elev':>8}  {'highest at':<22}azimuth AOS>LOS"
)
ECLIPSE_HEADER = f"{'start':<22}{'end':<22}{'duration':>8}"


def add_pass_commands(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "passes",
        help="the payload's next passes over a station and its eclipses, from a TLE file",
        description="Predict the passes over a ground station (above its minimum elevation) and "
        "the eclipses (umbra) from a two-line element set; times in UTC.",
    )
    add_orbit_arguments(parser)
    parser.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        help="ISO 8601 time (UTC unless it says otherwise), UNIX seconds, now or +DURATION "
        "from now (default: now)",
    )
    parser.add_argument(
        "--hours",
        type=hours_option(MAX_HOURS),
        default=DEFAULT_HOURS,
        help=f"how far ahead ({DEFAULT_HOURS:g})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    parser.set_defaults(offline=run_passes)


def add_orbit_arguments(parser: argparse.ArgumentParser, station_dest: str = "station") -> None:
    """--tle, --station (into `station_dest`) and --min-elevation, as `passes` and `plan` take
    them; the parser's refusals made one sentence."""
    # The subcommands' parser makes plain ArgumentParsers; these commands' refusals are one
    # sentence like those of the nested commands (the subclass adds no state).
    parser.__class__ = _StationParser
    parser.add_argument("--tle", type=Path, required=True, help="file with one element set")
    parser.add_argument(
        "--station",
        dest=station_dest,
        required=True,
        metavar="LAT,LON[,ALT_M]",
        help="geodetic latitude and longitude in degrees (north, east positive), altitude in "
        "metres; a southern latitude as --station=-33.9,18.4",
    )
    parser.add_argument(
        "--min-elevation",
        type=float,
        default=DEFAULT_MIN_ELEVATION_DEG,
        metavar="DEG",
        help=f"the station's mask: a pass is the time above it ({DEFAULT_MIN_ELEVATION_DEG:g})",
    )


class _StationParser(OneSentenceParser):
    def error(self, message: str) -> NoReturn:
        # argparse takes "-33.9,18.4" for an option: say how to give a southern station.
        if message.startswith("argument --station: expected one argument"):
            message += " (a southern latitude as --station=-33.9,18.4)"
        super().error(message)


def run_passes(args: argparse.Namespace) -> int:
    from orbit import OrbitError

    try:
        return _run(args)
    except OrbitError as exc:
        raise GroundInputError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    from orbit import Orbit, eclipses, parse_station, passes, read_tle

    station = parse_station(args.station, args.min_elevation)
    start = time_option("--from", args.start or "now", time.time())
    end = start + args.hours * 3600.0
    tle = read_tle(args.tle)
    orbit = Orbit(tle)
    found = passes(orbit, station, start, end)
    dark = eclipses(orbit, start, end)
    if args.json:
        print(json.dumps(prediction_record(tle, station, start, end, found, dark), indent=2))
    else:
        for line in prediction_text(tle, station, start, end, found, dark):
            print(line)
    return 0


def time_option(option: str, text: str, now: float | None = None) -> float:
    """The time an option gives (groundsw.timespec.parse_instant: `now` and +DURATION only
    where `now` is given); GroundInputError in one sentence naming the option."""
    try:
        return parse_instant(text, now)
    except TimeSpecError as exc:
        raise GroundInputError(f"{option} {exc}") from None


def prediction_text(
    tle: Tle, station: Station, start: float, end: float, found: list[Pass], dark: list[Interval]
) -> list[str]:
    """The tables `groundsw passes` prints: a header, the passes, the eclipses."""
    lines = [
        f"{tle.label}: epoch {utc_second(tle.epoch)} ({_age(tle.epoch, start)}), period "
        f"{tle.period_s / 60:.1f} min, inclination {tle.inclination_deg:.1f} deg",
        f"station {station.describe()}",
        f"from {utc_second(start)} to {utc_second(end)} ({(end - start) / 3600:g} h); times UTC, "
        "angles in degrees",
        "",
    ]
    contact = sum(min(p.los, end) - max(p.aos, start) for p in found)
    lines.append(
        f"{_count(len(found), 'pass', 'passes')}, {_duration(contact)} above "
        f"{station.min_elevation_deg:g} deg in the window"
    )
    if found:
        lines.append(PASS_HEADER)
        lines.extend(
            f"{utc_second(p.aos):<22}{utc_second(p.los):<22}{_duration(p.duration_s):>8}  "
            f"{p.max_elevation_deg:>8.1f}  {utc_second(p.tca):<22}"
            f"{p.aos_azimuth_deg:.0f}>{p.los_azimuth_deg:.0f}"
            for p in found
        )
    lines.append("")
    lines.append(
        f"{_count(len(dark), 'eclipse', 'eclipses')} (umbra), sunlit "
        f"{100 * sunlit_fraction(dark, start, end):.1f} % of the window"
    )
    if dark:
        lines.append(ECLIPSE_HEADER)
        lines.extend(
            f"{utc_second(e.start):<22}{utc_second(e.end):<22}{_duration(e.duration_s):>8}"
            for e in dark
        )
    return lines


def prediction_record(
    tle: Tle, station: Station, start: float, end: float, found: list[Pass], dark: list[Interval]
) -> dict[str, Any]:
    """`--json`: times in ISO 8601 UTC to the millisecond, durations in seconds, angles in
    degrees."""
    return {
        "satellite": {
            "name": tle.name,
            "catalog_number": tle.catalog_number.strip(),
            "epoch": utc_text(tle.epoch),
            "period_s": round(tle.period_s, 3),
            "inclination_deg": tle.inclination_deg,
        },
        "station": {
            "latitude_deg": station.latitude_deg,
            "longitude_deg": station.longitude_deg,
            "altitude_m": station.altitude_m,
            "min_elevation_deg": station.min_elevation_deg,
        },
        "from": utc_text(start),
        "until": utc_text(end),
        "passes": [
            {
                "aos": utc_text(p.aos),
                "los": utc_text(p.los),
                "duration_s": round(p.duration_s, 3),
                "tca": utc_text(p.tca),
                "max_elevation_deg": round(p.max_elevation_deg, 3),
                "aos_azimuth_deg": round(p.aos_azimuth_deg, 2),
                "tca_azimuth_deg": round(p.tca_azimuth_deg, 2),
                "los_azimuth_deg": round(p.los_azimuth_deg, 2),
            }
            for p in found
        ],
        "shadow": "umbra",
        "eclipses": [
            {
                "start": utc_text(e.start),
                "end": utc_text(e.end),
                "duration_s": round(e.duration_s, 3),
            }
            for e in dark
        ],
        "sunlit_fraction": round(sunlit_fraction(dark, start, end), 4),
    }


def sunlit_fraction(dark: list[Interval], start: float, end: float) -> float:
    """The share of [start, end) out of the eclipses (which may reach past either end)."""
    shaded = sum(max(0.0, min(e.end, end) - max(e.start, start)) for e in dark)
    return 1.0 - shaded / (end - start)


def hours_option(most: float) -> Callable[[str], float]:
    """An argparse type: a number of hours above 0 and at most `most`."""

    def hours(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number of hours, found {text!r}"
            ) from None
        if not 0 < value <= most:  # NaN too
            raise argparse.ArgumentTypeError(
                f"expected more than 0 and at most {most:g} hours, found {text}"
            )
        return value

    return hours


def _duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _age(epoch: float, start: float) -> str:
    days = (start - epoch) / 86400.0
    if abs(days) < 0.05:
        return "at the start"
    return f"{abs(days):.1f} days {'before' if days > 0 else 'after'} the start"


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"
