"""`groundsw passes` through its real entry point: the tables and the JSON say what the orbit
package computes, every refusal is one sentence with exit 2. (That the orbit package is loaded
only by this command and `plan`: tests/unit/groundsw/test_plan_commands.py.)"""

from __future__ import annotations

import calendar
import datetime as dt
import importlib.resources
import json
import time
from pathlib import Path

import pytest

from groundsw import pass_commands
from groundsw.cli import EXIT_USAGE
from orbit import Orbit, eclipses, parse_station, passes, read_tle
from orbit.station import DEFAULT_MIN_ELEVATION_DEG
from tests.unit.groundsw.cli_runs import groundsw, in_process, unix

START = "2026-11-30T12:00:00Z"
START_UNIX = calendar.timegm((2026, 11, 30, 12, 0, 0))


@pytest.fixture(scope="module")
def sample_tle() -> Path:
    with importlib.resources.as_file(
        importlib.resources.files("orbit").joinpath("data/aipayload-1.tle")
    ) as path:
        return path


def test_the_tables_list_the_passes_and_eclipses_of_the_window(sample_tle: Path) -> None:
    done = groundsw("passes", "--tle", str(sample_tle), "--station", "48.1,11.6,550",
                    "--from", START)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "AIPAYLOAD-1 (99999): epoch 2026-11-30T12:00:00Z (at the start), period 94.6 min, "
        "inclination 53.0 deg"
    )
    assert lines[1] == "station 48.1000N 11.6000E 550 m, minimum elevation 10 deg"
    assert lines[2].startswith("from 2026-11-30T12:00:00Z to 2026-12-01T12:00:00Z (24 h)")
    tle = read_tle(sample_tle)
    expected = passes(Orbit(tle), parse_station("48.1,11.6,550"), START_UNIX, START_UNIX + 86400)
    heading = next(
        i for i, line in enumerate(lines) if line.startswith(f"{len(expected)} passes, ")
    )
    rows = lines[heading + 2 : heading + 2 + len(expected)]
    for row, found in zip(rows, expected, strict=True):
        aos, los, duration, elevation, tca, azimuths = row.split()
        assert aos == _second(found.aos) and los == _second(found.los) and tca == _second(found.tca)
        assert float(elevation) == pytest.approx(found.max_elevation_deg, abs=0.05)
        assert duration == "{}m{:02d}s".format(*divmod(round(found.duration_s), 60))
        assert azimuths == f"{found.aos_azimuth_deg:.0f}>{found.los_azimuth_deg:.0f}"
    dark = eclipses(tle, START_UNIX, START_UNIX + 86400)
    heading = next(i for i, line in enumerate(lines) if "eclipses (umbra)" in line)
    assert lines[heading].startswith(f"{len(dark)} eclipses (umbra), sunlit 6")
    assert lines[heading + 2].split()[:2] == [_second(dark[0].start), _second(dark[0].end)]
    assert len(lines) == heading + 2 + len(dark)


def test_json_carries_every_pass_and_eclipse_to_the_millisecond(
    capsys: pytest.CaptureFixture[str], sample_tle: Path
) -> None:
    code, out, err = in_process(
        capsys, "passes", "--tle", str(sample_tle), "--station=-33.9,18.4,30",
        "--min-elevation", "5", "--from", "2026-11-30T13:00:00+01:00", "--hours", "48", "--json",
    )  # fmt: skip
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["from"] == "2026-11-30T12:00:00.000Z"
    assert document["until"] == "2026-12-02T12:00:00.000Z"
    assert document["station"] == {
        "latitude_deg": -33.9, "longitude_deg": 18.4, "altitude_m": 30.0, "min_elevation_deg": 5.0,
    }  # fmt: skip
    station = parse_station("-33.9,18.4,30", 5.0)
    expected = passes(read_tle(sample_tle), station, START_UNIX, START_UNIX + 2 * 86400)
    assert len(document["passes"]) == len(expected) >= 8
    for record, found in zip(document["passes"], expected, strict=True):
        assert unix(record["aos"]) == pytest.approx(found.aos, abs=1e-3)
        assert unix(record["los"]) == pytest.approx(found.los, abs=1e-3)
        assert record["duration_s"] == pytest.approx(found.duration_s, abs=1e-3)
        assert record["max_elevation_deg"] == pytest.approx(found.max_elevation_deg, abs=1e-3)
    assert len(document["eclipses"]) >= 30 and document["shadow"] == "umbra"
    assert 0.60 < document["sunlit_fraction"] < 0.65
    assert document["satellite"]["period_s"] == pytest.approx(5677.04, abs=0.01)


