"""Archived telemetry and events for other tools: `--format csv` (a header row, then one row per
record) or `--format json` (an array, one record per line), each record with its ground receipt
and onboard generation times in ISO 8601 UTC to the millisecond."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from groundsw.archive import EventRecord, Sample
from groundsw.timespec import utc_text
from telemetry_defs.model import Parameter, Severity
from telemetry_defs.valuetypes import EnumType

FORMATS = ("text", "csv", "json")
SAMPLE_COLUMNS = ("received", "onboard", "parameter", "value", "unit", "raw", "limit")
EVENT_COLUMNS = ("received", "onboard", "severity", "event", "text")


def iso_time(unix: float | None) -> str | None:
    """`2026-11-25T10:00:00.123Z`; None for a time the archive does not have."""
    return None if unix is None else utc_text(unix)


def sample_record(parameter: Parameter, sample: Sample) -> dict[str, Any]:
    """One archived value: its engineering value (an enumeration's name) and its raw value."""
    return {
        "received": iso_time(sample.received_at),
        "onboard": iso_time(sample.onboard_time),
        "parameter": parameter.name,
        "value": _engineering(parameter, sample.raw),
        "unit": parameter.unit,
        "raw": sample.raw,
        "limit": sample.limit_state,
    }


def _engineering(parameter: Parameter, raw: Any) -> Any:
    # As Parameter.to_text reads it, without the unit: an enumeration by its name, a hex
    # display as hex, anything else calibrated.
    if isinstance(parameter.type, EnumType) or parameter.display == "hex":
        return parameter.field.to_text(raw)
    return parameter.engineering(raw)


def event_record(event: EventRecord) -> dict[str, Any]:
    """One archived event."""
    return {
        "received": iso_time(event.received_at),
        "onboard": iso_time(event.onboard_time),
        "severity": Severity(event.severity).name,
        "event": event.name,
        "text": event.text,
    }


def write_records(
    fmt: str, columns: Sequence[str], records: Iterable[dict[str, Any]], out: Callable[[str], None]
) -> None:
    """Every record in `fmt` ("csv" or "json"), one line each (CSV begins with its header)."""
    if fmt == "csv":
        out(_csv_row(columns))
        for record in records:
            out(_csv_row([_csv_cell(record[c]) for c in columns]))
        return
    if fmt != "json":
        raise ValueError(f"unknown export format {fmt!r}")
    out("[")
    first = True
    for record in records:
        # A separator before every record but the first: each one is printed as it comes.
        out(("" if first else ",") + json.dumps(record, ensure_ascii=False))
        first = False
    out("]")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def _csv_row(cells: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue()
