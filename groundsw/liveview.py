"""The live telemetry table: latest value of every parameter, coloured by its limits."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from telemetry_defs.model import DecodedTm, Dictionary, LimitState, Severity, TmKind
from telemetry_defs.valuetypes import EnumType

EVENTS_SHOWN = 5
# A value is stale when its structure has missed this many reports.
STALE_INTERVALS = 3

_STYLE = {LimitState.NOMINAL: "green", LimitState.YELLOW: "bold yellow", LimitState.RED: "bold red"}
_SEVERITY_STYLE = {
    Severity.INFO: "white",
    Severity.LOW: "cyan",
    Severity.MEDIUM: "yellow",
    Severity.HIGH: "bold red",
}


@dataclass(frozen=True)
class Latest:
    raw: object
    received_at: float


@dataclass(frozen=True)
class SeenEvent:
    received_at: float
    name: str
    severity: Severity
    text: str


class LiveTable:
    """Latest values and events, rendered for a terminal or as plain lines."""

    def __init__(self, dictionary: Dictionary) -> None:
        self.dictionary = dictionary
        self.latest: dict[str, Latest] = {}
        self.events: deque[SeenEvent] = deque(maxlen=EVENTS_SHOWN)
        self.banner: str | None = None

    def update(self, decoded: DecodedTm, received_at: float, onboard_time: float | None) -> None:
        for name, raw in decoded.parameters.items():
            self.latest[name] = Latest(raw, received_at)
        if decoded.kind is TmKind.EVENT and decoded.severity is not None:
            text = self.dictionary.describe_values(decoded)
            self.events.append(SeenEvent(received_at, decoded.name, decoded.severity, text))

    def set_banner(self, text: str | None) -> None:
        self.banner = text

    def _rows(self, now: float) -> list[tuple[str, list[tuple[str, str, str, str, str, bool]]]]:
        """Per structure: (parameter, value, raw, state, age, stale) rows."""
        groups = []
        for structure in self.dictionary.housekeeping.values():
            rows = []
            for p in structure.parameters:
                seen = self.latest.get(p.name)
                if seen is None:
                    rows.append((p.name, "—", "", "", "", False))
                    continue
                state = p.limit_state(seen.raw)
                show_raw = p.calibration is not None or isinstance(p.type, EnumType)
                age = now - seen.received_at
                stale = age > STALE_INTERVALS * structure.interval_ms / 1000
                rows.append(
                    (
                        p.name,
                        p.to_text(seen.raw),
                        str(seen.raw) if show_raw else "",
                        state.value.upper(),
                        f"{age:.0f} s",
                        stale,
                    )
                )
            groups.append((structure.name, rows))
        return groups

    def render(self, now: float) -> RenderableType:
        parts: list[RenderableType] = []
        if self.banner:
            parts.append(Text(self.banner, style="bold white on red"))
        table = Table(title=f"{self.dictionary.name} {self.dictionary.version}", expand=False)
        for column in ("parameter", "value", "raw", "limit", "age"):
            table.add_column(column)
        for name, rows in self._rows(now):
            table.add_row(Text(name, style="bold underline"), "", "", "", "")
            for pname, value, raw, state, age, stale in rows:
                style = "dim" if stale or not state else _STYLE[LimitState(state.lower())]
                table.add_row(pname, value, raw, state, age, style=style)
        parts.append(table)
        events = Table(title="events", expand=False)
        for column in ("age", "severity", "event", "data"):
            events.add_column(column)
        for e in reversed(self.events):
            events.add_row(
                f"{now - e.received_at:.0f} s",
                e.severity.name,
                e.name,
                e.text,
                style=_SEVERITY_STYLE[e.severity],
            )
        parts.append(events)
        return Group(*parts)

    def plain_lines(self, now: float) -> list[str]:
        lines = []
        if self.banner:
            lines.append(f"!!! {self.banner} !!!")
        for name, rows in self._rows(now):
            lines.append(f"[{name}]")
            for pname, value, raw, state, age, stale in rows:
                flag = "" if state in ("", "NOMINAL") else f" {state}"
                extra = f" (raw {raw})" if raw else ""
                old = " stale" if stale else ""
                age_text = f" {age}" if age else ""
                lines.append(f"  {pname:<34} {value}{extra}{flag}{age_text}{old}")
        for e in reversed(self.events):
            lines.append(f"event {e.severity.name} {e.name} {e.text}".rstrip())
        return lines
