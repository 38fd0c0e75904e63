"""TLE parsing: the shipped sample, the epoch against sgp4's own reading, and refusals that name
the line, what was expected and what was found; every one-character corruption is caught or
harmless."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest
from sgp4.api import Satrec

from orbit import TleError, parse_tle, read_tle
from orbit.tle import LINE_LENGTH, checksum
from tests.unit.orbit.samples import SAMPLE_PATH, SSO_1030, sample

ISS = (
    "ISS (ZARYA)\n"
    "1 25544U 98067A   08264.51782528 -.00002182  00000-0 -11606-4 0  2927\n"
    "2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.72125391563537\n"
)


def lines(text: str) -> list[str]:
    return text.strip().splitlines()


def signed(line: str) -> str:
    """A line's first 68 columns with the checksum digit they call for: an edited line that
    only the edit itself can make refused."""
    return line + str(checksum(line))


def test_the_shipped_sample_is_a_500_km_orbit_with_valid_checksums() -> None:
    tle = sample()
    assert tle.name == "AIPAYLOAD-1" and tle.catalog_number == "99999"
    assert tle.epoch == calendar.timegm((2026, 11, 30, 12, 0, 0))
    assert (tle.inclination_deg, tle.eccentricity) == (53.0, 0.00012)
    assert 94.0 < tle.period_s / 60 < 95.0
    for line in (tle.line1, tle.line2):
        assert len(line) == LINE_LENGTH and int(line[-1]) == checksum(line)
    assert tle.label == "AIPAYLOAD-1 (99999)"


def test_fields_and_epoch_read_as_sgp4_reads_them() -> None:
    tle = parse_tle(ISS)
    satrec = Satrec.twoline2rv(tle.line1, tle.line2)
    epoch_jd = satrec.jdsatepoch + satrec.jdsatepochF
    assert tle.epoch / 86400.0 + 2440587.5 == pytest.approx(epoch_jd, abs=1e-9)
    assert tle.bstar == pytest.approx(satrec.bstar)
    assert tle.bstar == pytest.approx(-0.11606e-4)
    assert tle.mean_motion_rev_per_day == 15.72125391
    assert (tle.raan_deg, tle.arg_perigee_deg, tle.mean_anomaly_deg) == (
        247.4627,
        130.536,
        325.0288,
    )
    assert tle.eccentricity == pytest.approx(satrec.ecco)


def test_two_lines_a_zero_prefixed_name_blank_lines_and_crlf_are_accepted() -> None:
    name, one, two = lines(ISS)
    assert parse_tle(f"{one}\n{two}\n").name == ""
    assert parse_tle(f"{one}\n{two}").label == "catalog number 25544"
    assert parse_tle(f"0 {name}\r\n\r\n{one}  \r\n{two}\r\n").name == name


def test_two_digit_years_follow_the_format_rule() -> None:
    _, one, two = lines(ISS)
    for digits, year in (("57", 1957), ("99", 1999), ("00", 2000), ("56", 2056)):
        line = signed(one[:18] + digits + one[20:68])
        expected = calendar.timegm((year, 1, 1, 0, 0, 0)) + 263.51782528 * 86400.0
        assert parse_tle(f"{line}\n{two}").epoch == pytest.approx(expected, abs=1e-3)


def refusal(text: str) -> str:
    with pytest.raises(TleError) as caught:
        parse_tle(text)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_wrong_checksum_names_the_line_and_both_digits() -> None:
    _name, one, two = lines(ISS)
    bad = two[:-1] + str((int(two[-1]) + 3) % 10)
    assert refusal(f"{one}\n{bad}") == (
        f"line 2: expected checksum digit {two[-1]} (its digits and minus signs summed, "
        f"modulo 10), found {bad[-1]}"
    )


def test_format_refusals_say_where_what_was_expected_and_what_was_found() -> None:
    _name, one, two = lines(ISS)
    assert refusal(f"{one[:-2]}\n{two}") == (
        f"line 1: expected 69 characters, found 67 ({one[:20]!r}...)"
    )
    assert refusal(f"{two}\n{one}") == "line 1, column 1: expected the line number 1, found '2'"
    shifted = one[:20] + "264.5178252 " + one[32:]
    assert refusal(f"{shifted}\n{two}").startswith(
        "line 1, columns 21-32: expected the epoch day of year (ddd.dddddddd), found "
    )
    stuck = two[:16] + "X" + two[17:]
    assert refusal(f"{one}\n{stuck}") == (
        "line 2, column 17: expected a space between fields, found 'X'"
    )
    other = signed(two[:2] + "25545" + two[7:68])
    assert refusal(f"{one}\n{other}") == (
        "line 2: expected the catalog number of line 1, 25544, found 25545"
    )
    assert refusal(one) == (
        "expected one element set, 2 lines (or 3 with a name line first), found 1 non-blank lines"
    )
    assert "found 6 non-blank lines" in refusal(ISS + ISS)


def test_values_out_of_range_are_refused() -> None:
    _, one, two = lines(ISS)
    steep = signed(two[:8] + "181.0000" + two[16:68])
    assert refusal(f"{one}\n{steep}") == (
        "line 2, columns 9-16: expected the inclination from 0 to 180 degrees, found 181"
    )
    day = signed(one[:20] + "367.00000000" + one[32:68])
    assert refusal(f"{day}\n{two}") == (
        "line 1, columns 21-32: expected a day of year from 1 to 366.99999999, found 367.00000000"
    )
    still = signed(two[:52] + " 0.00000000" + two[63:68])
    assert "expected a mean motion above 0" in refusal(f"{one}\n{still}")


def test_any_single_character_change_is_refused_or_changes_no_element() -> None:
    """A character changed anywhere in either line: the checksum or the column format catches
    it, or it is a field that carries no element (classification, designator, set number)."""
    original = SSO_1030
    elements = (
        original.epoch,
        original.inclination_deg,
        original.raan_deg,
        original.eccentricity,
        original.arg_perigee_deg,
        original.mean_anomaly_deg,
        original.mean_motion_rev_per_day,
        original.bstar,
    )
    accepted = 0
    for which in (1, 2):
        line = original.line1 if which == 1 else original.line2
        for column in range(LINE_LENGTH):
            for char in "0123456789 .-+AU":
                if char == line[column]:
                    continue
                changed = line[:column] + char + line[column + 1 :]
                text = (
                    f"{changed}\n{original.line2}" if which == 1 else f"{original.line1}\n{changed}"
                )
                try:
                    tle = parse_tle(text)
                except TleError:
                    continue
                accepted += 1
                assert (
                    tle.epoch,
                    tle.inclination_deg,
                    tle.raan_deg,
                    tle.eccentricity,
                    tle.arg_perigee_deg,
                    tle.mean_anomaly_deg,
                    tle.mean_motion_rev_per_day,
                    tle.bstar,
                ) == elements, (which, column, char)
    assert 0 < accepted < 100  # letters in the designator, the classification...


def test_read_tle_names_the_file_in_every_refusal(tmp_path: Path) -> None:
    with pytest.raises(TleError, match=r"^cannot read the TLE file .*none\.tle: No such file"):
        read_tle(tmp_path / "none.tle")
    binary = tmp_path / "binary.tle"
    binary.write_bytes(b"1 25544U\xff\n")
    with pytest.raises(
        TleError,
        match=r"binary\.tle is not a TLE file: expected ASCII text, "
        r"found byte 0xFF at offset 8$",
    ):
        read_tle(binary)
    huge = tmp_path / "huge.tle"
    huge.write_text("x" * 70_000)
    with pytest.raises(TleError, match="expected two or three lines, found over 64 KiB"):
        read_tle(huge)
    bad = tmp_path / "bad.tle"
    bad.write_text(ISS.replace("2927", "2928"))
    with pytest.raises(TleError, match=r"bad\.tle: line 1: expected checksum digit 7"):
        read_tle(bad)
    assert SAMPLE_PATH.name == "aipayload-1.tle"
