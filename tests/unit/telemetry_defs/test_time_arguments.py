"""Times an operator types for a `display = "time"` field (the ST[15] commands): UNIX seconds,
an ISO 8601 UTC time, now, now-10m; shown back as UTC; anything else one sentence."""

from __future__ import annotations

import time

import pytest

from telemetry_defs.loader import default_dictionary
from telemetry_defs.model import time_from_text
from telemetry_defs.valuetypes import BadText

D = default_dictionary()
NOW = 1_796_637_600.0  # 2026-12-07T10:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1796637600", 1_796_637_600),
        ("2026-12-07T10:00:00Z", 1_796_637_600),
        ("2026-12-07T10:00:00", 1_796_637_600),  # no zone: UTC, as everything on the link
        ("2026-12-07 11:00:00+01:00", 1_796_637_600),
        ("now", 1_796_637_600),
        ("now-10m", 1_796_637_000),
        ("NOW - 2h", 1_796_630_400),
        ("now-1.5d", 1_796_508_000),
    ],
)
def test_times_as_typed(text: str, expected: int) -> None:
    assert time_from_text(text, "start", NOW) == expected


def test_a_wrong_time_is_one_sentence() -> None:
    with pytest.raises(BadText, match="'yesterday' is not a time") as refused:
        time_from_text("yesterday", "start", NOW)
    assert "\n" not in str(refused.value)


def test_a_retrieval_typed_as_an_operator_would() -> None:
    command, data = D.command_from_text(
        "STORE_RETRIEVE_RANGE", ["store=ALL", "start=2026-12-07T10:00:00Z", "end=now"]
    )
    values = command.decode(data)
    assert values["store"] == 1 and values["start"] == 1_796_637_600
    assert abs(values["end"] - time.time()) < 5
    assert "start=2026-12-07T10:00:00Z" in command.layout.to_text(values)
