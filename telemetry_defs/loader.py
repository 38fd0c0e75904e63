"""Reads the dictionary's TOML files, checks them and turns them into a `Dictionary`.

Every file of the directory is read in name order and merged; the hash is taken over the merged
content in a canonical form, so comments and layout do not change it but any definition does.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from telemetry_defs.model import (
    Command,
    Dictionary,
    Event,
    Failure,
    Field,
    Housekeeping,
    Layout,
    Limits,
    Parameter,
    ParameterValuesType,
    Severity,
    TmPacket,
)
from telemetry_defs.valuetypes import (
    GREEDY,
    LENGTH_PREFIXES,
    BytesType,
    DictionaryValueError,
    EnumType,
    IntType,
    StringType,
    ValueType,
    primitive_types,
)

DEFAULT_DIRECTORY = Path(__file__).with_name("dictionary")
SECTIONS = (
    "dictionary",
    "enum",
    "failure",
    "parameter",
    "housekeeping",
    "command",
    "packet",
    "event",
)
REFERS = ("parameter", "housekeeping", "failure")
SEVERITIES = {s.name.lower(): s for s in Severity}

_FIELD_KEYS = {
    "name", "type", "description", "unit", "range", "array", "min_items", "refers", "display",
    "length", "none",
}  # fmt: skip
_PARAMETER_KEYS = {
    "name", "id", "type", "description", "unit", "calibration", "limits", "settable", "range",
    "default", "display",
}  # fmt: skip


class DictionaryError(Exception):
    """A definition file that is missing, malformed or inconsistent; says which and where."""


T = TypeVar("T")


def read_sources(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """The merged content of every `*.toml` of `directory`, each entry tagged with its file."""
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise DictionaryError(f"no dictionary files (*.toml) in {directory}")
    merged: dict[str, list[dict[str, Any]]] = {s: [] for s in SECTIONS}
    for path in files:
        try:
            content = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DictionaryError(f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise DictionaryError(f"{path} is not valid TOML: {exc}") from None
        for section, value in content.items():
            if section not in SECTIONS:
                raise DictionaryError(
                    f"{path.name}: unknown section [{section}] (known: {', '.join(SECTIONS)})"
                )
            entries = [value] if isinstance(value, dict) else value
            for entry in entries:
                if not isinstance(entry, dict):
                    raise DictionaryError(f"{path.name}: [{section}] entries must be tables")
                merged[section].append({**entry, "__file__": path.name})
    return merged


def canonical_hash(sources: Mapping[str, list[dict[str, Any]]]) -> str:
    """SHA-256 of the definitions (file names and order within a section excluded)."""
    content = {
        section: sorted(
            json.dumps({k: v for k, v in e.items() if k != "__file__"}, sort_keys=True)
             for e in entries
        )
        for section, entries in sources.items()
    }  # fmt: skip
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def load_dictionary(directory: Path | str | None = None) -> Dictionary:
    """Load and check the dictionary in `directory` (default: the one shipped with the code)."""
    path = Path(directory) if directory is not None else DEFAULT_DIRECTORY
    if not path.is_dir():
        raise DictionaryError(f"dictionary directory {path} does not exist")
    sources = read_sources(path)
    return _Builder(sources).build(canonical_hash(sources))


class _Builder:
    def __init__(self, sources: dict[str, list[dict[str, Any]]]) -> None:
        self.sources = sources
        self.types: dict[str, ValueType] = dict(primitive_types())

    def build(self, sha256: str) -> Dictionary:
        head = self.sources["dictionary"]
        if len(head) != 1:
            raise DictionaryError(f"expected one [dictionary] table, found {len(head)}")
        meta = head[0]
        where = f"{meta['__file__']} [dictionary]"
        _only(meta, {"name", "version", "description", "apid"}, where)
        enums = {e.name: e for e in (self._enum(raw) for raw in self.sources["enum"])}
        parameters = _unique(
            (self._parameter(raw) for raw in self.sources["parameter"]), "parameter", "id"
        )
        values_type = ParameterValuesType(
            "parameter_values", {p.id: p for p in parameters.values()}
        )
        self.types["parameter_values"] = values_type
        failures = {
            f.code: f
            for f in _unique((self._failure(r) for r in self.sources["failure"]), "failure", "code")
            .values()
        }  # fmt: skip
        housekeeping = _unique(
            (self._housekeeping(raw, parameters) for raw in self.sources["housekeeping"]),
            "housekeeping structure",
            "sid",
        )
        commands = _unique(
            (self._command(raw) for raw in self.sources["command"]), "command", "service_subtype"
        )
        packets = _unique(
            (self._packet(raw) for raw in self.sources["packet"]), "packet", "service_subtype"
        )
        events = _unique((self._event(raw) for raw in self.sources["event"]), "event", "id")
        referents = {
            "failure": set(failures),
            "parameter": {p.id for p in parameters.values()},
            "housekeeping": {h.sid for h in housekeeping.values()},
        }
        for what, layout in (
            *((f"command {c.name}", c.layout) for c in commands.values()),
            *((f"packet {p.name}", p.layout) for p in packets.values()),
            *((f"event {e.name}", e.layout) for e in events.values()),
        ):
            for f in layout.fields:
                if f.refers is not None and f.none is not None and f.none in referents[f.refers]:
                    raise DictionaryError(
                        f"{what} field {f.name}: none = {f.none} is also a {f.refers}"
                    )
        for packet in packets.values():
            if packet.service == 3 and packet.subtype == 25:
                raise DictionaryError(f"packet {packet.name}: TM[3,25] comes from [[housekeeping]]")
            if packet.service == 5 and packet.subtype in (1, 2, 3, 4):
                raise DictionaryError(f"packet {packet.name}: TM[5,1..4] comes from [[event]]")
        return Dictionary(
            name=_text(meta, "name", where),
            version=_text(meta, "version", where),
            description=str(meta.get("description", "")),
            apid=_integer(meta, "apid", where, 0, 0x7FE),
            sha256=sha256,
            enums=enums,
            parameters=parameters,
            housekeeping=housekeeping,
            commands=commands,
            packets=packets,
            events=events,
            failures=failures,
        )

    # -- entries --------------------------------------------------------------------------------

    def _enum(self, raw: dict[str, Any]) -> EnumType:
        where = _where(raw, "enum")
        _only(raw, {"name", "base", "description", "values"}, where)
        name = _text(raw, "name", where)
        if name in self.types:
            raise DictionaryError(f"{where}: the type name {name} is taken")
        base = self.types.get(str(raw.get("base", "u8")))
        if not isinstance(base, IntType):
            raise DictionaryError(f"{where}: base must be an integer type")
        values = raw.get("values")
        if not isinstance(values, dict) or not values:
            raise DictionaryError(f"{where}: values must be a table of NAME = number")
        seen: dict[int, str] = {}
        for key, number in values.items():
            if not isinstance(number, int) or not base.bounds[0] <= number <= base.bounds[1]:
                raise DictionaryError(f"{where}: {key} = {number!r} does not fit {base.name}")
            if number in seen:
                raise DictionaryError(f"{where}: {key} and {seen[number]} are both {number}")
            seen[number] = key
        enum = EnumType(name, base, dict(values), str(raw.get("description", "")))
        self.types[name] = enum
        return enum

    def _type(self, raw: dict[str, Any], where: str) -> ValueType:
        name = _text(raw, "type", where)
        if name in ("bytes", "string"):
            length = raw.get("length", GREEDY)
            if not (
                (isinstance(length, int) and length > 0)
                or length == GREEDY
                or length in LENGTH_PREFIXES
            ):
                raise DictionaryError(
                    f"{where}: length {length!r}: a positive count, 'u8', 'u16' or 'greedy'"
                )
            return (StringType if name == "string" else BytesType)(name, length)
        if "length" in raw:
            raise DictionaryError(f"{where}: length applies to bytes and string only")
        found = self.types.get(name)
        if found is None:
            known = ", ".join(sorted(self.types))
            raise DictionaryError(f"{where}: unknown type {name!r} (known: {known})")
        return found

    def _field(self, raw: Any, where: str) -> Field:
        if not isinstance(raw, dict):
            raise DictionaryError(f"{where}: each field is a table {{ name = ..., type = ... }}")
        name = _text(raw, "name", where)
        where = f"{where} field {name}"
        _only(raw, _FIELD_KEYS, where)
        value_type = self._type(raw, where)
        array = None
        if "array" in raw:
            counter = self.types.get(str(raw["array"]))
            if not isinstance(counter, IntType) or counter.signed:
                raise DictionaryError(f"{where}: array must name an unsigned counter type")
            array = counter
        refers = raw.get("refers")
        if refers is not None and refers not in REFERS:
            raise DictionaryError(f"{where}: refers must be one of {', '.join(REFERS)}")
        none = None
        if "none" in raw:
            if refers is None or not isinstance(value_type, IntType):
                raise DictionaryError(f"{where}: none applies to integer fields that refer")
            low, high = value_type.bounds
            none = _integer(raw, "none", where, low, high)
        return Field(
            name=name,
            type=value_type,
            description=str(raw.get("description", "")),
            unit=str(raw.get("unit", "")),
            range=_range(raw, value_type, where),
            array=array,
            min_items=_integer(raw, "min_items", where, 0, 255, default=0),
            refers=refers,
            display=_display(raw, where),
            none=none,
        )

    def _layout(self, raw: dict[str, Any], key: str, where: str, what: str) -> Layout:
        entries = raw.get(key, [])
        if not isinstance(entries, list):
            raise DictionaryError(f"{where}: {key} must be a list of fields")
        fields = tuple(self._field(f, where) for f in entries)
        names = [f.name for f in fields]
        for name in names:
            if names.count(name) > 1:
                raise DictionaryError(f"{where}: two fields are named {name}")
        for f in fields[:-1]:
            if isinstance(f.type, BytesType) and f.type.length == GREEDY:
                raise DictionaryError(f"{where}: greedy field {f.name} must come last")
        return Layout(fields, what)

    def _parameter(self, raw: dict[str, Any]) -> Parameter:
        where = _where(raw, "parameter")
        _only(raw, _PARAMETER_KEYS, where)
        value_type = self._type(raw, where)
        settable = bool(raw.get("settable", False))
        limits = raw.get("limits")
        if limits is not None:
            _only(limits, {"yellow_low", "yellow_high", "red_low", "red_high"}, f"{where} limits")
            limits = Limits(**{k: float(v) for k, v in limits.items()})
        calibration = raw.get("calibration")
        if calibration is not None:
            _only(calibration, {"polynomial"}, f"{where} calibration")
            coefficients = calibration.get("polynomial")
            if not isinstance(coefficients, list) or not coefficients:
                raise DictionaryError(f"{where}: calibration.polynomial must list coefficients")
            calibration = tuple(float(c) for c in coefficients)
        parameter = Parameter(
            name=_text(raw, "name", where),
            id=_integer(raw, "id", where, 0, 0xFFFF),
            type=value_type,
            description=str(raw.get("description", "")),
            unit=str(raw.get("unit", "")),
            calibration=calibration,
            limits=limits,
            settable=settable,
            range=_range(raw, value_type, where),
            default=raw.get("default"),
            display=_display(raw, where),
        )
        if settable:
            if "default" not in raw:
                raise DictionaryError(f"{where}: a settable parameter needs a default")
            try:
                parameter.field.check(parameter.default)
            except DictionaryValueError as exc:
                raise DictionaryError(f"{where}: default {exc}") from None
        elif "default" in raw or "range" in raw:
            raise DictionaryError(f"{where}: default and range apply to settable parameters")
        return parameter

    def _failure(self, raw: dict[str, Any]) -> Failure:
        where = _where(raw, "failure")
        _only(raw, {"code", "name", "description", "data"}, where)
        code = _integer(raw, "code", where, 1, 0xFFFF)
        name = _text(raw, "name", where)
        layout = self._layout(raw, "data", where, f"failure {name} data") if "data" in raw else None
        return Failure(code, name, str(raw.get("description", "")), layout)

    def _housekeeping(self, raw: dict[str, Any], parameters: dict[str, Parameter]) -> Housekeeping:
        where = _where(raw, "housekeeping")
        _only(raw, {"name", "sid", "interval_ms", "enabled", "description", "parameters"}, where)
        names = raw.get("parameters")
        if not isinstance(names, list) or not names:
            raise DictionaryError(f"{where}: parameters must list parameter names")
        members = []
        for name in names:
            if name not in parameters:
                raise DictionaryError(f"{where}: no parameter named {name!r}")
            if names.count(name) > 1:
                raise DictionaryError(f"{where}: {name} is listed twice")
            members.append(parameters[name])
        name = _text(raw, "name", where)
        return Housekeeping(
            name=name,
            sid=_integer(raw, "sid", where, 0, 0xFFFF),
            interval_ms=_integer(raw, "interval_ms", where, 100, 86_400_000),
            enabled=bool(raw.get("enabled", False)),
            description=str(raw.get("description", "")),
            parameters=tuple(members),
            layout=Layout(tuple(p.field for p in members), f"housekeeping {name}"),
        )

    def _command(self, raw: dict[str, Any]) -> Command:
        where = _where(raw, "command")
        _only(raw, {"name", "service", "subtype", "description", "arguments"}, where)
        name = _text(raw, "name", where)
        return Command(
            name=name,
            service=_integer(raw, "service", where, 0, 255),
            subtype=_integer(raw, "subtype", where, 0, 255),
            description=str(raw.get("description", "")),
            layout=self._layout(raw, "arguments", where, name),
        )

    def _packet(self, raw: dict[str, Any]) -> TmPacket:
        where = _where(raw, "packet")
        _only(raw, {"name", "service", "subtype", "description", "fields"}, where)
        name = _text(raw, "name", where)
        return TmPacket(
            name=name,
            service=_integer(raw, "service", where, 0, 255),
            subtype=_integer(raw, "subtype", where, 0, 255),
            description=str(raw.get("description", "")),
            layout=self._layout(raw, "fields", where, name),
        )

    def _event(self, raw: dict[str, Any]) -> Event:
        where = _where(raw, "event")
        _only(raw, {"name", "id", "severity", "description", "arguments"}, where)
        severity = SEVERITIES.get(str(raw.get("severity", "")).lower())
        if severity is None:
            raise DictionaryError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
        name = _text(raw, "name", where)
        return Event(
            name=name,
            id=_integer(raw, "id", where, 0, 0xFFFF),
            severity=severity,
            description=str(raw.get("description", "")),
            layout=self._layout(raw, "arguments", where, f"event {name}"),
        )


# -- checks -------------------------------------------------------------------------------------


def _where(raw: dict[str, Any], section: str) -> str:
    return f"{raw.get('__file__', '?')} [[{section}]] {raw.get('name', '(no name)')}"


def _only(raw: Any, allowed: set[str], where: str) -> None:
    if not isinstance(raw, dict):
        raise DictionaryError(f"{where}: expected a table")
    for key in raw:
        if key not in allowed and key != "__file__":
            raise DictionaryError(
                f"{where}: unknown key {key!r} (known: {', '.join(sorted(allowed))})"
            )


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise DictionaryError(f"{where}: {key} must be a non-empty string")
    return value


def _integer(
    raw: dict[str, Any], key: str, where: str, low: int, high: int, default: int | None = None
) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DictionaryError(f"{where}: {key} must be an integer in {low}..{high}")
    return value


def _display(raw: dict[str, Any], where: str) -> str:
    display = str(raw.get("display", ""))
    if display not in ("", "hex", "time"):
        raise DictionaryError(f"{where}: display must be 'hex' or 'time' when given")
    return display


def _range(raw: dict[str, Any], value_type: ValueType, where: str) -> tuple[float, float] | None:
    if "range" not in raw:
        return None
    value = raw["range"]
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or value[0] > value[1]
    ):
        raise DictionaryError(f"{where}: range must be [low, high] with low <= high")
    bounds = value_type.bounds
    if bounds is None:
        raise DictionaryError(f"{where}: range applies to numbers only")
    if value[0] < bounds[0] or value[1] > bounds[1]:
        raise DictionaryError(f"{where}: range {value} exceeds {value_type.name}")
    return (value[0], value[1])


def _unique(items: Any, what: str, key: str) -> dict[str, Any]:
    by_name: dict[str, Any] = {}
    by_key: dict[Any, str] = {}

    def ident(item: Any) -> Any:
        return (item.service, item.subtype) if key == "service_subtype" else getattr(item, key)

    for item in items:
        if item.name in by_name:
            raise DictionaryError(f"two {what}s are named {item.name}")
        k = ident(item)
        if k in by_key:
            raise DictionaryError(f"{what}s {by_key[k]} and {item.name} share {key} {k}")
        by_name[item.name] = item
        by_key[k] = item.name
    return by_name


_cached: dict[Path, Dictionary] = {}


def default_dictionary() -> Dictionary:
    """The dictionary shipped with the code, loaded once per process."""
    if DEFAULT_DIRECTORY not in _cached:
        _cached[DEFAULT_DIRECTORY] = load_dictionary(DEFAULT_DIRECTORY)
    return _cached[DEFAULT_DIRECTORY]
