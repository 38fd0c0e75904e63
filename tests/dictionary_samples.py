"""Boundary values for any dictionary layout: every field at its lowest, then at its highest
(a reference field: the lowest and highest number it can refer to)."""

from __future__ import annotations

from typing import Any

from telemetry_defs.model import Dictionary, Field, Layout, ParameterValuesType
from telemetry_defs.valuetypes import (
    BoolType,
    BytesType,
    EnumType,
    FloatType,
    IntType,
    StringType,
    ValueType,
)


def _one(t: ValueType, f: Field, high: bool) -> Any:
    if isinstance(t, EnumType):
        values = sorted(t.values.values())
        return values[-1] if high else values[0]
    if isinstance(t, BoolType):
        return high
    if isinstance(t, IntType):
        low, top = f.range if f.range is not None else t.bounds
        return int(top if high else low)
    if isinstance(t, FloatType):
        if f.range is not None:
            return float(f.range[1] if high else f.range[0])
        return 3.25 if high else -1500.5  # exact in 32 bits
    if isinstance(t, StringType):
        size = t.length if isinstance(t.length, int) else (12 if high else 0)
        return ("héllo wörld!" if high else "")[:size].ljust(
            size if isinstance(t.length, int) else 0
        )
    if isinstance(t, BytesType):
        size = t.length if isinstance(t.length, int) else (40 if high else 0)
        return bytes((i * 37 + 11) & 0xFF for i in range(size))
    raise TypeError(f"no sample for {t}")


def _referent(dictionary: Dictionary, f: Field, high: bool) -> int:
    """The lowest or highest number a reference field can hold: a defined failure code,
    parameter or structure ID, or the number that means none."""
    numbers = {
        "failure": [x.code for x in dictionary.failures.values()],
        "parameter": [p.id for p in dictionary.parameters.values()],
        "housekeeping": [h.sid for h in dictionary.housekeeping.values()],
    }[str(f.refers)]
    numbers = sorted([*numbers, *([f.none] if f.none is not None else [])])
    return numbers[-1] if high else numbers[0]


def sample(dictionary: Dictionary, f: Field, high: bool) -> Any:
    if isinstance(f.type, ParameterValuesType):
        chosen = list(dictionary.parameters.values())
        chosen = chosen[:6] if high else chosen[:1]
        return [{"id": p.id, "value": _one(p.type, p.field, high)} for p in chosen]

    def one() -> Any:
        return _referent(dictionary, f, high) if f.refers else _one(f.type, f, high)

    if f.array is not None:
        count = 3 if high else max(1, f.min_items)
        return [one() for _ in range(count)]
    return one()


def samples(dictionary: Dictionary, layout: Layout) -> list[dict[str, Any]]:
    """Two value sets for `layout`: every field low, every field high."""
    return [{f.name: sample(dictionary, f, high) for f in layout.fields} for high in (False, True)]


def every_definition(dictionary: Dictionary) -> list[tuple[str, int, str, Layout]]:
    """(kind, key, name, layout) of every command, packet, structure, event and failure data."""
    out: list[tuple[str, int, str, Layout]] = []
    for c in dictionary.commands.values():
        out.append(("COMMAND", c.service * 256 + c.subtype, c.name, c.layout))
    for p in dictionary.packets.values():
        out.append(("PACKET", p.service * 256 + p.subtype, p.name, p.layout))
    for h in dictionary.housekeeping.values():
        out.append(("HOUSEKEEPING", h.sid, h.name, h.layout))
    for e in dictionary.events.values():
        out.append(("EVENT", e.id, e.name, e.layout))
    for fc in dictionary.failures.values():
        if fc.layout is not None:
            out.append(("FAILURE", fc.code, fc.name, fc.layout))
    return out
