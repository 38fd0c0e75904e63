"""`--since` and `--until` values: a duration before now ("10m", "1h30m") or an ISO time."""

from __future__ import annotations

import datetime as dt
import re

_DURATION = re.compile(
    r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$"
)


class TimeSpecError(ValueError):
    """Text that is neither a duration nor an ISO 8601 time."""


def parse_time(text: str, now: float) -> float:
    """The Unix time `text` means: `now` less a duration, or an ISO time (naive = UTC)."""
    value = text.strip()
    match = _DURATION.match(value)
    if value and match and any(match.groups()):
        days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        return now - (days * 86400 + hours * 3600 + minutes * 60 + seconds)
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise TimeSpecError(
            f"{text!r} is not a time: give a duration before now such as 90s, 10m, 2h, 1d or "
            "1h30m, or an ISO time such as 2026-11-25T10:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def utc_text(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
