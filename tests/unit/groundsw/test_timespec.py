"""Times as typed: `--since` / `--until` (durations before now and ISO times), the absolute
times of `--from` and `--start` (ISO, UNIX seconds, now, +DURATION), and the UTC text we print."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from groundsw.timespec import TimeSpecError, parse_instant, parse_time, utc_second, utc_text

NOW = 1_800_000_000.0
T0 = 1_795_600_800.0  # 2026-11-25T10:00:00Z


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("10m", 600),
        ("2h", 7200),
        ("1d", 86_400),
        ("1h30m", 5400),
        ("1d2h3m4s", 86_400 + 7200 + 180 + 4),
        ("1.5h", 5400),
        ("0.5s", 0.5),
        ("0s", 0),
        ("  10m\n", 600),
    ],
)
def test_a_duration_is_counted_back_from_now(text: str, seconds: float) -> None:
    assert NOW - parse_time(text, NOW) == pytest.approx(seconds, abs=1e-6)
    assert NOW + 1000 - parse_time(text, NOW + 1000) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize(
    ("text", "unix"),
    [
        ("2026-11-25T10:00:00Z", T0),
        ("2026-11-25T10:00:00", T0),  # naive means UTC, not local time
        ("2026-11-25 10:00:00", T0),
        ("2026-11-25T12:00:00+02:00", T0),
        ("2026-11-25T05:00:00-05:00", T0),
        ("2026-11-25T10:00:00.250Z", T0 + 0.25),
        ("2026-11-25T10:00Z", T0),
        ("2026-11-25", T0 - 10 * 3600),
    ],
)
def test_an_iso_time_is_taken_as_it_is(text: str, unix: float) -> None:
    assert parse_time(text, NOW) == pytest.approx(unix, abs=1e-6)
    assert parse_time(text, 0.0) == pytest.approx(unix, abs=1e-6)  # `now` plays no part


def test_naive_times_do_not_depend_on_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_time("2026-11-25T10:00:00", NOW) == T0
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    "text",
    ["", "   ", "yesterday", "10x", "1h30", "m", "h1", "-10m", "10 m", "2026-13-01T00:00:00Z"],
)
def test_text_that_is_no_time_is_refused_with_a_sentence_naming_it(text: str) -> None:
    with pytest.raises(TimeSpecError) as caught:
        parse_time(text, NOW)

    message = str(caught.value)
    assert message.startswith(f"{text!r} is not a time: ")
    assert "10m" in message and "2026-11-25T10:00:00Z" in message  # shows what would do
    assert caught.value.__suppress_context__
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("text", "unix"),
    [
        ("2026-11-25T10:00:00Z", T0),
        ("2026-11-25T12:00:00+02:00", T0),
        ("2026-11-25T10:00:00", T0),  # naive means UTC
        ("1795600800", T0),
        (" 1795600800.25 ", T0 + 0.25),
    ],
)
def test_an_instant_is_an_iso_time_or_unix_seconds_whatever_the_clock(
    text: str, unix: float
) -> None:
    assert parse_instant(text) == pytest.approx(unix, abs=1e-6)
    assert parse_instant(text, NOW) == pytest.approx(unix, abs=1e-6)


def test_with_a_clock_an_instant_may_be_now_or_a_duration_after_it() -> None:
    assert parse_instant("now", NOW) == parse_instant(" NOW ", NOW) == NOW
    assert parse_instant("+1h30m", NOW) == NOW + 5400
    assert parse_instant("+0.5s", NOW) == NOW + 0.5


@pytest.mark.parametrize(
    ("text", "now"),
    [
        ("now", None),  # no clock to read it from
        ("+10m", None),
        ("10m", NOW),  # a bare duration: before or after?
        ("-10m", NOW),
        ("+", NOW),
        ("nan", NOW),
        ("inf", None),
        ("tomorrow", NOW),
        ("2026-13-01T00:00:00Z", None),
    ],
)
def test_what_is_not_an_instant_is_refused_naming_it(text: str, now: float | None) -> None:
    with pytest.raises(TimeSpecError) as caught:
        parse_instant(text, now)
    message = str(caught.value)
    assert message.startswith(f"{text!r} is not a time: expected an ISO 8601 time such as ")
    assert ("+DURATION" in message) == (now is not None)


def test_utc_second_rounds_to_the_nearest_second() -> None:
    assert utc_second(T0) == "2026-11-25T10:00:00Z"
    assert utc_second(T0 + 0.4) == "2026-11-25T10:00:00Z"
    assert utc_second(T0 + 59.6) == "2026-11-25T10:01:00Z"


def test_utc_text_is_iso_with_milliseconds_and_z() -> None:
    assert utc_text(T0) == "2026-11-25T10:00:00.000Z"
    assert utc_text(T0 + 0.25) == "2026-11-25T10:00:00.250Z"
    assert utc_text(0.0) == "1970-01-01T00:00:00.000Z"
    assert utc_text(T0 + 0.9999) == "2026-11-25T10:00:00.999Z"  # truncated, never a second ahead


@given(st.integers(min_value=0, max_value=4_102_444_800_000))  # up to 2100, in milliseconds
def test_utc_text_reads_back_as_the_same_time(ms: int) -> None:
    unix = ms / 1000
    text = utc_text(unix)
    assert parse_time(text, NOW) == pytest.approx(unix, abs=1e-6)
    assert utc_text(parse_time(text, NOW)) == text
