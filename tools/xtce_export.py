"""The dictionary as XTCE 1.2 (OMG 20180204), in the form Yamcs loads.

One SpaceSystem named after the dictionary. Telemetry: an abstract CCSDS packet container, an
abstract PUS-C TM container restricted to the payload's APID, then one container per TM packet
(restricted on service and subtype), one per housekeeping structure (TM[3,25] restricted on the
structure ID) and one per event (TM[5,x] restricted on the event ID). Commands: an abstract
PUS-C TC meta-command holding the primary and secondary headers, and one meta-command per
dictionary command that assigns its APID, service and subtype.

What XTCE cannot say as our codec does, and how it is written instead:
- "the rest of the packet" (greedy octets or text): a size computed from the CCSDS packet
  length, less the fixed octets before the field and the 16-bit packet error control;
- a list of parameter values (ST[20]): the count, then the pairs as one binary value;
- a command's greedy octets: an extra, unencoded `<name>_octets` argument gives their count;
- the sequence count, packet length and packet error control of a TC: left at zero for the
  ground station's CCSDS post-processor to fill (Yamcs: `CcsdsPacketPreprocessor`,
  `errorDetection: CRC-16-CCIIT`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from telemetry_defs.model import (
    EVENT_SERVICE,
    HOUSEKEEPING_REPORT,
    HOUSEKEEPING_SERVICE,
    Dictionary,
    Field,
    Layout,
    Limits,
    Parameter,
    ParameterValuesType,
)
from telemetry_defs.valuetypes import (
    GREEDY,
    BoolType,
    BytesType,
    EnumType,
    FloatType,
    IntType,
    StringType,
    ValueType,
)

XTCE_NAMESPACE = "http://www.omg.org/spec/XTCE/20180204"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_SCHEMA = f"{XTCE_NAMESPACE} https://www.omg.org/spec/XTCE/20180204/SpaceSystem.xsd"

# Octets before the source data of a TM packet: primary header 6, PUS-C TM secondary header 14.
TM_HEADER_OCTETS = 20
PEC_OCTETS = 2

# The root telemetry container, to name in the ground station's configuration.
ROOT_CONTAINER = "ccsds_packet"
TM_CONTAINER = "pus_tm"
TC_BASE_COMMAND = "PUS_TC"

ET.register_namespace("", XTCE_NAMESPACE)
ET.register_namespace("xsi", _XSI)


class ExportError(Exception):
    """A definition that the XTCE export cannot express; the message names it."""


def _x(tag: str) -> str:
    return f"{{{XTCE_NAMESPACE}}}{tag}"


def _sub(parent: ET.Element, tag: str, **attrs: object) -> ET.Element:
    return ET.SubElement(parent, _x(tag), {k: _attr(v) for k, v in attrs.items() if v is not None})


def _attr(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class _Header:
    """A bit field of the CCSDS or PUS headers."""

    name: str
    bits: int
    description: str


_PRIMARY = (
    _Header("ccsds_version", 3, "Packet version number (000)."),
    _Header("ccsds_type", 1, "Packet type: 0 telemetry, 1 telecommand."),
    _Header("ccsds_secondary_header", 1, "Secondary header flag (always 1)."),
    _Header("ccsds_apid", 11, "Application process identifier."),
    _Header("ccsds_sequence_flags", 2, "Sequence flags (always 11, unsegmented)."),
    _Header("ccsds_sequence_count", 14, "Packet sequence count."),
    _Header("ccsds_length", 16, "Octets in the packet data field, minus one."),
)
_PUS_TM = (
    _Header("pus_version", 4, "PUS version (0010: PUS-C)."),
    _Header("pus_time_status", 4, "Spacecraft time reference status."),
    _Header("pus_service", 8, "Service type."),
    _Header("pus_subtype", 8, "Message subtype."),
    _Header("pus_message_counter", 16, "Message type counter, per service and subtype."),
    _Header("pus_destination", 16, "Source ID of the TC answered, else 0."),
    _Header("pus_time_pfield", 8, "CCSDS day-segmented time code P-field (0x40)."),
    _Header("pus_time_days", 16, "Days since 1958-01-01 (UTC)."),
    _Header("pus_time_ms", 32, "Milliseconds of the day."),
)


class XtceWriter:
    """Builds the XTCE document of one dictionary."""

    def __init__(self, dictionary: Dictionary) -> None:
        self.d = dictionary
        self._parameter_names: set[str] = set()

    # -- document --------------------------------------------------------------------------

    def document(self) -> ET.Element:
        d = self.d
        root = ET.Element(
            _x("SpaceSystem"),
            {
                "name": d.name,
                "shortDescription": d.description,
                f"{{{_XSI}}}schemaLocation": _SCHEMA,
            },
        )
        header = _sub(root, "Header", version=d.version, classification="NotClassified")
        notes = _sub(header, "NoteSet")
        _sub(notes, "Note").text = f"dictionary SHA-256 {d.sha256}"
        _sub(notes, "Note").text = (
            f"dictionary hash in housekeeping (32 bits) 0x{d.hash32:08X}; "
            f"root container {ROOT_CONTAINER}; generated by tools/dictionary_export.py"
        )
        self._telemetry(_sub(root, "TelemetryMetaData"))
        self._commands(_sub(root, "CommandMetaData"))
        return root

    def text(self) -> str:
        root = self.document()
        ET.indent(root, space="  ")
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"

    # -- telemetry -------------------------------------------------------------------------

    def _telemetry(self, tm: ET.Element) -> None:
        d = self.d
        types = _sub(tm, "ParameterTypeSet")
        params = _sub(tm, "ParameterSet")
        containers = _sub(tm, "ContainerSet")

        for h in (*_PRIMARY, *_PUS_TM):
            self._header_parameter(types, params, h)
        self._enum_parameter(
            types, params, "hk_structure_id", "Housekeeping structure ID.",
            {h.name: h.sid for h in d.housekeeping.values()},
        )  # fmt: skip
        self._enum_parameter(
            types, params, "event_id", "Event ID.", {e.name: e.id for e in d.events.values()}
        )
        for p in sorted(d.parameters.values(), key=lambda p: p.id):
            self._onboard_parameter(types, params, p)

        ccsds = _sub(containers, "SequenceContainer", name=ROOT_CONTAINER, abstract=True)
        ccsds.set("shortDescription", "CCSDS space packet (CCSDS 133.0-B).")
        self._entries(ccsds, [h.name for h in _PRIMARY])
        pus = _sub(containers, "SequenceContainer", name=TM_CONTAINER, abstract=True)
        pus.set("shortDescription", "PUS-C telemetry packet of the payload's APID.")
        self._entries(pus, [h.name for h in _PUS_TM])
        self._base(pus, ROOT_CONTAINER, [("ccsds_type", 0), ("ccsds_apid", d.apid)])

        for packet in sorted(d.packets.values(), key=lambda p: (p.service, p.subtype)):
            names = self._layout_parameters(types, params, packet.name, packet.layout)
            c = self._container(containers, packet.name, packet.description)
            self._entries(c, names)
            self._base(
                c, TM_CONTAINER, [("pus_service", packet.service), ("pus_subtype", packet.subtype)]
            )

        hk = self._container(containers, "HOUSEKEEPING_REPORT", "TM[3,25]: a structure's report.")
        hk.set("abstract", "true")
        self._entries(hk, ["hk_structure_id"])
        self._base(
            hk,
            TM_CONTAINER,
            [("pus_service", HOUSEKEEPING_SERVICE), ("pus_subtype", HOUSEKEEPING_REPORT)],
        )
        for s in sorted(d.housekeeping.values(), key=lambda s: s.sid):
            c = self._container(containers, s.name, s.description)
            self._entries(c, [p.name for p in s.parameters])
            self._base(c, "HOUSEKEEPING_REPORT", [("hk_structure_id", s.sid)])

        ev = self._container(containers, "EVENT_REPORT", "TM[5,x]: an event, x its severity.")
        ev.set("abstract", "true")
        self._entries(ev, ["event_id"])
        self._base(ev, TM_CONTAINER, [("pus_service", EVENT_SERVICE)])
        for e in sorted(d.events.values(), key=lambda e: e.id):
            names = self._layout_parameters(types, params, e.name, e.layout, prefix=2)
            c = self._container(containers, e.name, e.description)
            self._entries(c, names)
            self._base(c, "EVENT_REPORT", [("pus_subtype", int(e.severity)), ("event_id", e.id)])

    def _container(self, parent: ET.Element, name: str, description: str) -> ET.Element:
        return _sub(parent, "SequenceContainer", name=name, shortDescription=description or None)

    def _entries(self, container: ET.Element, names: Iterable[str]) -> None:
        entries = _sub(container, "EntryList")
        for name in names:
            _sub(entries, "ParameterRefEntry", parameterRef=name)

    def _base(self, container: ET.Element, base: str, where: Sequence[tuple[str, int]]) -> None:
        ref = _sub(container, "BaseContainer", containerRef=base)
        criteria = _sub(ref, "RestrictionCriteria")
        comparisons = _sub(criteria, "ComparisonList")
        for name, value in where:
            _sub(
                comparisons,
                "Comparison",
                parameterRef=name,
                value=value,
                useCalibratedValue=False,
            )

    def _new_parameter(self, params: ET.Element, name: str, type_name: str, desc: str) -> None:
        if name in self._parameter_names:
            raise ExportError(f"two XTCE parameters would be named {name}")
        self._parameter_names.add(name)
        _sub(
            params,
            "Parameter",
            name=name,
            parameterTypeRef=type_name,
            shortDescription=desc or None,
        )

    def _header_parameter(self, types: ET.Element, params: ET.Element, h: _Header) -> None:
        t = _sub(types, "IntegerParameterType", name=f"{h.name}_type", signed=False)
        t.set("sizeInBits", str(_engineering_bits(h.bits)))
        _sub(t, "UnitSet")
        _sub(t, "IntegerDataEncoding", sizeInBits=h.bits, encoding="unsigned")
        self._new_parameter(params, h.name, f"{h.name}_type", h.description)

    def _enum_parameter(
        self,
        types: ET.Element,
        params: ET.Element,
        name: str,
        description: str,
        labels: Mapping[str, int],
    ) -> None:
        t = _sub(types, "EnumeratedParameterType", name=f"{name}_type")
        _sub(t, "UnitSet")
        _sub(t, "IntegerDataEncoding", sizeInBits=16, encoding="unsigned")
        self._enumeration(t, labels)
        self._new_parameter(params, name, f"{name}_type", description)

    def _enumeration(self, t: ET.Element, labels: Mapping[str, int]) -> None:
        values = _sub(t, "EnumerationList")
        for label, number in sorted(labels.items(), key=lambda kv: kv[1]):
            _sub(values, "Enumeration", value=number, label=label)

    def _onboard_parameter(self, types: ET.Element, params: ET.Element, p: Parameter) -> None:
        type_name = f"{p.name}_type"
        self._value_type(
            types, "Parameter", type_name, p.type, p.unit, calibration=p.calibration,
            limits=p.limits, valid=p.range if p.settable else None,
        )  # fmt: skip
        self._new_parameter(params, p.name, type_name, p.description)

    def _layout_parameters(
        self,
        types: ET.Element,
        params: ET.Element,
        owner: str,
        layout: Layout,
        prefix: int = 0,
    ) -> list[str]:
        """Parameters for a packet's fields, named OWNER_field; the entry names in order."""
        names: list[str] = []
        offset: int | None = TM_HEADER_OCTETS + prefix
        for f in layout.fields:
            where = f"{owner} field {f.name}"
            name = f"{owner}_{f.name}"
            if isinstance(f.type, ParameterValuesType):
                count = f"{name}_count"
                self._value_type(types, "Parameter", f"{count}_type", IntType("u8", 8))
                self._new_parameter(params, count, f"{count}_type", "Number of values.")
                names.append(count)
                offset = offset + 1 if offset is not None else None
                self._rest_of_packet(types, f"{name}_type", BytesType("bytes"), offset, where)
                self._new_parameter(
                    params,
                    name,
                    f"{name}_type",
                    "(parameter ID u16, value) pairs; each value has its parameter's type.",
                )
                names.append(name)
                offset = None
                continue
            if f.array is not None:
                count = f"{name}_count"
                self._value_type(types, "Parameter", f"{count}_type", f.array)
                self._new_parameter(params, count, f"{count}_type", f"Items in {f.name}.")
                names.append(count)
                item = f"{name}_item_type"
                self._field_type(types, "Parameter", item, f, where)
                array = _sub(types, "ArrayParameterType", name=f"{name}_type", arrayTypeRef=item)
                self._dimension(array, "ParameterInstanceRef", parameterRef=count)
                offset = None
            elif _is_greedy(f.type):
                self._rest_of_packet(types, f"{name}_type", f.type, offset, where, f.unit)
                offset = None
            elif _is_prefixed_octets(f.type):
                length = f"{name}_length"
                self._value_type(types, "Parameter", f"{length}_type", _prefix_type(f.type))
                self._new_parameter(params, length, f"{length}_type", f"Octets in {f.name}.")
                names.append(length)
                t = _sub(types, "BinaryParameterType", name=f"{name}_type")
                self._units(t, f.unit)
                enc = _sub(t, "BinaryDataEncoding")
                dynamic = _sub(_sub(enc, "SizeInBits"), "DynamicValue")
                _sub(dynamic, "ParameterInstanceRef", parameterRef=length)
                _sub(dynamic, "LinearAdjustment", slope=8, intercept=0)
                offset = None
            else:
                self._field_type(types, "Parameter", f"{name}_type", f, where)
                size = _fixed_octets(f.type)
                offset = offset + size if offset is not None and size is not None else None
            self._new_parameter(params, name, f"{name}_type", f.description)
            names.append(name)
        return names

    def _rest_of_packet(
        self,
        types: ET.Element,
        type_name: str,
        value_type: ValueType,
        offset: int | None,
        where: str,
        unit: str = "",
    ) -> None:
        if offset is None:
            raise ExportError(f"{where}: the rest of the packet follows a field of varying size")
        # bits = 8 * (ccsds_length + 1 + 6) - 8 * offset - 16 (PEC)
        intercept = 8 * (1 + 6 - offset - PEC_OCTETS)
        if isinstance(value_type, StringType):
            t = _sub(types, "StringParameterType", name=type_name)
            self._units(t, unit)
            enc = _sub(t, "StringDataEncoding", encoding="UTF-8")
            var = _sub(enc, "Variable", maxSizeInBits=8 * 65536)
            self._packet_length(_sub(var, "DynamicValue"), intercept)
            return
        t = _sub(types, "BinaryParameterType", name=type_name)
        self._units(t, unit)
        enc = _sub(t, "BinaryDataEncoding")
        self._packet_length(_sub(_sub(enc, "SizeInBits"), "DynamicValue"), intercept)

    def _packet_length(self, dynamic: ET.Element, intercept: int) -> None:
        _sub(dynamic, "ParameterInstanceRef", parameterRef="ccsds_length")
        _sub(dynamic, "LinearAdjustment", slope=8, intercept=intercept)

    def _dimension(self, array: ET.Element, ref_tag: str, **ref: str) -> None:
        dims = _sub(_sub(array, "DimensionList"), "Dimension")
        _sub(_sub(dims, "StartingIndex"), "FixedValue").text = "0"
        dynamic = _sub(_sub(dims, "EndingIndex"), "DynamicValue")
        _sub(dynamic, ref_tag, **ref)
        _sub(dynamic, "LinearAdjustment", intercept=-1)

    # -- types -----------------------------------------------------------------------------

    def _field_type(self, types: ET.Element, kind: str, name: str, f: Field, where: str) -> None:
        labels = self._references(f)
        if labels is not None and isinstance(f.type, IntType):
            t = _sub(types, f"Enumerated{kind}Type", name=name)
            self._units(t, f.unit)
            _sub(t, "IntegerDataEncoding", sizeInBits=f.type.bits, encoding="unsigned")
            self._enumeration(t, labels)
            return
        if _is_greedy(f.type):
            raise ExportError(f"{where}: greedy octets are only allowed last")
        self._value_type(types, kind, name, f.type, f.unit, valid=f.range)

    def _references(self, f: Field) -> dict[str, int] | None:
        if f.refers == "failure":
            return {x.name: x.code for x in self.d.failures.values()}
        if f.refers == "parameter":
            return {p.name: p.id for p in self.d.parameters.values()}
        if f.refers == "housekeeping":
            return {h.name: h.sid for h in self.d.housekeeping.values()}
        return None

    def _units(self, t: ET.Element, unit: str) -> None:
        units = _sub(t, "UnitSet")
        if unit:
            _sub(units, "Unit").text = unit

    def _value_type(
        self,
        types: ET.Element,
        kind: str,
        name: str,
        vt: ValueType,
        unit: str = "",
        *,
        calibration: tuple[float, ...] | None = None,
        limits: Limits | None = None,
        valid: tuple[float, float] | None = None,
    ) -> None:
        """One XTCE type of `kind` ("Parameter" or "Argument") for a fixed-size raw type."""
        if isinstance(vt, EnumType):
            t = _sub(types, f"Enumerated{kind}Type", name=name, shortDescription=vt.description)
            self._units(t, unit)
            _sub(t, "IntegerDataEncoding", sizeInBits=vt.base.bits, encoding=_int_coding(vt.base))
            self._enumeration(t, vt.values)
        elif isinstance(vt, BoolType):
            t = _sub(types, f"Boolean{kind}Type", name=name)
            t.set("zeroStringValue", "false")
            t.set("oneStringValue", "true")
            self._units(t, unit)
            _sub(t, "IntegerDataEncoding", sizeInBits=8, encoding="unsigned")
        elif isinstance(vt, IntType) and calibration is None:
            t = _sub(types, f"Integer{kind}Type", name=name, signed=vt.signed, sizeInBits=vt.bits)
            self._units(t, unit)
            _sub(t, "IntegerDataEncoding", sizeInBits=vt.bits, encoding=_int_coding(vt))
            self._valid(t, kind, valid)
            self._alarm(t, limits)
        elif isinstance(vt, IntType | FloatType):
            t = _sub(types, f"Float{kind}Type", name=name, sizeInBits=64)
            self._units(t, unit)
            if isinstance(vt, FloatType):
                enc = _sub(t, "FloatDataEncoding", sizeInBits=vt.bits, encoding="IEEE754_1985")
            else:
                enc = _sub(t, "IntegerDataEncoding", sizeInBits=vt.bits, encoding=_int_coding(vt))
            if calibration is not None:
                poly = _sub(_sub(enc, "DefaultCalibrator"), "PolynomialCalibrator")
                for exponent, coefficient in enumerate(calibration):
                    _sub(poly, "Term", coefficient=coefficient, exponent=exponent)
            self._valid(t, kind, valid)
            self._alarm(t, limits)
        elif isinstance(vt, StringType):
            t = _sub(types, f"String{kind}Type", name=name)
            self._units(t, unit)
            enc = _sub(t, "StringDataEncoding", encoding="UTF-8")
            self._octets_size(enc, vt, variable_tag="Variable")
        elif isinstance(vt, BytesType) and isinstance(vt.length, int):
            t = _sub(types, f"Binary{kind}Type", name=name)
            self._units(t, unit)
            enc = _sub(t, "BinaryDataEncoding")
            _sub(_sub(enc, "SizeInBits"), "FixedValue").text = str(8 * vt.length)
        else:
            raise ExportError(f"{name}: no XTCE type for {vt.name}")

    def _octets_size(self, enc: ET.Element, vt: BytesType, variable_tag: str) -> None:
        if isinstance(vt.length, int):
            _sub(_sub(enc, "SizeInBits"), "Fixed").append(_fixed_value(8 * vt.length))
            return
        var = _sub(enc, variable_tag, maxSizeInBits=8 * (vt.max_length() or 0))
        _sub(var, "LeadingSize", sizeInBitsOfSizeTag=8 * _prefix_octets(vt))

    def _valid(self, t: ET.Element, kind: str, valid: tuple[float, float] | None) -> None:
        if valid is None:
            return
        if kind == "Argument":
            rs = _sub(t, "ValidRangeSet")
            _sub(rs, "ValidRange", minInclusive=valid[0], maxInclusive=valid[1])
        else:
            _sub(t, "ValidRange", minInclusive=valid[0], maxInclusive=valid[1])

    def _alarm(self, t: ET.Element, limits: Limits | None) -> None:
        if limits is None:
            return
        ranges = _sub(_sub(t, "DefaultAlarm"), "StaticAlarmRanges")
        # XTCE's ranges are the values inside which the level is not reached.
        for tag, low, high in (
            ("WarningRange", limits.yellow_low, limits.yellow_high),
            ("CriticalRange", limits.red_low, limits.red_high),
        ):
            if low is not None or high is not None:
                _sub(ranges, tag, minInclusive=low, maxInclusive=high)

    # -- commands --------------------------------------------------------------------------

    def _commands(self, cm: ET.Element) -> None:
        d = self.d
        types = _sub(cm, "ArgumentTypeSet")
        commands = _sub(cm, "MetaCommandSet")
        for name, bits in (("apid", 11), ("ack", 4), ("service", 8), ("subtype", 8)):
            t = _sub(types, "IntegerArgumentType", name=f"tc_{name}_type", signed=False)
            t.set("sizeInBits", str(_engineering_bits(bits)))
            _sub(t, "UnitSet")
            _sub(t, "IntegerDataEncoding", sizeInBits=bits, encoding="unsigned")
        src = _sub(types, "IntegerArgumentType", name="tc_source_type", signed=False)
        src.set("sizeInBits", "16")
        _sub(src, "UnitSet")
        _sub(src, "IntegerDataEncoding", sizeInBits=16, encoding="unsigned")

        base = _sub(commands, "MetaCommand", name=TC_BASE_COMMAND, abstract=True)
        base.set("shortDescription", "PUS-C telecommand: primary and secondary headers (ICD 5).")
        args = _sub(base, "ArgumentList")
        _sub(args, "Argument", name="apid", argumentTypeRef="tc_apid_type")
        _sub(args, "Argument", name="ack", argumentTypeRef="tc_ack_type", initialValue=15)
        _sub(args, "Argument", name="service", argumentTypeRef="tc_service_type")
        _sub(args, "Argument", name="subtype", argumentTypeRef="tc_subtype_type")
        _sub(args, "Argument", name="source_id", argumentTypeRef="tc_source_type", initialValue=0)
        container = _sub(base, "CommandContainer", name=TC_BASE_COMMAND)
        entries = _sub(container, "EntryList")
        fixed = (
            ("ccsds_version", "00", 3),
            ("ccsds_type", "01", 1),
            ("ccsds_secondary_header", "01", 1),
        )
        for name, value, bits in fixed:
            _sub(entries, "FixedValueEntry", name=name, binaryValue=value, sizeInBits=bits)
        _sub(entries, "ArgumentRefEntry", argumentRef="apid")
        for name, value, bits in (
            ("ccsds_sequence_flags", "03", 2),
            ("ccsds_sequence_count", "0000", 14),
            ("ccsds_length", "0000", 16),
            ("pus_version", "02", 4),
        ):
            _sub(entries, "FixedValueEntry", name=name, binaryValue=value, sizeInBits=bits)
        for name in ("ack", "service", "subtype", "source_id"):
            _sub(entries, "ArgumentRefEntry", argumentRef=name)

        for c in sorted(d.commands.values(), key=lambda c: (c.service, c.subtype)):
            mc = _sub(commands, "MetaCommand", name=c.name, shortDescription=c.description or None)
            ref = _sub(mc, "BaseMetaCommand", metaCommandRef=TC_BASE_COMMAND)
            assign = _sub(ref, "ArgumentAssignmentList")
            assigned = (("apid", d.apid), ("service", c.service), ("subtype", c.subtype))
            for arg, number in assigned:
                _sub(assign, "ArgumentAssignment", argumentName=arg, argumentValue=number)
            arguments, encoded = self._arguments(types, c.name, c.layout)
            if arguments:
                arg_list = _sub(mc, "ArgumentList")
                for arg_name, type_name, desc in arguments:
                    _sub(
                        arg_list,
                        "Argument",
                        name=arg_name,
                        argumentTypeRef=type_name,
                        shortDescription=desc or None,
                    )
            cc = _sub(mc, "CommandContainer", name=f"{c.name}_container")
            cc_entries = _sub(cc, "EntryList")
            for arg_name in encoded:
                _sub(cc_entries, "ArgumentRefEntry", argumentRef=arg_name)
            _sub(cc, "BaseContainer", containerRef=TC_BASE_COMMAND)

    def _arguments(
        self, types: ET.Element, command: str, layout: Layout
    ) -> tuple[list[tuple[str, str, str]], list[str]]:
        """(argument name, type name, description) of every argument, and those encoded."""
        arguments: list[tuple[str, str, str]] = []
        encoded: list[str] = []
        for f in layout.fields:
            where = f"{command} argument {f.name}"
            type_name = f"{command}_{f.name}_type"
            if isinstance(f.type, ParameterValuesType) or _is_greedy(f.type):
                pairs = isinstance(f.type, ParameterValuesType)
                if pairs:
                    count = f"{f.name}_count"
                    self._value_type(types, "Argument", f"{command}_{count}_type", IntType("u8", 8))
                    arguments.append((count, f"{command}_{count}_type", "Number of values."))
                    encoded.append(count)
                octets = f"{f.name}_octets"
                ot = _sub(
                    types, "IntegerArgumentType", name=f"{command}_{octets}_type", signed=False
                )
                ot.set("sizeInBits", "16")
                _sub(ot, "UnitSet")
                _sub(ot, "IntegerDataEncoding", sizeInBits=16, encoding="unsigned")
                arguments.append(
                    (octets, f"{command}_{octets}_type", f"Octets in {f.name} (not sent).")
                )
                if isinstance(f.type, StringType):
                    t = _sub(types, "StringArgumentType", name=type_name)
                    _sub(t, "UnitSet")
                    enc = _sub(t, "StringDataEncoding", encoding="UTF-8")
                    size = _sub(enc, "Variable", maxSizeInBits=8 * 65536)
                else:
                    t = _sub(types, "BinaryArgumentType", name=type_name)
                    _sub(t, "UnitSet")
                    size = _sub(_sub(t, "BinaryDataEncoding"), "SizeInBits")
                dynamic = _sub(size, "DynamicValue")
                _sub(dynamic, "ArgumentInstanceRef", argumentRef=octets)
                _sub(dynamic, "LinearAdjustment", slope=8, intercept=0)
                text = (
                    "(parameter ID u16, value) pairs; each value has its parameter's type."
                    if pairs
                    else f.description
                )
                arguments.append((f.name, type_name, text))
                encoded.append(f.name)
                continue
            if _is_prefixed_octets(f.type):
                length = f"{f.name}_length"
                self._value_type(
                    types, "Argument", f"{command}_{length}_type", _prefix_type(f.type)
                )
                arguments.append((length, f"{command}_{length}_type", f"Octets in {f.name}."))
                encoded.append(length)
                t = _sub(types, "BinaryArgumentType", name=type_name)
                self._units(t, f.unit)
                dynamic = _sub(_sub(_sub(t, "BinaryDataEncoding"), "SizeInBits"), "DynamicValue")
                _sub(dynamic, "ArgumentInstanceRef", argumentRef=length)
                _sub(dynamic, "LinearAdjustment", slope=8, intercept=0)
            elif f.array is not None:
                count = f"{f.name}_count"
                self._value_type(types, "Argument", f"{command}_{count}_type", f.array)
                arguments.append((count, f"{command}_{count}_type", f"Items in {f.name}."))
                encoded.append(count)
                item = f"{command}_{f.name}_item_type"
                self._field_type(types, "Argument", item, f, where)
                array = _sub(types, "ArrayArgumentType", name=type_name, arrayTypeRef=item)
                self._dimension(array, "ArgumentInstanceRef", argumentRef=count)
            else:
                self._field_type(types, "Argument", type_name, f, where)
            arguments.append((f.name, type_name, f.description))
            encoded.append(f.name)
        return arguments, encoded


