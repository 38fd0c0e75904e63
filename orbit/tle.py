"""Two-line element sets (TLE): the fixed-column format checked field by field, with its
checksums, before SGP4 sees it.

sgp4's own reader accepts a line with a wrong checksum, and reads a shifted column as another
number, so an element set mangled by a copy and paste would give a plausible but wrong orbit;
here every line must be the format to the column. Errors name the line, what was expected and
what was found. The one I/O of the package is `read_tle`.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from pathlib import Path

from orbit.errors import TleError

LINE_LENGTH = 69
SECONDS_PER_DAY = 86400.0
# A TLE file is a few hundred bytes; anything much larger is not one (and not read whole).
MAX_FILE_BYTES = 64 * 1024

_ANGLE = r" *\d{1,3}\.\d{4}"
_EXPONENT = r"[ +-]\d{5}[+-]\d"  # " 12345-4" means +0.12345e-4

# (first column, last column, what it holds, regular expression), columns counted from 1 as
# the format's definition counts them; every column not listed must be a space.
_LINE1 = (
    (1, 1, "the line number 1", r"1"),
    (3, 7, "the catalog number", r"[0-9A-Z ][0-9 ]{3}[0-9]"),
    (8, 8, "the classification (U, C or S)", r"[UCS ]"),
    (10, 17, "the international designator", r"[0-9A-Z ]{8}"),
    (19, 20, "the epoch year (two digits)", r"\d\d"),
    (21, 32, "the epoch day of year (ddd.dddddddd)", r"[ \d]{2}\d\.\d{8}"),
    (34, 43, "the first derivative of mean motion (.dddddddd)", r"[ +-]\.\d{8}"),
    (45, 52, "the second derivative of mean motion (ddddd-d)", _EXPONENT),
    (54, 61, "the drag term B* (ddddd-d)", _EXPONENT),
    (63, 63, "the ephemeris type (a digit)", r"[\d ]"),
    (65, 68, "the element set number", r"[ \d]{3}\d"),
    (69, 69, "the checksum digit", r"\d"),
)
_LINE2 = (
    (1, 1, "the line number 2", r"2"),
    (3, 7, "the catalog number", r"[0-9A-Z ][0-9 ]{3}[0-9]"),
    (9, 16, "the inclination in degrees (ddd.dddd)", _ANGLE),
    (18, 25, "the right ascension of the ascending node in degrees (ddd.dddd)", _ANGLE),
    (27, 33, "the eccentricity (7 digits, decimal point assumed)", r"\d{7}"),
    (35, 42, "the argument of perigee in degrees (ddd.dddd)", _ANGLE),
    (44, 51, "the mean anomaly in degrees (ddd.dddd)", _ANGLE),
    (53, 63, "the mean motion in revolutions per day (dd.dddddddd)", r" *\d{1,2}\.\d{8}"),
    (64, 68, "the revolution number at epoch", r"[ \d]{4}\d"),
    (69, 69, "the checksum digit", r"\d"),
)


@dataclass(frozen=True, slots=True)
class Tle:
    """One element set, checked. Angles in degrees, the epoch in UNIX seconds (UTC)."""

    name: str
    line1: str
    line2: str
    catalog_number: str
    epoch: float
    inclination_deg: float
    raan_deg: float
    eccentricity: float
    arg_perigee_deg: float
    mean_anomaly_deg: float
    mean_motion_rev_per_day: float
    bstar: float

    @property
    def period_s(self) -> float:
        """The period the element set states: a day over its (Kozai) mean motion."""
        return SECONDS_PER_DAY / self.mean_motion_rev_per_day

    @property
    def label(self) -> str:
        """`NAME (catalog number)`, or the catalog number alone for a two-line set."""
        number = self.catalog_number.strip()
        return f"{self.name} ({number})" if self.name else f"catalog number {number}"


def checksum(line: str) -> int:
    """The TLE checksum of a line's first 68 columns: its digits summed, each minus sign
    counted as 1, modulo 10."""
    return sum(int(c) if c.isdigit() else c == "-" for c in line[: LINE_LENGTH - 1]) % 10


def parse_tle(text: str) -> Tle:
    """One element set from its text: two lines, or three with a name line first (a leading
    "0 " on the name line, as some catalogs write it, is dropped). Blank lines and trailing
    spaces are ignored. Raises TleError."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if len(lines) == 3:
        name_line, line1, line2 = lines
        name = name_line[2:].strip() if name_line.startswith("0 ") else name_line.strip()
    elif len(lines) == 2:
        name, (line1, line2) = "", lines
    else:
        raise TleError(
            f"expected one element set, 2 lines (or 3 with a name line first), found "
            f"{len(lines)} non-blank lines"
        )
    _check_line(1, line1, _LINE1)
    _check_line(2, line2, _LINE2)
    if line1[2:7] != line2[2:7]:
        raise TleError(
            f"line 2: expected the catalog number of line 1, {line1[2:7].strip()}, found "
            f"{line2[2:7].strip()}"
        )
    mean_motion = float(line2[52:63])
    if mean_motion <= 0:
        raise TleError(
            f"line 2: expected a mean motion above 0 revolutions per day, found "
            f"{line2[52:63].strip()}"
        )
    inclination = _angle(line2, 9, "inclination", 180.0)
    return Tle(
        name=name,
        line1=line1,
        line2=line2,
        catalog_number=line1[2:7],
        epoch=_epoch(line1),
        inclination_deg=inclination,
        raan_deg=_angle(line2, 18, "right ascension of the ascending node", 360.0),
        eccentricity=float("0." + line2[26:33]),
        arg_perigee_deg=_angle(line2, 35, "argument of perigee", 360.0),
        mean_anomaly_deg=_angle(line2, 44, "mean anomaly", 360.0),
        mean_motion_rev_per_day=mean_motion,
        bstar=_exponent_field(line1[53:61]),
    )


