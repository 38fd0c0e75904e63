"""The dictionary's definitions as values, with the codecs (construct) built from them."""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from construct import (
    Construct,
    ConstructError,
    Int8ub,
    Int16ub,
    PrefixedArray,
    Struct,
    Switch,
    Terminated,
    this,
)

from telemetry_defs.valuetypes import (
    BadText,
    BytesType,
    DictionaryValueError,
    EnumType,
    IntType,
    ValueOutOfRange,
    ValueType,
)


class CodecError(Exception):
    """Octets that do not decode with a definition's layout."""


class DecodedValueOutOfRange(CodecError, ValueOutOfRange):
    """Octets that decode to a value outside its type or range (an enum's unknown number...).

    A CodecError, as readers of telemetry expect from octets that do not fit a definition, and
    a ValueOutOfRange, as for the same value given in a command.
    """


class UnknownName(LookupError):
    """A command, packet, parameter, event or structure the dictionary does not define."""

    def __str__(self) -> str:  # KeyError-style quoting would garble the sentence
        return str(self.args[0])


class Severity(enum.IntEnum):
    """Event severity; the value is the TM[5,x] subtype (ICD 8)."""

    INFO = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4


class LimitState(enum.Enum):
    NOMINAL = "nominal"
    YELLOW = "yellow"
    RED = "red"


# Resolves a name (of a parameter, structure or failure) to its numeric ID, for text input.
NameResolver = Callable[[str, str], int | None]


@dataclass(frozen=True)
class Field:
    """One argument of a command, field of a packet or datum of an event."""

    name: str
    type: ValueType
    description: str = ""
    unit: str = ""
    range: tuple[float, float] | None = None
    array: IntType | None = None
    min_items: int = 0
    refers: str | None = None
    display: str = ""
    # With `refers`: the number that refers to nothing (a job's failure code 0 while it has not
    # failed), read and written as "none".
    none: int | None = None

    def construct(self) -> Construct:
        item = self.type.construct()
        return PrefixedArray(self.array.construct(), item) if self.array else item

    def check(self, value: Any, where: str = "") -> Any:
        where = where or self.name
        if self.array is None:
            return self._check_one(value, where)
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ValueOutOfRange(f"{where}: expected a list")
        items = list(value)
        most = self.array.bounds[1]
        if not self.min_items <= len(items) <= most:
            raise ValueOutOfRange(
                f"{where}: {len(items)} items, expected {self.min_items} to {most}"
            )
        return [self._check_one(v, f"{where}[{i}]") for i, v in enumerate(items)]

    def _check_one(self, value: Any, where: str) -> Any:
        value = self.type.check(value, where)
        if self.range is not None:
            low, high = self.range
            if not low <= value <= high:
                raise ValueOutOfRange(f"{where}: {value} is outside {_span(low, high)}")
        return value

    def from_text(self, text: str, resolve: NameResolver, where: str = "") -> Any:
        where = where or self.name
        if self.array is not None:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            return self.check([self._one_from_text(p, resolve, where) for p in parts], where)
        return self._check_one(self._one_from_text(text, resolve, where), where)

    def _one_from_text(self, text: str, resolve: NameResolver, where: str) -> Any:
        if self.none is not None and text.strip().lower() == "none":
            return self.none
        if self.display == "time":
            return time_from_text(text, where)
        if self.refers is not None:
            number = resolve(self.refers, text)
            if number is not None:
                return number
        try:
            return self.type.from_text(text, where)
        except BadText:
            if self.refers is not None:
                raise BadText(
                    f"{where}: {text!r} is neither a {self.refers} name nor a number"
                ) from None
            raise

    def to_text(self, value: Any) -> str:
        if self.array is not None:
            return "[" + ", ".join(self._one_to_text(v) for v in value) + "]"
        return self._one_to_text(value)

    def _one_to_text(self, value: Any) -> str:
        if self.display == "hex" and isinstance(value, int):
            return f"0x{value:0{_hex_digits(self.type)}X}"
        if self.display == "time" and isinstance(value, int) and value:
            return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.type.to_text(value)


