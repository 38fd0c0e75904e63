"""The live telemetry table: latest value of every parameter, coloured by its limits."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.text import Text

from telemetry_defs.model import DecodedTm, Dictionary, LimitState, Severity, TmKind, UnknownName
from telemetry_defs.valuetypes import EnumType

EVENTS_SHOWN = 5
# A screen too short for every row shows a page of them, the next one after this long.
PAGE_S = 5.0
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
    """Latest values and events, rendered for a terminal (a header with the UTC time and the
    link's state, pages of rows that fit its height, the recent events) or as plain lines."""

    def __init__(
        self,
        dictionary: Dictionary,
        structures: Sequence[str] = (),
        parameters: Sequence[str] = (),
    ) -> None:
        """Show only `structures` and `parameters` (by name) when any are given; UnknownName
        when one is not in the dictionary."""
        self.dictionary = dictionary
        self.latest: dict[str, Latest] = {}
        self.events: deque[SeenEvent] = deque(maxlen=EVENTS_SHOWN)
        self.banner: str | None = None
        self.link: str | None = None
        self.link_down = False
        for name in structures:
            if name not in dictionary.housekeeping:
                known = ", ".join(dictionary.housekeeping)
                raise UnknownName(f"no housekeeping structure {name!r} (there are {known})")
        self._structures = set(structures)
        self._parameters = {dictionary.parameter(name).name for name in parameters}

    def update(self, decoded: DecodedTm, received_at: float, onboard_time: float | None) -> None:
        for name, raw in decoded.parameters.items():
            self.latest[name] = Latest(raw, received_at)
        if decoded.kind is TmKind.EVENT and decoded.severity is not None:
            text = self.dictionary.describe_values(decoded)
            self.events.append(SeenEvent(received_at, decoded.name, decoded.severity, text))

    def set_banner(self, text: str | None) -> None:
        self.banner = text

    def set_link(self, text: str | None, down: bool) -> None:
        """The link's state for the header; `down`: every value shown is from before."""
        self.link = text
        self.link_down = down

    def _rows(self, now: float) -> list[tuple[str, list[tuple[str, str, str, str, str, bool]]]]:
        """Per structure shown: (parameter, value, raw, state, age, stale) rows."""
        groups = []
        for structure in self.dictionary.housekeeping.values():
            if self._structures and structure.name not in self._structures:
                continue
            rows = []
            for p in structure.parameters:
                if self._parameters and p.name not in self._parameters:
                    continue
                seen = self.latest.get(p.name)
                if seen is None:
                    rows.append((p.name, "—", "", "", "", False))
                    continue
                state = p.limit_state(seen.raw)
                show_raw = p.calibration is not None or isinstance(p.type, EnumType)
                age = now - seen.received_at
                stale = self.link_down or age > STALE_INTERVALS * structure.interval_ms / 1000
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
            if rows:
                groups.append((structure.name, rows))
        return groups

    def header(self, now: float, page: str = "") -> str:
        """UTC time, the link's state, the page, the dictionary: what is cut off on a narrow
        screen comes last."""
        clock = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now))
        link = f"  {self.link}" if self.link else ""
        page = f"  {page}" if page else ""
        return f"{clock}{link}{page}  {self.dictionary.name} {self.dictionary.version}"

    def render(self, now: float, width: int = 120, height: int | None = None) -> RenderableType:
        """The screen: every row when `height` is None, else the page of rows due at `now`
        (pages turn every PAGE_S seconds) so that everything fits `height` lines."""
        top = [Text("", style="bold")]
        if self.banner:
            top.append(Text(self.banner, style="bold white on red"))
        bottom = [Text("events", style="bold underline")] if self.events else []
        for e in reversed(self.events):
            text = f"{now - e.received_at:>5.0f} s {e.severity.name:<6} {e.name} {e.text}"
            bottom.append(Text(text.rstrip(), style=_SEVERITY_STYLE[e.severity]))
        body: list[Text] = []
        for name, rows in self._rows(now):
            body.append(Text(name, style="bold underline"))
            for pname, value, raw, state, age, stale in rows:
                style = "dim" if stale or not state else _STYLE[LimitState(state.lower())]
                cell = f"{value} ({raw})" if raw else value
                body.append(Text(f"  {pname:<30} {cell:<24} {state:<7} {age:>6}", style=style))
        pages = _pages(body, None if height is None else height - len(top) - len(bottom))
        page = int(now // PAGE_S) % len(pages)
        top[0].append(self.header(now, f"page {page + 1}/{len(pages)}" if len(pages) > 1 else ""))
        shown = [*top, *pages[page], *bottom]
        for row in shown:
            row.truncate(width, overflow="ellipsis")
        return Group(*shown)

    def plain_lines(self, now: float) -> list[str]:
        lines = [self.header(now)]
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


def _pages(rows: list[Text], room: int | None) -> list[list[Text]]:
    """`rows` cut into pages of at most `room` lines (all in one when None); a page that starts
    inside a structure repeats its name."""
    if room is None or len(rows) <= room:
        return [rows]
    room = max(room, 2)
    pages: list[list[Text]] = []
    current: list[Text] = []
    section: Text | None = None
    for row in rows:
        heading = not row.plain.startswith("  ")
        if heading:
            section = row
        if len(current) >= room or (heading and len(current) >= room - 1):
            pages.append(current)
            current = []
            if not heading and section is not None:
                current.append(Text(f"{section.plain} (continued)", style="bold underline"))
        current.append(row)
    if current:
        pages.append(current)
    return pages
