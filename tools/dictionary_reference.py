"""The dictionary as a Markdown reference for operators (docs/dictionary.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from telemetry_defs.model import Dictionary, Field, Layout, Limits, Parameter, ParameterValuesType
from telemetry_defs.valuetypes import BoolType, BytesType, EnumType, StringType, ValueType


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def type_text(vt: ValueType) -> str:
    """How a raw type reads in the reference, e.g. `u16`, `Mode (u8)`, `bytes (u8 length)`."""
    if isinstance(vt, EnumType):
        return f"{vt.name} ({vt.base.name})"
    if isinstance(vt, ParameterValuesType):
        return "u8 count, then (parameter ID u16, value) pairs"
    if isinstance(vt, BytesType):
        kind = "text (UTF-8)" if isinstance(vt, StringType) else "octets"
        if isinstance(vt.length, int):
            return f"{kind}, exactly {vt.length}"
        if vt.length == "greedy":
            return f"{kind}, the rest of the packet"
        return f"{kind}, {vt.length} length first"
    if isinstance(vt, BoolType):
        return "bool (u8 0/1)"
    return vt.name


_REFERS = {
    "housekeeping": "housekeeping structures",
    "parameter": "parameters",
    "failure": "failure codes",
}


def _field_type(f: Field) -> str:
    text = type_text(f.type)
    if f.array is not None:
        most = f.array.bounds[1]
        text = f"list of {text}, {f.array.name} count first, {f.min_items}..{most} items"
    if f.refers is not None:
        text += f"; {_REFERS[f.refers]} by name or ID"
    if f.none is not None:
        text += f", {f.none}: none"
    return text


def _range(r: tuple[float, float] | None) -> str:
    return "" if r is None else f"{_number(r[0])}..{_number(r[1])}"


def _layout(layout: Layout, what: str = "Field") -> list[str]:
    if not layout.fields:
        return ["No data.", ""]
    rows = [
        (f"`{f.name}`", _field_type(f), _range(f.range), f.unit, f.description)
        for f in layout.fields
    ]
    return [*_table((what, "Type", "Range", "Unit", "Description"), rows), ""]


def _limits(limits: Limits | None) -> str:
    if limits is None:
        return ""
    parts = []
    for label, low, high in (
        ("yellow", limits.yellow_low, limits.yellow_high),
        ("red", limits.red_low, limits.red_high),
    ):
        if low is not None:
            parts.append(f"{label} < {_number(low)}")
        if high is not None:
            parts.append(f"{label} > {_number(high)}")
    return ", ".join(parts)


def _calibration(p: Parameter) -> str:
    if p.calibration is None:
        return ""
    terms = []
    for k, c in enumerate(p.calibration):
        if c == 0:
            continue
        power = "" if k == 0 else ("·raw" if k == 1 else f"·raw^{k}")
        terms.append(f"{_number(c)}{power}")
    return " + ".join(terms) or "0"


def markdown_reference(d: Dictionary) -> str:
    """The whole reference as Markdown text."""
    out = [
        f"# Dictionary reference: {d.name} {d.version}",
        "",
        "Generated from `telemetry_defs/dictionary/` by `tools/dictionary_export.py`; do not edit.",
        "`make docs` regenerates it, and the test suite fails when it is stale.",
        "",
        f"- {d.description}",
        f"- APID {d.apid}; dictionary SHA-256 `{d.sha256}`",
        f"- Housekeeping reports the first 32 bits: `0x{d.hash32:08X}` (parameter DICTIONARY_HASH)",
        f"- {len(d.commands)} commands, {len(d.packets)} telemetry packets, "
        f"{len(d.housekeeping)} housekeeping structures, {len(d.parameters)} parameters, "
        f"{len(d.events)} events, {len(d.failures)} failure codes",
        "",
        "## Commands",
        "",
        "Send with `groundsw cmd NAME key=value ...`.",
        "",
    ]
    for c in sorted(d.commands.values(), key=lambda c: (c.service, c.subtype)):
        out += [f"### {c.name}: TC[{c.service},{c.subtype}]", "", c.description, ""]
        out += _layout(c.layout, "Argument")

    out += ["## Telemetry packets", ""]
    for tm in sorted(d.packets.values(), key=lambda tm: (tm.service, tm.subtype)):
        out += [f"### {tm.name}: TM[{tm.service},{tm.subtype}]", "", tm.description, ""]
        out += _layout(tm.layout)

    out += [
        "## Housekeeping structures",
        "",
        "TM[3,25]: structure ID u16, then the parameters.",
        "",
    ]
    for s in sorted(d.housekeeping.values(), key=lambda s: s.sid):
        state = "enabled" if s.enabled else "disabled"
        out += [
            f"### {s.name}: structure {s.sid}",
            "",
            f"{s.description} Every {s.interval_ms / 1000:g} s, {state} at start.",
            "",
            *_table(
                ("Parameter", "ID", "Type", "Unit"),
                ((f"`{p.name}`", p.id, type_text(p.type), p.unit) for p in s.parameters),
            ),
            "",
        ]

    out += [
        "## Parameters",
        "",
        "Read with PARAM_REPORT (TC[20,1]); the settable ones set with PARAM_SET (TC[20,3]).",
        "Calibrations turn raw values into engineering ones; limits are on engineering values.",
        "",
    ]
    rows = []
    for p in sorted(d.parameters.values(), key=lambda p: p.id):
        settable = f"yes, {_range(p.range)}" if p.settable else ""
        if p.settable and p.default is not None:
            settable += f", default {p.default}"
        rows.append(
            (
                p.id,
                f"`{p.name}`",
                type_text(p.type),
                p.unit,
                _calibration(p),
                _limits(p.limits),
                settable,
                p.description,
            )
        )
    out += _table(
        ("ID", "Name", "Type", "Unit", "Calibration", "Limits", "Settable", "Description"), rows
    )
    out += ["", "## Events", "", "TM[5,x], x the severity: event ID u16, then its data.", ""]
    for e in sorted(d.events.values(), key=lambda e: e.id):
        out += [f"### {e.name}: event {e.id}, {e.severity.name.lower()}", "", e.description, ""]
        out += _layout(e.layout)

    out += ["## Failure codes", "", "In TM[1,2/4/6/8] after the request ID, then the data.", ""]
    for code, f in sorted(d.failures.items()):
        out += [f"### {code} {f.name}", "", f.description, ""]
        if f.layout is not None:
            out += _layout(f.layout)

    out += ["## Enumerations", ""]
    for name, enum in sorted(d.enums.items()):
        out += [f"### {name} ({enum.base.name})", "", enum.description, ""]
        out += _table(("Value", "Name"), sorted((v, k) for k, v in enum.values.items()))
        out += [""]
    return "\n".join(out).rstrip() + "\n"
