"""XTCE telemetry: the header parameters, a parameter per packet field, and the containers.

Containers: `ccsds_packet` (abstract: the primary header) → `pus_tm` (abstract: the PUS-C TM
secondary header, restricted to TM of the payload's APID) → one container per TM packet
(restricted on service and subtype), `HOUSEKEEPING_REPORT` → one per structure (restricted on
the structure ID), `EVENT_REPORT` → one per event (restricted on the event ID and severity).
Every concrete container ends with the packet error control, so that the whole packet is read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from telemetry_defs.model import (
    EVENT_SERVICE,
    HOUSEKEEPING_REPORT,
    HOUSEKEEPING_SERVICE,
    Dictionary,
    Layout,
    Parameter,
    ParameterValuesType,
)
from telemetry_defs.valuetypes import BytesType, IntType
from tools.xtce_types import (
    ExportError,
    TypeWriter,
    fixed_octets,
    is_greedy,
    is_prefixed,
    prefix_type,
    reference_labels,
    sub,
)

# Octets before the source data of a TM packet: primary header 6, PUS-C TM secondary header 14.
TM_HEADER_OCTETS = 20
PEC_OCTETS = 2
# The most octets a packet's data can hold (the CCSDS packet length field is 16 bits).
MAX_DATA_OCTETS = 65536

# The root telemetry container, to name in the ground station's configuration.
ROOT_CONTAINER = "ccsds_packet"
TM_CONTAINER = "pus_tm"


@dataclass(frozen=True)
class Header:
    """A bit field of the CCSDS or PUS headers."""

    name: str
    bits: int
    description: str


PRIMARY = (
    Header("ccsds_version", 3, "Packet version number (000)."),
    Header("ccsds_type", 1, "Packet type: 0 telemetry, 1 telecommand."),
    Header("ccsds_secondary_header", 1, "Secondary header flag (always 1)."),
    Header("ccsds_apid", 11, "Application process identifier."),
    Header("ccsds_sequence_flags", 2, "Sequence flags (always 11, unsegmented)."),
    Header("ccsds_sequence_count", 14, "Packet sequence count."),
    Header("ccsds_length", 16, "Octets in the packet data field, minus one."),
)
PUS_TM = (
    Header("pus_version", 4, "PUS version (0010: PUS-C)."),
    Header("pus_time_status", 4, "Spacecraft time reference status."),
    Header("pus_service", 8, "Service type."),
    Header("pus_subtype", 8, "Message subtype."),
    Header("pus_message_counter", 16, "Message type counter, per service and subtype."),
    Header("pus_destination", 16, "Source ID of the TC answered, else 0."),
    Header("pus_time_pfield", 8, "CCSDS day-segmented time code P-field (0x40)."),
    Header("pus_time_days", 16, "Days since 1958-01-01 (UTC)."),
    Header("pus_time_ms", 32, "Milliseconds of the day."),
)
PEC = Header(
    "ccsds_packet_error_control", 16, "CRC-16/CCITT-FALSE of every octet before it (ICD 5)."
)


@dataclass(frozen=True)
class Repeat:
    """A container entry read `count` times (XTCE RepeatEntry): a list whose items each carry
    their own length, which an XTCE array cannot say."""

    container: str
    count: str


Entry = str | Repeat


class TelemetryWriter:
    """Writes the TelemetryMetaData of one dictionary."""

    def __init__(self, dictionary: Dictionary, tm: ET.Element) -> None:
        self.d = dictionary
        self.types = TypeWriter(sub(tm, "ParameterTypeSet"), "Parameter")
        self.params = sub(tm, "ParameterSet")
        self.containers = sub(tm, "ContainerSet")
        self._names: set[str] = set()

    def write(self) -> None:
        d = self.d
        for h in (*PRIMARY, *PUS_TM, PEC):
            self.types.unsigned(f"{h.name}_type", h.bits)
            self._parameter(h.name, f"{h.name}_type", h.description)
        structures = {h.name: h.sid for h in d.housekeeping.values()}
        self.types.enumerated("hk_structure_id_type", 16, structures)
        self._parameter("hk_structure_id", "hk_structure_id_type", "Housekeeping structure ID.")
        self.types.enumerated("event_id_type", 16, {e.name: e.id for e in d.events.values()})
        self._parameter("event_id", "event_id_type", "Event ID.")
        for p in sorted(d.parameters.values(), key=lambda p: p.id):
            self._onboard_parameter(p)

        ccsds = self._container(ROOT_CONTAINER, "CCSDS space packet (CCSDS 133.0-B).", True)
        self._entries(ccsds, [h.name for h in PRIMARY])
        pus = self._container(TM_CONTAINER, "PUS-C telemetry packet of the payload's APID.", True)
        self._entries(pus, [h.name for h in PUS_TM])
        self._base(pus, ROOT_CONTAINER, [("ccsds_type", 0), ("ccsds_apid", d.apid)])

        for packet in sorted(d.packets.values(), key=lambda p: (p.service, p.subtype)):
            entries = self._layout(packet.name, packet.layout)
            c = self._container(packet.name, packet.description)
            self._entries(c, [*entries, PEC.name])
            where = [("pus_service", packet.service), ("pus_subtype", packet.subtype)]
            self._base(c, TM_CONTAINER, where)

        hk = self._container("HOUSEKEEPING_REPORT", "TM[3,25]: a structure's report.", True)
        self._entries(hk, ["hk_structure_id"])
        where = [("pus_service", HOUSEKEEPING_SERVICE), ("pus_subtype", HOUSEKEEPING_REPORT)]
        self._base(hk, TM_CONTAINER, where)
        for s in sorted(d.housekeeping.values(), key=lambda s: s.sid):
            c = self._container(s.name, s.description)
            self._entries(c, [*(p.name for p in s.parameters), PEC.name])
            self._base(c, "HOUSEKEEPING_REPORT", [("hk_structure_id", s.sid)])

        ev = self._container("EVENT_REPORT", "TM[5,x]: an event, x its severity.", True)
        self._entries(ev, ["event_id"])
        self._base(ev, TM_CONTAINER, [("pus_service", EVENT_SERVICE)])
        for e in sorted(d.events.values(), key=lambda e: e.id):
            entries = self._layout(e.name, e.layout, prefix=2)
            c = self._container(e.name, e.description)
            self._entries(c, [*entries, PEC.name])
            self._base(c, "EVENT_REPORT", [("pus_subtype", int(e.severity)), ("event_id", e.id)])

    # -- containers ------------------------------------------------------------------------

    def _container(self, name: str, description: str, abstract: bool = False) -> ET.Element:
        c = sub(self.containers, "SequenceContainer", name=name)
        if description:
            c.set("shortDescription", description)
        if abstract:
            c.set("abstract", "true")
        return c

    def _entries(self, container: ET.Element, entries: Iterable[Entry]) -> None:
        entry_list = sub(container, "EntryList")
        for entry in entries:
            if isinstance(entry, Repeat):
                ref = sub(entry_list, "ContainerRefEntry", containerRef=entry.container)
                count = sub(sub(ref, "RepeatEntry"), "Count")
                self.types.dynamic(count, entry.count, slope=1, intercept=0)
            else:
                sub(entry_list, "ParameterRefEntry", parameterRef=entry)

    def _base(self, container: ET.Element, base: str, where: Sequence[tuple[str, int]]) -> None:
        ref = sub(container, "BaseContainer", containerRef=base)
        comparisons = sub(sub(ref, "RestrictionCriteria"), "ComparisonList")
        for name, value in where:
            sub(comparisons, "Comparison", parameterRef=name, value=value, useCalibratedValue=False)

    # -- parameters ------------------------------------------------------------------------

    def _parameter(self, name: str, type_name: str, description: str) -> None:
        if name in self._names:
            raise ExportError(f"two XTCE parameters would be named {name}")
        self._names.add(name)
        sub(
            self.params,
            "Parameter",
            name=name,
            parameterTypeRef=type_name,
            shortDescription=description or None,
        )

    def _onboard_parameter(self, p: Parameter) -> None:
        if fixed_octets(p.type) is None:
            raise ExportError(f"parameter {p.name}: housekeeping needs a fixed-size type")
        type_name = f"{p.name}_type"
        self.types.value(
            type_name, p.type, p.unit, calibration=p.calibration, limits=p.limits,
            valid=p.range if p.settable else None,
        )  # fmt: skip
        self._parameter(p.name, type_name, p.description)

    def _counted(self, name: str, counter: IntType, description: str) -> str:
        self.types.value(f"{name}_type", counter)
        self._parameter(name, f"{name}_type", description)
        return name

    def _layout(self, owner: str, layout: Layout, prefix: int = 0) -> list[Entry]:
        """Parameters for a packet's fields, named OWNER_field; the container entries in order.

        What XTCE cannot say as the codec does, and how it is written instead:
        - "the rest of the packet" (greedy octets or text): a size computed from the CCSDS
          packet length, less the fixed octets before the field and the packet error control;
        - a list of parameter values (ST[20]): the count, then the pairs as one binary value;
        - a length-prefixed value: its length as a parameter of its own, which the value's size
          refers to (octets x 8);
        - a list of length-prefixed values: an item container (length, value) repeated.
        """
        entries: list[Entry] = []
        offset: int | None = TM_HEADER_OCTETS + prefix
        for f in layout.fields:
            where = f"{owner} field {f.name}"
            name = f"{owner}_{f.name}"
            if isinstance(f.type, ParameterValuesType):
                entries.append(
                    self._counted(f"{name}_count", IntType("u8", 8), "Number of values.")
                )
                offset = offset + 1 if offset is not None else None
                self._rest_of_packet(f"{name}_type", BytesType("bytes"), offset, where)
                description = (
                    "(parameter ID u16, value) pairs; each value has its parameter's type."
                )
                self._parameter(name, f"{name}_type", description)
                entries.append(name)
                offset = None
                continue
            if f.array is not None:
                count = self._counted(f"{name}_count", f.array, f"Items in {f.name}.")
                entries.append(count)
                offset = None
                if isinstance(f.type, BytesType) and is_prefixed(f.type):
                    entries.append(Repeat(self._item_container(name, f.type, f.name), count))
                    continue
                item = f"{name}_item_type"
                self.types.field(item, f, reference_labels(self.d, f, where), where)
                self.types.array(f"{name}_type", item, count)
            elif is_greedy(f.type):
                assert isinstance(f.type, BytesType)
                self._rest_of_packet(f"{name}_type", f.type, offset, where, f.unit)
                offset = None
            elif is_prefixed(f.type):
                assert isinstance(f.type, BytesType)
                entries.append(self._length(name, f.type, f.name))
                self._prefixed(name, f.type, f.unit)
                offset = None
            else:
                self.types.field(f"{name}_type", f, reference_labels(self.d, f, where), where)
                size = fixed_octets(f.type)
                offset = offset + size if offset is not None and size is not None else None
            self._parameter(name, f"{name}_type", f.description)
            entries.append(name)
        return entries

    def _length(self, name: str, vt: BytesType, field: str) -> str:
        length = f"{name}_length"
        self.types.value(f"{length}_type", prefix_type(vt))
        self._parameter(length, f"{length}_type", f"Octets in {field}.")
        return length

    def _prefixed(self, name: str, vt: BytesType, unit: str = "") -> None:
        most = vt.max_length()
        assert most is not None
        self.types.sized(f"{name}_type", vt, f"{name}_length", max_octets=most, unit=unit)

    def _item_container(self, name: str, vt: BytesType, field: str) -> str:
        """The container of one item of a list of length-prefixed values: length, value."""
        item = f"{name}_item"
        length = self._length(name, vt, f"one item of {field}")
        self._prefixed(name, vt)
        self._parameter(name, f"{name}_type", f"One item of {field} (repeated).")
        c = self._container(item, f"One item of {field}: its length, then its octets.")
        self._entries(c, [length, name])
        return item

    def _rest_of_packet(
        self, type_name: str, vt: BytesType, offset: int | None, where: str, unit: str = ""
    ) -> None:
        if offset is None:
            raise ExportError(f"{where}: the rest of the packet follows a field of varying size")
        # bits = 8 * (ccsds_length + 1 + 6) - 8 * offset - 16 (PEC)
        intercept = 8 * (1 + 6 - offset - PEC_OCTETS)
        self.types.sized(
            type_name,
            vt,
            "ccsds_length",
            intercept=intercept,
            max_octets=MAX_DATA_OCTETS,
            unit=unit,
        )
