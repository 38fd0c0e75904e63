"""`groundsw plan`: when to run a list of jobs on board between the passes, by the power and
thermal limits, printed as a table; `--compare` sets it beside the naive plan; `--upload` puts
it on the payload (groundsw/plan_upload.py). docs/planning.md.

The planner and the orbit package (numpy, sgp4) are imported by the command itself, so that
every other groundsw command starts without them.
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from groundsw.pass_commands import add_orbit_arguments, hours_option, time_option
from groundsw.transfer import GroundInputError, OperationContext

if TYPE_CHECKING:
    from groundsw.plan.evaluate import Evaluation
    from groundsw.plan.model import OrbitWindows, PlanSettings
    from groundsw.plan.planner import Plan
    from groundsw.plan.power_file import PayloadLimits
    from orbit import Station
    from orbit.clock import OrbitClock

DEFAULT_HORIZON_H = 24.0
MAX_HORIZON_H = 7 * 24.0  # the orbit timeline's own horizon; a TLE is stale long before


def add_plan_commands(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "plan",
        help="plan jobs between the passes by the power and thermal limits; --upload schedules "
        "them on board",
        description="Plan when to release each job on board so that its result is on the "
        "ground by its deadline, the battery above its floor, compute in sunlight where it can "
        "be (docs/planning.md). Times in UTC.",
    )
    parser.add_argument(
        "--jobs",
        type=Path,
        required=True,
        metavar="FILE",
        help="the jobs, TOML or JSON (docs/planning.md)",
    )
    # Not `station`: on the link, that is the ground station serving it (groundsw/cli.py).
    add_orbit_arguments(parser, station_dest="site")
    parser.add_argument(
        "--power",
        type=Path,
        metavar="FILE",
        help="battery, loads, power budget, thermal duty, downlink and margins "
        "(TOML; default: the payload's and the bench's defaults)",
    )
    parser.add_argument(
        "--soc",
        type=_percent,
        metavar="PCT",
        help="the battery's charge now (POWER_STATUS BATTERY_SOC)",
    )
    parser.add_argument(
        "--thermal-duty",
        type=_percent,
        metavar="PCT",
        help="the compute duty the thermal limit allows",
    )
    parser.add_argument(
        "--lead",
        type=_seconds,
        metavar="S",
        help="from the contact's start to the first release, s (60)",
    )
    parser.add_argument(
        "--reserve", type=_percent, metavar="PCT", help="charge kept above the floor (5)"
    )
    parser.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        help="orbit time the plan starts at: ISO 8601 (UTC unless it says), UNIX seconds, now "
        "or +DURATION from now (default: now, on the payload's clock)",
    )
    parser.add_argument(
        "--horizon",
        type=hours_option(MAX_HORIZON_H),
        default=DEFAULT_HORIZON_H,
        metavar="H",
        help=f"hours ahead ({DEFAULT_HORIZON_H:g})",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="the naive plan beside it, simulated by the same model",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    parser.add_argument(
        "--upload",
        action=_UploadAction,
        help="check the models, upload the inputs the payload lacks and schedule "
        "each JOB_SUBMIT at its release time (ST[11])",
    )
    parser.add_argument(
        "--force", action="store_true", help="upload even if the payload's dictionary differs"
    )
    parser.add_argument(
        "--time-scale",
        type=_scale,
        default=1.0,
        metavar="K",
        help="a bench flying the orbit K times faster (--orbit-start)",
    )
    parser.add_argument(
        "--orbit-start",
        metavar="T0",
        help="orbit time the bench started at (ISO 8601, UNIX seconds)",
    )
    parser.add_argument(
        "--bench-start",
        metavar="T",
        help="the bench's clock when it started at T0: ISO 8601, UNIX seconds (default: now)",
    )
    parser.set_defaults(
        offline=run_plan, operation=run_upload, local_check=prepare_upload, upload=False
    )


class _UploadAction(argparse.Action):
    """--upload makes the command an operation on the link (not an offline one)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        namespace.upload = True
        namespace.offline = None


# -- the plan, on the ground ---------------------------------------------------------------------


def run_plan(args: argparse.Namespace) -> int:
    """Without --upload: plan and print; no link, no archive."""
    _show(args, _make(args))
    return 0


def prepare_upload(args: argparse.Namespace) -> None:
    """With --upload, before the link is opened: plan, print, check the input files."""
    from groundsw.job_commands import check_npy

    made = _make(args)
    _show(args, made)
    for release in made.plan.releases:
        check_npy(Path(release.job.input))
    args.plan_made = made


