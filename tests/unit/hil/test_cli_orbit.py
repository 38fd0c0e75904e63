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


def test_each_end_of_the_payload_is_told_once(capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from hil.cli import _tell_exits
    from hil.supervisor import Exit

    killed = Exit(4242, -9, "signal", "killed", "KILL", 0.0)
    bench = SimpleNamespace(supervisor=SimpleNamespace(exits=[killed]))
    assert _tell_exits(bench, 0) == 1  # type: ignore[arg-type]
    assert _tell_exits(bench, 1) == 1  # type: ignore[arg-type]
    told = capsys.readouterr().out.splitlines()
    assert told == [
        "payload-flight (pid 4242) ended: signal, killed KILL; its supervisor starts it again"
    ]
    assert _tell_exits(SimpleNamespace(supervisor=None), 0) == 0  # type: ignore[arg-type]
