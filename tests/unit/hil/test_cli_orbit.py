"""`hil-bench run`'s orbit flags: what each mistake says (tests/hil/test_orbit_bench_cli.py runs
one through the command itself: exit code 2, one line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.cli import UsageError, build_parser, orbit_flight

TLE = str(Path(__file__).resolve().parents[3] / "orbit" / "data" / "aipayload-1.tle")


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--station", "48.1,11.6"], "--station needs --tle"),
        (["--min-elevation", "5"], "--min-elevation needs --tle"),
        (["--tle", TLE], "--tle needs --station"),
        (["--tle", "/no/such.tle", "--station", "48.1,11.6"], "cannot read the TLE file"),
        (["--tle", TLE, "--station", "91,11.6"], "latitude from -90 to 90"),
        (["--tle", TLE, "--station=48.1,11.6", "--start", "soon"], "is not a time"),
        (["--tle", TLE, "--station=48.1,11.6", "--baseplate", "30"], "--baseplate"),
    ],
)
def test_a_bad_orbit_flag_is_one_sentence(flags: list[str], said: str) -> None:
    with pytest.raises(UsageError) as refused:
        orbit_flight(build_parser().parse_args(["run", *flags]), 1.0)
    assert said in str(refused.value) and "\n" not in str(refused.value)


def test_the_flags_give_the_orbit_from_the_tles_epoch_by_default() -> None:
    args = build_parser().parse_args(["run", "--tle", TLE, "--station", "48.1,11.6,550"])
    flight = orbit_flight(args, 200.0)
    assert flight is not None
    assert flight.orbit_start == flight.tle.epoch and flight.time_scale == 200.0
    assert flight.station.min_elevation_deg == 10.0
    assert orbit_flight(build_parser().parse_args(["run"]), 1.0) is None