def read_tle(path: Path) -> Tle:
    """The element set in a text file (the package's one I/O). Raises TleError, naming the
    file, for a file that cannot be read or does not hold exactly one well-formed set."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise TleError(f"cannot read the TLE file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise TleError(
            f"{path} is not a TLE file: expected two or three lines, found over "
            f"{MAX_FILE_BYTES // 1024} KiB"
        )
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise TleError(
            f"{path} is not a TLE file: expected ASCII text, found byte 0x{data[exc.start]:02X} "
            f"at offset {exc.start}"
        ) from None
    try:
        return parse_tle(text)
    except TleError as exc:
        raise TleError(f"{path}: {exc}") from None


def _check_line(number: int, line: str, fields: tuple[tuple[int, int, str, str], ...]) -> None:
    if len(line) != LINE_LENGTH:
        raise TleError(
            f"line {number}: expected {LINE_LENGTH} characters, found {len(line)} "
            f"({line[:20]!r}...)"
        )
    used: set[int] = set()
    for first, last, what, pattern in fields:
        found = line[first - 1 : last]
        if not re.fullmatch(pattern, found):
            where = f"column {first}" if first == last else f"columns {first}-{last}"
            raise TleError(f"line {number}, {where}: expected {what}, found {found!r}")
        used.update(range(first, last + 1))
    for column in range(1, LINE_LENGTH + 1):
        if column not in used and line[column - 1] != " ":
            raise TleError(
                f"line {number}, column {column}: expected a space between fields, found "
                f"{line[column - 1]!r}"
            )
    expected = checksum(line)
    if int(line[-1]) != expected:
        raise TleError(
            f"line {number}: expected checksum digit {expected} (its digits and minus signs "
            f"summed, modulo 10), found {line[-1]}"
        )


def _epoch(line1: str) -> float:
    # Two-digit years: 57-99 are 1957-1999, 00-56 are 2000-2056 (the format's own rule).
    two_digits = int(line1[18:20])
    year = 1900 + two_digits if two_digits >= 57 else 2000 + two_digits
    day = float(line1[20:32])
    days_in_year = 366 if calendar.isleap(year) else 365
    if not 1.0 <= day < days_in_year + 1:
        raise TleError(
            f"line 1, columns 21-32: expected a day of year from 1 to {days_in_year}.99999999, "
            f"found {line1[20:32].strip()}"
        )
    year_start = calendar.timegm((year, 1, 1, 0, 0, 0))
    return year_start + (day - 1.0) * SECONDS_PER_DAY


def _angle(line: str, first: int, what: str, limit: float) -> float:
    value = float(line[first - 1 : first + 7])
    if value > limit:
        raise TleError(
            f"line 2, columns {first}-{first + 7}: expected the {what} from 0 to {limit:g} "
            f"degrees, found {value:g}"
        )
    return value


def _exponent_field(text: str) -> float:
    # " 12345-4" is +0.12345e-4: mantissa with an assumed leading decimal point, then exponent.
    sign = -1.0 if text[0] == "-" else 1.0
    return sign * float("0." + text[1:6]) * 10.0 ** int(text[6:8])