def run_upload(args: argparse.Namespace, ctx: OperationContext) -> int:
    from groundsw.plan_upload import upload_plan

    made: _Made = args.plan_made
    upload_plan(ctx, made.plan, made.clock)
    return 0


@dataclass(frozen=True, slots=True)
class _Made:
    """A plan with what it was made from, for printing and uploading; `naive`: the naive plan
    by the same model, with --compare."""

    plan: Plan
    naive: Evaluation | None
    clock: OrbitClock
    windows: OrbitWindows
    limits: PayloadLimits
    settings: PlanSettings
    station: Station


def _make(args: argparse.Namespace) -> _Made:
    from groundsw.plan.model import PlanInputError
    from orbit import OrbitError

    try:
        return _plan(args)
    except (PlanInputError, OrbitError) as exc:
        raise GroundInputError(str(exc)) from None


def _plan(args: argparse.Namespace) -> _Made:
    from groundsw.plan.baseline import compare
    from groundsw.plan.job_file import parse_jobs
    from groundsw.plan.model import PlanSettings
    from groundsw.plan.orbit_windows import orbit_windows
    from groundsw.plan.planner import plan_jobs
    from groundsw.plan.power_file import parse_limits
    from orbit import parse_station, read_tle

    now = time.time()
    clock = _clock(args, now)
    start = time_option("--from", args.start or "now", clock.to_orbit(now))
    overrides = {
        name: value
        for name, value in (
            ("initial_soc_pct", args.soc),
            ("duty", None if args.thermal_duty is None else args.thermal_duty / 100.0),
            ("lead_s", args.lead),
            ("reserve_pct", args.reserve),
        )
        if value is not None
    }
    document = {} if args.power is None else read_document(args.power, "power file")
    limits = parse_limits(document, baud=args.baud, overrides=overrides)
    jobs = parse_jobs(read_document(args.jobs, "job file"), args.jobs.parent, start)
    station = parse_station(args.site, args.min_elevation)
    tle = read_tle(args.tle)
    settings = PlanSettings(
        start,
        horizon_s=args.horizon * 3600.0,
        lead_s=limits.lead_s,
        reserve_pct=limits.reserve_pct,
        time_scale=clock.time_scale,
    )
    windows = orbit_windows(tle, station, start, settings.end)
    parts = (windows, limits.power, limits.thermal, limits.link, settings)
    if args.compare:
        comparison = compare(jobs, *parts)
        plan, naive = comparison.plan, comparison.naive
    else:
        plan, naive = plan_jobs(jobs, *parts), None
    return _Made(plan, naive, clock, windows, limits, settings, station)


def _show(args: argparse.Namespace, made: _Made) -> None:
    from groundsw.plan.baseline import Comparison
    from groundsw.plan.report import comparison_text, plan_record, plan_text

    power = made.limits.power
    if args.json:
        print(json.dumps(plan_record(made.plan, made.windows, made.clock, made.naive), indent=2))
        return
    print(f"station {made.station.describe()}")
    lines = plan_text(
        made.plan, made.windows, power, made.limits.thermal, made.settings, made.clock
    )
    if made.naive is not None:
        lines += ["", *comparison_text(Comparison(made.plan, made.naive), power)]
    for line in lines:
        print(line)


def _clock(args: argparse.Namespace, now: float) -> OrbitClock:
    from orbit.clock import FLIGHT, OrbitClock

    if args.orbit_start is None:
        if args.time_scale != 1.0 or args.bench_start is not None:
            raise GroundInputError(
                "--time-scale and --bench-start map a bench's clock: give --orbit-start too"
            )
        return FLIGHT
    orbit_start = time_option("--orbit-start", args.orbit_start)
    bench_start = time_option("--bench-start", args.bench_start or "now", now)
    return OrbitClock(orbit_start, bench_start, args.time_scale)


def read_document(path: Path, what: str) -> dict[str, Any]:
    """A TOML file, or JSON when its name ends in .json; GroundInputError in one sentence."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise GroundInputError(f"cannot read the {what} {path}: {reason}") from None
    try:
        is_json = path.suffix.lower() == ".json"
        document = json.loads(text) if is_json else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise GroundInputError(f"the {what} {path} is not valid {kind}: {exc}") from None
    if not isinstance(document, dict):
        raise GroundInputError(f"the {what} {path} must hold a table of keys at the top")
    return document


def _percent(text: str) -> float:
    value = _float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected 0 to 100 %, found {text}")
    return value


def _seconds(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 seconds or more, found {text}")
    return value


def _scale(text: str) -> float:
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a speed-up above 0, found {text}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, found {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a number, found {text!r}")
    return value
