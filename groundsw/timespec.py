"""Times as an operator types them: `--since` and `--until` (a duration before now, "10m",
"1h30m", or an ISO time), and the absolute times of `--from`, `--start` and the job file (ISO,
UNIX seconds, or +DURATION after now)."""

from __future__ import annotations

import datetime as dt
import math
import re

_DURATION = re.compile(
    r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$"
)


class TimeSpecError(ValueError):
    """Text that is neither a duration nor an ISO 8601 time."""


def parse_time(text: str, now: float) -> float:
    """The Unix time `text` means: `now` less a duration, or an ISO time (naive = UTC)."""
    value = text.strip()
    duration = _duration_s(value)
    if duration is not None:
        return now - duration
    moment = _iso(value)
    if moment is None:
        raise TimeSpecError(
            f"{text!r} is not a time: give a duration before now such as 90s, 10m, 2h, 1d or "
            "1h30m, or an ISO time such as 2026-11-25T10:00:00Z"
        ) from None
    return moment


def parse_instant(text: str, now: float | None = None) -> float:
    """The Unix time `text` names: UNIX seconds or an ISO 8601 time (naive = UTC); when `now`
    is given, also `now` and +DURATION after it (+90s, +10m, +1h30m). Raises TimeSpecError."""
    value = text.strip()
    if now is not None:
        if value.lower() == "now":
            return now
        duration = _duration_s(value[1:]) if value.startswith("+") else None
        if duration is not None:
            return now + duration
    try:
        unix = float(value)
    except ValueError:
        moment = _iso(value)
    else:
        moment = unix if math.isfinite(unix) else None
    if moment is None:
        relative = ", now, or +DURATION after now (+90s, +10m, +1h30m)" if now is not None else ""
        raise TimeSpecError(
            f"{text!r} is not a time: expected an ISO 8601 time such as 2026-12-01T06:00:00Z, "
            f"UNIX seconds{relative}"
        ) from None
    return moment


def _duration_s(value: str) -> float | None:
    """The seconds in a duration such as 90s, 10m, 1d2h or 1.5h; None if `value` is not one."""
    match = _DURATION.match(value)
    if not (value and match and any(match.groups())):
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def _iso(value: str) -> float | None:
    """The Unix time of an ISO 8601 time (one without a zone is UTC); None if it is not one."""
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def utc_text(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def utc_second(unix: float) -> str:
    """`2026-11-30T23:00:00Z`: to the nearest second, for tables an operator reads."""
    return dt.datetime.fromtimestamp(round(unix), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
