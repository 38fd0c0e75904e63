"""The live table: real decoded packets in, limit colours and plain text out."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console
from rich.segment import Segment

from groundsw.liveview import EVENTS_SHOWN, STALE_INTERVALS, LiveTable
from telemetry_defs.loader import default_dictionary
from telemetry_defs.model import DecodedTm, UnknownName

D = default_dictionary()
STATUS = D.housekeeping["PAYLOAD_STATUS"]
STALE_AFTER = STALE_INTERVALS * STATUS.interval_ms / 1000


def housekeeping(**values: int) -> DecodedTm:
    fields: dict[str, Any] = {p.name: 0 for p in STATUS.parameters}
    fields.update(UPTIME=1234, MODE=1, MEMORY_USED=500, DISK_FREE=4000, DICTIONARY_HASH=D.hash32)
    fields.update(CPU_PROCESS=960, CPU_SYSTEM=900)  # red (> 95 %), yellow (> 85 %)
    fields.update(values)
    return D.decode_tm(3, 25, D.encode_housekeeping(STATUS.sid, fields))


def event(name: str, **values: Any) -> DecodedTm:
    severity, data = D.encode_event(name, values)
    return D.decode_tm(5, int(severity), data)


def by_parameter(lines: list[str]) -> dict[str, str]:
    """Plain lines of parameters: name -> the rest of the line."""
    rows = {}
    for line in lines:
        if line.startswith("  "):
            name, _, rest = line.strip().partition(" ")
            rows[name] = rest.strip()
    return rows


def segments(table: LiveTable, now: float) -> list[Segment]:
    console = Console(record=True, width=120, force_terminal=True)
    console.print(table.render(now))  # renders as `tm live` would
    assert "CPU_PROCESS" in console.export_text()
    return list(console.render(table.render(now), console.options))


def style_of(found: list[Segment], text: str) -> Any:
    """The style of the line showing `text` (each line of the screen has one)."""
    matching = [s.style for s in found if text in s.text]
    assert matching, f"no segment {text!r} in the rendering"
    return matching[0]


@pytest.fixture
def table() -> LiveTable:
    t = LiveTable(D)
    t.update(housekeeping(), 1000.0, None)
    return t


def test_plain_lines_show_names_engineering_values_units_limits_and_ages(
    table: LiveTable,
) -> None:
    lines = table.plain_lines(1003.0)

    assert "[PAYLOAD_STATUS]" in lines
    rows = by_parameter(lines)
    assert rows["UPTIME"] == "1234 s 3 s"
    assert rows["MODE"] == "THROTTLED (raw 1) 3 s"
    assert rows["CPU_PROCESS"] == "96.0 % (raw 960) RED 3 s"
    assert rows["CPU_SYSTEM"] == "90.0 % (raw 900) YELLOW 3 s"
    assert rows["MEMORY_USED"] == "50.0 % (raw 500) 3 s"  # nominal: no flag
    assert rows["DISK_FREE"] == "4000 MiB 3 s"  # uncalibrated: no raw
    assert rows["DICTIONARY_HASH"] == f"0x{D.hash32:08X} 3 s"
    # Every structure is listed; those not heard from yet with a dash and no age.
    others = [h for h in D.housekeeping.values() if h is not STATUS]
    assert others, "the dictionary has one structure only: nothing unseen to show"
    for structure in others:
        assert f"[{structure.name}]" in lines
        assert all(rows[p.name] == "—" for p in structure.parameters)
    assert set(rows) == {p.name for h in D.housekeeping.values() for p in h.parameters}


def test_a_newer_report_replaces_the_value_and_its_age(table: LiveTable) -> None:
    table.update(housekeeping(CPU_PROCESS=300, UPTIME=1239), 1005.0, None)

    rows = by_parameter(table.plain_lines(1006.0))

    assert rows["CPU_PROCESS"] == "30.0 % (raw 300) 1 s"
    assert rows["UPTIME"] == "1239 s 1 s"


def test_parameter_values_report_updates_its_parameters_only(table: LiveTable) -> None:
    report = D.decode_tm(
        20, 2, D.packets["PARAM_VALUES"].layout.build({"values": [{"id": 5, "value": 120}]})
    )
    table.update(report, 1002.0, None)

    rows = by_parameter(table.plain_lines(1004.0))

    assert rows["CPU_PROCESS"] == "12.0 % (raw 120) 2 s"
    assert rows["CPU_SYSTEM"] == "90.0 % (raw 900) YELLOW 4 s"
    assert not table.events  # a report is no event


def test_values_older_than_three_reports_are_stale(table: LiveTable) -> None:
    fresh = by_parameter(table.plain_lines(1000.0 + STALE_AFTER))
    old = by_parameter(table.plain_lines(1000.0 + STALE_AFTER + 1))

    assert not fresh["UPTIME"].endswith("stale")
    assert old["UPTIME"] == "1234 s 16 s stale"
    assert old["CPU_PROCESS"] == "96.0 % (raw 960) RED 16 s stale"
    assert style_of(segments(table, 1000.0 + STALE_AFTER + 1), "1234 s").dim


def test_render_colours_values_by_their_limit_state(table: LiveTable) -> None:
    found = segments(table, 1003.0)

    red = style_of(found, "96.0 %")
    assert red.color is not None and red.color.name == "red" and red.bold
    assert style_of(found, "CPU_PROCESS").color.name == "red"
    assert style_of(found, " RED ").color.name == "red"
    yellow = style_of(found, "90.0 %")
    assert yellow.color is not None and yellow.color.name == "yellow" and yellow.bold
    assert style_of(found, " YELLOW ").color.name == "yellow"
    nominal = style_of(found, "50.0 %")
    assert nominal.color is not None and nominal.color.name == "green"
    assert style_of(found, "4000 MiB").color.name == "green"
    # Not heard from: dim, not coloured as if nominal.
    unseen_name = next(h for h in D.housekeeping.values() if h is not STATUS).parameters[0].name
    unseen = style_of(found, unseen_name)
    assert unseen.dim and unseen.color is None


def test_banner_leads_both_renderings_and_goes_away(table: LiveTable) -> None:
    table.set_banner("no telemetry for 42 s")

    assert table.plain_lines(1003.0)[1] == "!!! no telemetry for 42 s !!!"
    banner = style_of(segments(table, 1003.0), "no telemetry for 42 s")
    assert banner.bgcolor is not None and banner.bgcolor.name == "red" and banner.bold

    table.set_banner(None)
    assert not [line for line in table.plain_lines(1003.0) if "!!!" in line]
    assert not [s for s in segments(table, 1003.0) if "no telemetry" in s.text]


def test_events_are_listed_newest_first_with_their_severity(table: LiveTable) -> None:
    table.update(
        event("PAYLOAD_STARTED", boot_count=3, dictionary_hash=0x12AB, reset_reason=4,
              board_uptime=900, previous="watchdog"),
        1001.0,
        None,
    )  # fmt: skip
    table.update(event("FARM_LOCKOUT", vr=4, ns=99), 1002.0, None)
    table.update(event("PARAMETER_SET", id=100), 1004.0, None)

    events = [line for line in table.plain_lines(1005.0) if line.startswith("event ")]

    assert events == [
        "event LOW PARAMETER_SET id=LOG_LEVEL",  # the ID by its name
        "event HIGH FARM_LOCKOUT vr=4 ns=99",
        "event INFO PAYLOAD_STARTED boot_count=3 dictionary_hash=0x000012AB "
        "reset_reason=WATCHDOG board_uptime=900 previous=watchdog",
    ]
    console = Console(record=True, width=120, force_terminal=True)
    console.print(table.render(1005.0))
    text = console.export_text()
    text = text[text.index("events") :]  # below the parameters
    order = [text.index(name) for name in ("PARAMETER_SET", "FARM_LOCKOUT", "PAYLOAD_STARTED")]
    assert order == sorted(order)
    lines = {line.split()[3]: line.split() for line in text.splitlines()[1:] if line.strip()}
    assert lines["FARM_LOCKOUT"] == ["3", "s", "HIGH", "FARM_LOCKOUT", "vr=4", "ns=99"]
    assert lines["PAYLOAD_STARTED"][:4] == ["4", "s", "INFO", "PAYLOAD_STARTED"]
    found = list(console.render(table.render(1005.0), console.options))
    high = style_of(found, "HIGH   FARM_LOCKOUT")
    assert high.color is not None and high.color.name == "red" and high.bold


def test_only_the_latest_events_are_kept(table: LiveTable) -> None:
    for vr in range(EVENTS_SHOWN + 3):
        table.update(event("FARM_UNLOCKED", vr=vr), 1000.0 + vr, None)

    events = [line for line in table.plain_lines(1020.0) if line.startswith("event ")]

    expected = [f"event INFO FARM_UNLOCKED vr={vr}" for vr in range(EVENTS_SHOWN + 2, 2, -1)]
    assert events == expected


def screen_lines(table: LiveTable, now: float, width: int = 80, height: int = 24) -> list[str]:
    console = Console(record=True, width=width, force_terminal=True)
    console.print(table.render(now, width, height))
    return console.export_text().splitlines()


def test_a_screen_fits_80_by_24_in_pages_that_turn(table: LiveTable) -> None:
    for n in range(3):
        table.update(event("FARM_UNLOCKED", vr=n), 1001.0, None)
    seen: set[str] = set()
    pages = set()
    for t in range(0, 60, 5):
        lines = screen_lines(table, 1003.0 + t)
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        assert lines[0].startswith("1970-01-01 00:") and "page " in lines[0]
        pages.add(lines[0].rsplit("page ", 1)[1])
        assert lines[-4] == "events"
        assert [line.split()[-1] for line in lines[-3:]] == ["vr=2", "vr=1", "vr=0"]
        seen.update(line.split()[0] for line in lines[1:-4] if line.startswith("  "))
    every = {p.name for h in D.housekeeping.values() for p in h.parameters}
    assert seen == every  # every parameter shows on one page or another
    assert len(pages) > 1


def test_the_header_tells_the_time_and_the_link_and_a_down_link_dims_every_value(
    table: LiveTable,
) -> None:
    table.set_link("link UP 0.4 s, COP-1 active", down=False)
    header = table.plain_lines(1003.0)[0]
    assert header == f"1970-01-01 00:16:43Z  link UP 0.4 s, COP-1 active  {D.name} {D.version}"

    assert style_of(segments(table, 1003.0), "CPU_PROCESS").color.name == "red"
    table.set_link("link DOWN, no frame for 6 s", down=True)
    assert style_of(segments(table, 1003.0), "CPU_PROCESS").dim
    assert by_parameter(table.plain_lines(1003.0))["UPTIME"] == "1234 s 3 s stale"


def test_structures_and_parameters_can_be_chosen() -> None:
    chosen = LiveTable(D, structures=["PAYLOAD_STATUS"], parameters=["UPTIME", "MODE"])
    chosen.update(housekeeping(), 1000.0, None)
    assert chosen.plain_lines(1001.0)[1:] == [
        "[PAYLOAD_STATUS]",
        "  UPTIME                             1234 s 1 s",
        "  MODE                               THROTTLED (raw 1) 1 s",
    ]
    with pytest.raises(UnknownName, match="no housekeeping structure 'NOPE'"):
        LiveTable(D, structures=["NOPE"])
    with pytest.raises(UnknownName):
        LiveTable(D, parameters=["NOPE"])