def test_from_defaults_to_now_and_the_header_gives_the_tles_age(
    capsys: pytest.CaptureFixture[str], sample_tle: Path
) -> None:
    before = time.time()
    code, out, _ = in_process(capsys, "passes", "--tle", str(sample_tle), "--station", "48.1,11.6",
                              "--hours", "2")  # fmt: skip
    assert code == 0
    start = unix(out.splitlines()[2].split()[1])
    assert before - 1 <= start <= time.time() + 1
    age = (start - START_UNIX) / 86400
    assert f"({abs(age):.1f} days {'before' if age > 0 else 'after'} the start)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--station", "48.1,11.6"], "passes: the following arguments are required: --tle"),
        (["--tle", "{missing}", "--station", "48.1,11.6"],
         "cannot read the TLE file {missing}: No such file or directory"),
        (["--tle", "{corrupt}", "--station", "48.1,11.6"],
         "{corrupt}: line 2: expected checksum digit 2 (its digits and minus signs summed, "
         "modulo 10), found 3"),
        (["--tle", "{sample}", "--station", "48.1"],
         "expected the station as LAT,LON or LAT,LON,ALT_M (such as 48.1,11.6,550), found "
         "'48.1'"),
        (["--tle", "{sample}", "--station", "148.1,11.6"],
         "expected the station's latitude from -90 to 90 degrees, found 148.1"),
        (["--tle", "{sample}", "--station", "-33.9,18.4"],
         "passes: argument --station: expected one argument (a southern latitude as "
         "--station=-33.9,18.4)"),
        (["--tle", "{sample}", "--station", "48.1,11.6", "--min-elevation", "95"],
         "expected the station's minimum elevation from -5 to 89 degrees, found 95"),
        (["--tle", "{sample}", "--station", "48.1,11.6", "--from", "tomorrow"],
         "--from 'tomorrow' is not a time: expected an ISO 8601 time such as "
         "2026-12-01T06:00:00Z, UNIX seconds, now, or +DURATION after now (+90s, +10m, "
         "+1h30m)"),
        (["--tle", "{sample}", "--station", "48.1,11.6", "--hours", "0"],
         "passes: argument --hours: expected more than 0 and at most 744 hours, found 0"),
        (["--tle", "{sample}", "--station", "48.1,11.6", "--days", "2"],
         "passes: unrecognised arguments: --days 2"),
    ],
)  # fmt: skip
def test_refusals_are_one_sentence_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    sample_tle: Path,
    tmp_path: Path,
    argv: list[str],
    message: str,
) -> None:
    corrupt = tmp_path / "corrupt.tle"
    text = sample_tle.read_text()
    corrupt.write_text(text.replace("  1232\n", "  1233\n"))
    paths = {"sample": str(sample_tle), "missing": str(tmp_path / "none.tle"),
             "corrupt": str(corrupt)}  # fmt: skip
    argv = [a.format(**paths) for a in argv]
    code, out, err = in_process(capsys, "passes", *argv)
    assert (code, out, err) == (EXIT_USAGE, "", f"groundsw: {message.format(**paths)}\n")


def test_the_default_mask_is_the_orbit_packages() -> None:
    # The command keeps its own copy so as to start without the orbit package.
    assert pass_commands.DEFAULT_MIN_ELEVATION_DEG == DEFAULT_MIN_ELEVATION_DEG


def test_a_deep_space_tle_is_refused_through_the_real_entry_point(tmp_path: Path) -> None:
    geostationary = tmp_path / "geo.tle"
    geostationary.write_text(
        "1 26038U 00005A   26333.50000000 -.00000268  00000-0  00000-0 0  9993\n"
        "2 26038   0.0150  84.2350 0002525 161.8520 228.2240  1.00270000 96753\n"
    )
    done = groundsw("passes", "--tle", str(geostationary), "--station", "48.1,11.6")
    assert done.returncode == EXIT_USAGE and done.stdout == ""
    assert done.stderr == (
        "groundsw: catalog number 26038 has a period of 1436.1 minutes: expected a near-Earth "
        "orbit, under 225 minutes\n"
    )


def _second(t: float) -> str:
    return dt.datetime.fromtimestamp(round(t), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