def _is_greedy(vt: ValueType) -> bool:
    return isinstance(vt, BytesType) and vt.length == GREEDY


def _is_prefixed_octets(vt: ValueType) -> bool:
    return type(vt) is BytesType and isinstance(vt.length, str) and vt.length != GREEDY


def _prefix_type(vt: ValueType) -> IntType:
    assert isinstance(vt, BytesType)
    return IntType(str(vt.length), 8 * _prefix_octets(vt))


def _fixed_octets(vt: ValueType) -> int | None:
    if isinstance(vt, EnumType):
        return vt.base.bits // 8
    if isinstance(vt, IntType | FloatType):
        return vt.bits // 8
    if isinstance(vt, BoolType):
        return 1
    if isinstance(vt, BytesType) and isinstance(vt.length, int):
        return vt.length
    return None


def _prefix_octets(vt: BytesType) -> int:
    return int(str(vt.length)[1:]) // 8


def _engineering_bits(raw_bits: int) -> int:
    return next(b for b in (8, 16, 32, 64) if b >= raw_bits)


def _int_coding(vt: IntType) -> str:
    return "twosComplement" if vt.signed else "unsigned"


def _fixed_value(bits: int) -> ET.Element:
    e = ET.Element(_x("FixedValue"))
    e.text = str(bits)
    return e


def xtce_text(dictionary: Dictionary) -> str:
    """The dictionary as an XTCE 1.2 document."""
    return XtceWriter(dictionary).text()
