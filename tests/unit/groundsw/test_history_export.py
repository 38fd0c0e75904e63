"""`tm query` and `events` read back from the archive as text, CSV or JSON, each record with its
ground receipt and onboard generation times."""

from __future__ import annotations

import argparse
import csv
import json
from typing import Any

import pytest

from groundsw.archive import EventRecord, Sample
from groundsw.history_commands import HistoryContext, HistoryError, run_events, run_query
from telemetry_defs.loader import default_dictionary

D = default_dictionary()
RECEIVED = 1_764_064_800.25  # 2025-11-25T10:00:00.250Z
ONBOARD = 1_764_064_800.125


class FakeArchive:
    """The two reads the history commands make."""

    def parameter_samples(
        self, name: str, since: float | None = None, until: float | None = None
    ) -> list[Sample]:
        if name == "DOWNLINK_IDLE_INTERVAL":
            return [Sample(RECEIVED, ONBOARD, 700, 700.0, "nominal")]
        if name == "MODE":
            return [Sample(RECEIVED, None, 1, 1.0, "nominal")]
        return []

    def events(self, since: float | None = None, min_severity: int = 1) -> list[EventRecord]:
        return [EventRecord(1, RECEIVED, ONBOARD, "PARAMETER_SET", 2, 'id=LOG_LEVEL, "x"')]


def run(handler: Any, **options: Any) -> list[str]:
    lines: list[str] = []
    ctx = HistoryContext(FakeArchive(), D, lines.append, None, lambda: RECEIVED + 60)  # type: ignore[arg-type]
    defaults = {"since": "1h", "until": None, "limit": 0, "severity": "info", "follow": False}
    handler(argparse.Namespace(**{**defaults, **options}), ctx)
    return lines


def test_text_shows_the_onboard_time_beside_the_ground_time() -> None:
    lines = run(run_query, parameter="DOWNLINK_IDLE_INTERVAL", format="text")
    assert lines[1].split() == ["received", "(ground)", "generated", "(onboard)", "value"]
    assert lines[2].split() == ["2025-11-25T10:00:00.250Z", "2025-11-25T10:00:00.125Z", "700", "ms"]
    events = run(run_events, format="text")
    assert events[1].split()[:4] == ["2025-11-25T10:00:00.250Z", "2025-11-25T10:00:00.125Z", "LOW",
                                     "PARAMETER_SET"]  # fmt: skip


def test_csv_has_a_header_and_one_row_per_record() -> None:
    rows = list(csv.DictReader(run(run_query, parameter="DOWNLINK_IDLE_INTERVAL", format="csv")))
    assert rows == [{
        "received": "2025-11-25T10:00:00.250Z", "onboard": "2025-11-25T10:00:00.125Z",
        "parameter": "DOWNLINK_IDLE_INTERVAL", "value": "700", "unit": "ms", "raw": "700",
        "limit": "nominal",
    }]  # fmt: skip
    mode = next(csv.DictReader(run(run_query, parameter="MODE", format="csv")))
    assert (mode["value"], mode["raw"], mode["onboard"]) == ("THROTTLED", "1", "")
    events = list(csv.DictReader(run(run_events, format="csv")))
    assert events[0]["text"] == 'id=LOG_LEVEL, "x"' and events[0]["severity"] == "LOW"


def test_json_is_one_document() -> None:
    lines = run(run_query, parameter="DOWNLINK_IDLE_INTERVAL", format="json")
    assert json.loads("\n".join(lines)) == [{
        "received": "2025-11-25T10:00:00.250Z", "onboard": "2025-11-25T10:00:00.125Z",
        "parameter": "DOWNLINK_IDLE_INTERVAL", "value": 700, "unit": "ms", "raw": 700,
        "limit": "nominal",
    }]  # fmt: skip
    assert json.loads("\n".join(run(run_query, parameter="UPTIME", format="json"))) == []
    events = json.loads("\n".join(run(run_events, format="json")))
    assert events[0]["event"] == "PARAMETER_SET" and events[0]["onboard"].endswith(".125Z")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_an_export_does_not_follow(fmt: str) -> None:
    with pytest.raises(HistoryError, match=f"--format {fmt} exports the archive only"):
        run(run_events, format=fmt, follow=True)


def test_an_unknown_format_is_one_sentence() -> None:
    with pytest.raises(HistoryError, match="unknown format 'xml': use text, csv or json"):
        run(run_query, parameter="UPTIME", format="xml")