_AGO = re.compile(r"now\s*-\s*(\d+(?:\.\d+)?)\s*([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def time_from_text(text: str, where: str, now: float | None = None) -> int:
    """UNIX seconds from what an operator types: a number, an ISO 8601 UTC time
    (2026-12-07T10:00:00Z), `now`, or `now-10m` (s, m, h, d)."""
    text = text.strip().lower()
    current = time.time() if now is None else now
    if text.isdigit():
        return int(text)
    if text == "now":
        return int(current)
    ago = _AGO.fullmatch(text)
    if ago:
        return int(current - float(ago.group(1)) * _SECONDS[ago.group(2)])
    try:
        when = datetime.fromisoformat(text.upper())
    except ValueError:
        raise BadText(
            f"{where}: {text!r} is not a time (UNIX seconds, 2026-12-07T10:00:00Z, now, now-10m)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def _hex_digits(t: ValueType) -> int:
    return t.bits // 4 if isinstance(t, IntType) else 1


def _span(low: float, high: float) -> str:
    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)

    return f"{fmt(low)}..{fmt(high)}"


def _plain(value: Any) -> Any:
    """construct's Containers and ListContainers as plain dicts and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Layout:
    """Ordered fields, coded one after the other; nothing may follow the last."""

    fields: tuple[Field, ...]
    what: str
    _struct: Construct = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        struct = Struct(*[f.name / f.construct() for f in self.fields], Terminated)
        object.__setattr__(self, "_struct", struct)

    def check(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every field present, known and in range: the values normalised."""
        known = {f.name for f in self.fields}
        unknown = [k for k in values if k not in known]
        if unknown:
            expected = ", ".join(f.name for f in self.fields) or "no arguments"
            raise ValueOutOfRange(f"{self.what} has no {unknown[0]!r} (it takes {expected})")
        missing = [f.name for f in self.fields if f.name not in values]
        if missing:
            raise ValueOutOfRange(f"{self.what} needs {missing[0]!r}")
        return {f.name: f.check(values[f.name], f.name) for f in self.fields}

    def build(self, values: Mapping[str, Any]) -> bytes:
        checked = self.check(values)
        try:
            return bytes(self._struct.build(checked))
        except ConstructError as exc:
            raise ValueOutOfRange(f"{self.what}: {_construct_message(exc)}") from None

    def parse(self, data: bytes) -> dict[str, Any]:
        """Decode and check ranges: CodecError for octets that do not fit the layout (its
        subclass DecodedValueOutOfRange when they decode to a value outside its range)."""
        try:
            parsed = _plain(self._struct.parse(data))
        except ConstructError as exc:
            raise CodecError(f"{self.what}: {_construct_message(exc)}") from None
        except UnicodeDecodeError:
            raise CodecError(f"{self.what}: text that is not UTF-8") from None
        try:
            return {f.name: f.check(parsed[f.name], f.name) for f in self.fields}
        except ValueOutOfRange as exc:
            raise DecodedValueOutOfRange(str(exc)) from None

    def to_text(self, values: Mapping[str, Any]) -> str:
        return " ".join(f"{f.name}={f.to_text(values[f.name])}" for f in self.fields)


def _construct_message(exc: ConstructError) -> str:
    lines = str(exc).splitlines() or [type(exc).__name__]
    detail = lines[-1]
    field_path = lines[0].partition("->")[2].strip() if len(lines) > 1 else ""
    if "expected end of stream" in detail:
        return "octets left over after the last field"
    if "stream read less than specified amount" in detail:
        detail = "too few octets"
    return f"{field_path}: {detail}" if field_path else detail


@dataclass(frozen=True)
class Limits:
    """Limits on engineering values; a bound left out is not checked."""

    yellow_low: float | None = None
    yellow_high: float | None = None
    red_low: float | None = None
    red_high: float | None = None

    def state(self, value: float) -> LimitState:
        if (self.red_low is not None and value < self.red_low) or (
            self.red_high is not None and value > self.red_high
        ):
            return LimitState.RED
        if (self.yellow_low is not None and value < self.yellow_low) or (
            self.yellow_high is not None and value > self.yellow_high
        ):
            return LimitState.YELLOW
        return LimitState.NOMINAL


@dataclass(frozen=True)
class Parameter:
    """An onboard parameter: readable by ID (ST[20]), reported in housekeeping (ST[3])."""

    name: str
    id: int
    type: ValueType
    description: str = ""
    unit: str = ""
    calibration: tuple[float, ...] | None = None
    limits: Limits | None = None
    settable: bool = False
    range: tuple[float, float] | None = None
    default: Any = None
    display: str = ""

    @property
    def field(self) -> Field:
        return Field(
            self.name,
            self.type,
            self.description,
            self.unit,
            self.range,
            display=self.display,
        )

    def engineering(self, raw: Any) -> Any:
        """The calibrated value (raw when the parameter has no calibration)."""
        if self.calibration is None or isinstance(raw, bool) or not isinstance(raw, int | float):
            return raw
        return sum(c * raw**k for k, c in enumerate(self.calibration))

    def limit_state(self, raw: Any) -> LimitState:
        if self.limits is None or isinstance(raw, bytes | str):
            return LimitState.NOMINAL
        return self.limits.state(float(self.engineering(raw)))

    def to_text(self, raw: Any) -> str:
        """The engineering value with its unit, as operators read it."""
        if isinstance(self.type, EnumType) or self.display == "hex":
            return self.field.to_text(raw)
        value = self.engineering(raw)
        if isinstance(value, float):
            text = f"{value:.6g}" if self.calibration is None else f"{value:.1f}"
        else:
            text = self.type.to_text(value)
        return f"{text} {self.unit}".rstrip()


@dataclass(frozen=True)
class ParameterValuesType(ValueType):
    """N u8, then N (parameter ID u16, value in that parameter's type): ST[20] (ICD 8)."""

    parameters: Mapping[int, Parameter] = field(default_factory=dict)

    def construct(self) -> Construct:
        cases = {pid: p.type.construct() for pid, p in self.parameters.items()}
        pair = Struct("id" / Int16ub, "value" / Switch(this.id, cases, default=_UNKNOWN_ID))
        return PrefixedArray(Int8ub, pair)

    def check(self, value: Any, where: str) -> list[dict[str, Any]]:
        if isinstance(value, Mapping):
            value = [{"id": k, "value": v} for k, v in value.items()]
        out = []
        for i, item in enumerate(value):
            pid = item["id"]
            parameter = self.parameters.get(pid)
            if parameter is None:
                raise ValueOutOfRange(f"{where}[{i}]: no parameter has ID {pid}")
            out.append({"id": pid, "value": parameter.type.check(item["value"], parameter.name)})
        if len(out) > 255:
            raise ValueOutOfRange(f"{where}: {len(out)} values, at most 255")
        return out

    def from_text(self, text: str, where: str) -> Any:
        raise BadText(f"{where}: give parameter values as NAME=VALUE")


class _UnknownId(Construct):
    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        raise ConstructError(f"unknown parameter ID {context.id}")

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        raise ConstructError(f"unknown parameter ID {context.id}")


_UNKNOWN_ID = _UnknownId()


@dataclass(frozen=True)
class Command:
    """A telecommand: TC[service, subtype] with its argument layout."""

    name: str
    service: int
    subtype: int
    description: str
    layout: Layout

    @property
    def arguments(self) -> tuple[Field, ...]:
        return self.layout.fields

    def encode(self, values: Mapping[str, Any]) -> bytes:
        return self.layout.build(values)

    def decode(self, data: bytes) -> dict[str, Any]:
        return self.layout.parse(data)


@dataclass(frozen=True)
class TmPacket:
    """A telemetry packet TM[service, subtype] with its source-data layout."""

    name: str
    service: int
    subtype: int
    description: str
    layout: Layout


@dataclass(frozen=True)
class Housekeeping:
    """A housekeeping structure: TM[3,25] with this structure ID and these parameters."""

    name: str
    sid: int
    interval_ms: int
    enabled: bool
    description: str
    parameters: tuple[Parameter, ...]
    layout: Layout


@dataclass(frozen=True)
class Event:
    """An event: TM[5, severity] with this event ID and these data."""

    name: str
    id: int
    severity: Severity
    description: str
    layout: Layout


@dataclass(frozen=True)
class Failure:
    """A failure code of verification reports, with the layout of its data if it has one."""

    code: int
    name: str
    description: str
    layout: Layout | None


class TmKind(enum.Enum):
    PACKET = "packet"
    HOUSEKEEPING = "housekeeping"
    EVENT = "event"


@dataclass(frozen=True)
class DecodedTm:
    """A TM packet's source data read with the dictionary."""

    kind: TmKind
    name: str
    values: dict[str, Any]
    # Parameter values it carries (housekeeping, TM[20,2]): name -> raw value.
    parameters: dict[str, Any] = field(default_factory=dict)
    severity: Severity | None = None


@dataclass(frozen=True)
class Dictionary:
    """Everything flight and ground share about commands and telemetry."""

    name: str
    version: str
    description: str
    apid: int
    sha256: str
    enums: Mapping[str, EnumType]
    parameters: Mapping[str, Parameter]
    housekeeping: Mapping[str, Housekeeping]
    commands: Mapping[str, Command]
    packets: Mapping[str, TmPacket]
    events: Mapping[str, Event]
    failures: Mapping[int, Failure]
    _params_by_id: dict[int, Parameter] = field(init=False, repr=False, compare=False)
    _hk_by_sid: dict[int, Housekeeping] = field(init=False, repr=False, compare=False)
    _packets_by_type: dict[tuple[int, int], TmPacket] = field(init=False, repr=False, compare=False)
    _commands_by_type: dict[tuple[int, int], Command] = field(init=False, repr=False, compare=False)
    _events_by_id: dict[int, Event] = field(init=False, repr=False, compare=False)
    _failures_by_name: dict[str, Failure] = field(init=False, repr=False, compare=False)

    @property
    def hash32(self) -> int:
        """The dictionary's short hash, as housekeeping reports it."""
        return int(self.sha256[:8], 16)

    def __post_init__(self) -> None:
        index = {
            "_params_by_id": {p.id: p for p in self.parameters.values()},
            "_hk_by_sid": {h.sid: h for h in self.housekeeping.values()},
            "_commands_by_type": {(c.service, c.subtype): c for c in self.commands.values()},
            "_packets_by_type": {(p.service, p.subtype): p for p in self.packets.values()},
            "_events_by_id": {e.id: e for e in self.events.values()},
            "_failures_by_name": {f.name: f for f in self.failures.values()},
        }
        for key, value in index.items():
            object.__setattr__(self, key, value)

    # -- lookups ------------------------------------------------------------------------------

    def command(self, name: str) -> Command:
        found = self.commands.get(name) or self.commands.get(name.upper())
        if found is None:
            raise UnknownName(f"no command {name!r} in the dictionary{_close(name, self.commands)}")
        return found

    def command_for(self, service: int, subtype: int) -> Command | None:
        return self._commands_by_type.get((service, subtype))

    def parameter(self, name: str) -> Parameter:
        found = self.parameters.get(name) or self.parameters.get(name.upper())
        if found is None:
            raise UnknownName(
                f"no parameter {name!r} in the dictionary{_close(name, self.parameters)}"
            )
        return found

    def parameter_by_id(self, pid: int) -> Parameter | None:
        return self._params_by_id.get(pid)

    def structure(self, sid: int) -> Housekeeping | None:
        return self._hk_by_sid.get(sid)

    def event(self, name: str) -> Event:
        found = self.events.get(name)
        if found is None:
            raise UnknownName(f"no event {name!r} in the dictionary{_close(name, self.events)}")
        return found

    def event_by_id(self, event_id: int) -> Event | None:
        return self._events_by_id.get(event_id)

    def failure(self, code: int) -> Failure | None:
        return self.failures.get(code)

    def failure_named(self, name: str) -> Failure:
        found = self._failures_by_name.get(name)
        if found is None:
            raise UnknownName(f"no failure code {name!r} in the dictionary")
        return found

    def resolve(self, refers: str, text: str) -> int | None:
        """The ID that `text` names among `refers` ("parameter", "housekeeping", "failure")."""
        key = text.strip().upper()
        if refers == "parameter" and key in self.parameters:
            return self.parameters[key].id
        if refers == "housekeeping" and key in self.housekeeping:
            return self.housekeeping[key].sid
        if refers == "failure" and key in self._failures_by_name:
            return self._failures_by_name[key].code
        return None

    def layout_for(self, kind: str, key: int) -> Layout | None:
        """The layout of a definition by kind (DefinitionKind name) and key (see
        DICTIONARY_ECHO): how both ends can check they lay out every definition alike."""
        if kind == "COMMAND":
            command = self._commands_by_type.get(divmod(key, 256))
            return command.layout if command else None
        if kind == "PACKET":
            packet = self._packets_by_type.get(divmod(key, 256))
            return packet.layout if packet else None
        if kind == "HOUSEKEEPING":
            structure = self.structure(key)
            return structure.layout if structure else None
        if kind == "EVENT":
            event = self.event_by_id(key)
            return event.layout if event else None
        if kind == "FAILURE":
            failure = self.failure(key)
            return failure.layout if failure else None
        return None

    # -- commands from text -------------------------------------------------------------------

    def command_from_text(self, name: str, pairs: Sequence[str]) -> tuple[Command, bytes]:
        """`NAME key=value ...` as an operator types it: the command and its application data.

        A command whose one argument is a list of parameter values takes `PARAM=VALUE` pairs.
        """
        command = self.command(name)
        where = f"{command.name}"
        values: dict[str, Any] = {}
        fields = {f.name: f for f in command.arguments}
        param_values = [f for f in command.arguments if isinstance(f.type, ParameterValuesType)]
        settings: list[dict[str, Any]] = []
        for pair in pairs:
            key, sep, text = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                raise BadText(f"{where}: {pair!r} is not key=value")
            if key in fields and not isinstance(fields[key].type, ParameterValuesType):
                if key in values:
                    raise BadText(f"{where}: {key} is given twice")
                values[key] = fields[key].from_text(text, self.resolve, f"{where} {key}")
            elif param_values:
                parameter = self.parameter(key)
                if not parameter.settable:
                    raise ValueOutOfRange(f"{where}: parameter {parameter.name} is not settable")
                raw = parameter.field.from_text(text, self.resolve, parameter.name)
                settings.append({"id": parameter.id, "value": raw})
            else:
                expected = ", ".join(fields) or "no arguments"
                raise BadText(f"{where} has no argument {key!r} (it takes {expected})")
        if param_values:
            if not settings:
                raise BadText(f"{where} needs at least one PARAMETER=VALUE")
            values[param_values[0].name] = settings
        return command, command.encode(values)

    # -- telemetry ----------------------------------------------------------------------------

    def decode_tm(self, service: int, subtype: int, data: bytes) -> DecodedTm:
        """Read a TM packet's source data; CodecError or UnknownName when it does not fit."""
        if (service, subtype) == (HOUSEKEEPING_SERVICE, HOUSEKEEPING_REPORT):
            sid = _u16_prefix(data, "TM[3,25]")
            structure = self.structure(sid)
            if structure is None:
                raise UnknownName(f"TM[3,25] with unknown structure ID {sid}")
            values = structure.layout.parse(data[2:])
            return DecodedTm(TmKind.HOUSEKEEPING, structure.name, values, dict(values))
        if service == EVENT_SERVICE and subtype in Severity._value2member_map_:
            event_id = _u16_prefix(data, f"TM[5,{subtype}]")
            event = self.event_by_id(event_id)
            if event is None:
                raise UnknownName(f"TM[5,{subtype}] with unknown event ID {event_id}")
            values = event.layout.parse(data[2:])
            return DecodedTm(TmKind.EVENT, event.name, values, severity=event.severity)
        packet = self._packets_by_type.get((service, subtype))
        if packet is None:
            raise UnknownName(f"TM[{service},{subtype}] is not in the dictionary")
        values = packet.layout.parse(data)
        parameters = {}
        for f in packet.layout.fields:
            if isinstance(f.type, ParameterValuesType):
                for item in values[f.name]:
                    parameters[self._params_by_id[item["id"]].name] = item["value"]
        return DecodedTm(TmKind.PACKET, packet.name, values, parameters)

    def encode_housekeeping(self, sid: int, values: Mapping[str, Any]) -> bytes:
        structure = self.structure(sid)
        if structure is None:
            raise UnknownName(f"no housekeeping structure {sid}")
        return sid.to_bytes(2, "big") + structure.layout.build(values)

    def encode_event(self, name: str, values: Mapping[str, Any]) -> tuple[Severity, bytes]:
        event = self.event(name)
        return event.severity, event.id.to_bytes(2, "big") + event.layout.build(values)

    def describe_values(self, decoded: DecodedTm) -> str:
        """One line of `name=value` with engineering values and units."""
        if decoded.kind is TmKind.HOUSEKEEPING:
            return " ".join(
                f"{n}={self.parameters[n].to_text(v)}" for n, v in decoded.parameters.items()
            )
        layout = self._layout_of(decoded)
        parts: list[str] = []
        for f in layout.fields:
            value = decoded.values[f.name]
            if isinstance(f.type, ParameterValuesType):
                parts.extend(
                    f"{n}={self.parameters[n].to_text(v)}" for n, v in decoded.parameters.items()
                )
            elif f.refers == "failure" and isinstance(value, int):
                failure = self.failure(value)
                name = "none" if value == f.none else failure.name if failure else "unknown"
                parts.append(f"{f.name}={value} ({name})")
            else:
                parts.append(f"{f.name}={self._field_text(f, value)}")
        return " ".join(parts)

    def _field_text(self, f: Field, value: Any) -> str:
        if f.none is not None and value == f.none and f.array is None:
            return "none"
        if f.refers == "parameter" and isinstance(value, int) and f.array is None:
            p = self.parameter_by_id(value)
            return p.name if p else str(value)
        if f.refers == "housekeeping" and isinstance(value, int) and f.array is None:
            h = self.structure(value)
            return h.name if h else str(value)
        return f.to_text(value)

    def _layout_of(self, decoded: DecodedTm) -> Layout:
        if decoded.kind is TmKind.EVENT:
            return self.events[decoded.name].layout
        return self.packets[decoded.name].layout


HOUSEKEEPING_SERVICE = 3
HOUSEKEEPING_REPORT = 25
EVENT_SERVICE = 5


def _u16_prefix(data: bytes, what: str) -> int:
    if len(data) < 2:
        raise CodecError(f"{what}: {len(data)} octets, too short for its ID")
    return int.from_bytes(data[:2], "big")


def _close(name: str, known: Mapping[str, Any]) -> str:
    import difflib

    matches = difflib.get_close_matches(name.upper(), list(known), n=1)
    return f" (did you mean {matches[0]}?)" if matches else ""


__all__ = [
    "BytesType",
    "CodecError",
    "Command",
    "DecodedTm",
    "DecodedValueOutOfRange",
    "Dictionary",
    "DictionaryValueError",
    "Event",
    "Failure",
    "Field",
    "Housekeeping",
    "Layout",
    "LimitState",
    "Limits",
    "Parameter",
    "ParameterValuesType",
    "Severity",
    "TmKind",
    "TmPacket",
    "UnknownName",
    "ValueOutOfRange",
]
