"""An XTCE consumer we did not write: space_packet_parser (LASP, from the package index) decodes
TM packets with the XTCE export alone, and every value it gives is compared with the
dictionary's own decode (telemetry_defs).

What the library lacks of XTCE 1.2, and the export keeps, being the standard constructs:
- ArrayParameterType: the library refuses a whole document that has one (NotImplementedError).
  Affected: FILE_UPLOAD_REPORT (missing_offsets, missing_lengths), FILE_LIST_REPORT (sizes,
  upload_ids, upload_sizes, upload_received), MODEL_LIST_REPORT (versions, sizes),
  JOB_LIST_REPORT (job_ids, states, priorities, progress, versions, submitted_times,
  started_times, finished_times).
- RepeatEntry (on the ContainerRefEntry of a list of length-prefixed names): the library reads
  the entry once, whatever the count. Affected: FILE_LIST_REPORT (names, upload_names),
  MODEL_LIST_REPORT (names), JOB_LIST_REPORT (models).
- MetaCommand: it decodes telemetry only; commands are checked with tests/xtce_reader.py.
The library is given a copy of the document without the array types and the parameters of
those types, and with each container that uses them cut before its first array or repeated
entry (the packet error control after it goes too): the fields before the cut are compared, and
the packets and fields after it are reported as unchecked, with the construct.

Comparing values: the library gives each value with its raw value (`raw_value`). Both are
compared: raw integers, floats, octets and text as the codec reads them; an enumerated value's
label with the dictionary's name for the number (enumerations, failure codes, parameter and
structure IDs, "NONE" for a reference to nothing); a boolean as true or false; a calibrated
parameter's engineering value with `Parameter.engineering` (within 1e-9, relative) and its raw
value exactly.
"""

from __future__ import annotations

import io
import math
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import space_packet_parser as spp
from space_packet_parser.xtce.definitions import XtcePacketDefinition

from spacelink.spacepacket import PusTm
from telemetry_defs.model import (
    DecodedTm,
    Dictionary,
    Field,
    Parameter,
    ParameterValuesType,
    TmKind,
)
from telemetry_defs.valuetypes import BoolType, BytesType, EnumType, IntType, StringType
from tools.xtce_export import ROOT_CONTAINER
from tools.xtce_types import NONE_LABEL, is_prefixed

X = "{http://www.omg.org/spec/XTCE/20180204}"
# The OMG's XTCE 1.2 schema, as the library ships it (unmodified; its README says so).
XTCE_SCHEMA = Path(spp.__file__).parent / "xtce" / "schemas" / "SpaceSystem.xsd"


@dataclass(frozen=True)
class Expected:
    """A value as the library should give it: `value` (engineering or label) and `raw`."""

    value: Any
    raw: Any


@dataclass
class Checked:
    """What one packet's check compared, and what the library could not read."""

    definition: str
    compared: int
    unchecked: list[str] = field(default_factory=list)  # "field (construct)"


def library_document(text: str) -> tuple[bytes, dict[str, tuple[str, str]]]:
    """The export as the library can load it, and the containers cut: name -> (first entry not
    read, the construct it lacks)."""
    root = ET.fromstring(text)
    tm = root.find(f"{X}TelemetryMetaData")
    assert tm is not None
    types = tm.find(f"{X}ParameterTypeSet")
    params = tm.find(f"{X}ParameterSet")
    containers = tm.find(f"{X}ContainerSet")
    assert types is not None and params is not None and containers is not None
    arrays = {t.get("name") for t in types if t.tag == f"{X}ArrayParameterType"}
    for t in [t for t in types if t.get("name") in arrays]:
        types.remove(t)
    dropped = {p.get("name") for p in params if p.get("parameterTypeRef") in arrays}
    for p in [p for p in params if p.get("name") in dropped]:
        params.remove(p)
    cut: dict[str, tuple[str, str]] = {}
    for c in containers:
        entries = c.find(f"{X}EntryList")
        assert entries is not None
        items = list(entries)
        for i, entry in enumerate(items):
            if entry.get("parameterRef") in dropped:
                construct = "ArrayParameterType"
            elif entry.find(f"{X}RepeatEntry") is not None:
                construct = "RepeatEntry"
            else:
                continue
            name = entry.get("parameterRef") or entry.get("containerRef") or ""
            cut[c.get("name", "")] = (name, construct)
            for e in items[i:]:
                entries.remove(e)
            break
    return ET.tostring(root, encoding="utf-8", xml_declaration=True), cut


class Consumer:
    """The library loaded with an XTCE document, checking packets against a dictionary."""

    def __init__(self, xtce_text: str, dictionary: Dictionary) -> None:
        document, self.cut = library_document(xtce_text)
        self.definition = XtcePacketDefinition.from_xtce(
            io.BytesIO(document), root_container_name=ROOT_CONTAINER
        )
        self.d = dictionary
        # The parameters each cut container does not read: its own from the cut on.
        self._not_read: dict[str, set[str]] = {}
        containers = {
            c.get("name", ""): c for c in ET.fromstring(xtce_text).iter(f"{X}SequenceContainer")
        }

        def parameters(name: str) -> list[str]:
            out: list[str] = []
            for e in containers[name].iterfind(f"{X}EntryList/*"):
                if e.get("containerRef") is not None:
                    out += [e.get("containerRef", ""), *parameters(e.get("containerRef", ""))]
                else:
                    out.append(e.get("parameterRef", ""))
            return out

        for name, (first, _) in self.cut.items():
            entries = parameters(name)
            self._not_read[name] = set(entries[entries.index(first) :])

    def check(self, packet: bytes) -> Checked:
        """Decode `packet` with the library and compare every value it read with the
        dictionary's; AssertionError lists every difference."""
        tm = PusTm.unpack(packet)
        decoded = self.d.decode_tm(tm.service, tm.subtype, tm.source_data)
        expected = {**_headers(packet, tm), **self._source(decoded)}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = self.definition.parse_bytes(packet)
        not_read = self._not_read.get(decoded.name, set())
        unchecked = sorted(k for k in expected if k in not_read)
        wanted = {k: v for k, v in expected.items() if k not in unchecked}
        # The library warns when it leaves bits unread: expected only where it was cut short.
        problems = [
            f"library warned: {w.message}"
            for w in caught
            if not (not_read and "did not match the length" in str(w.message))
        ]
        if set(got) != set(wanted):
            missing, extra = sorted(set(wanted) - set(got)), sorted(set(got) - set(wanted))
            problems.append(f"parameters missing {missing}, unexpected {extra}")
        for key in sorted(set(got) & set(wanted)):
            problem = _differs(key, wanted[key], got[key])
            if problem:
                problems.append(problem)
        if problems:
            raise AssertionError(f"{decoded.name}: " + "; ".join(problems))
        construct = self.cut.get(decoded.name, ("", ""))[1]
        return Checked(decoded.name, len(wanted), [f"{k} ({construct})" for k in unchecked])

    # -- what the dictionary says ------------------------------------------------------------

    def _source(self, decoded: DecodedTm) -> dict[str, Expected]:
        d = self.d
        out: dict[str, Expected] = {}
        if decoded.kind is TmKind.HOUSEKEEPING:
            structure = d.housekeeping[decoded.name]
            out["hk_structure_id"] = Expected(decoded.name, structure.sid)
            for p in structure.parameters:
                out[p.name] = _parameter(p, decoded.values[p.name])
            return out
        if decoded.kind is TmKind.EVENT:
            event = d.events[decoded.name]
            out["event_id"] = Expected(decoded.name, event.id)
            layout = event.layout
        else:
            layout = d.packets[decoded.name].layout
        for f in layout.fields:
            out.update(self._field(f"{decoded.name}_{f.name}", f, decoded.values[f.name]))
        return out

    def _field(self, key: str, f: Field, value: Any) -> dict[str, Expected]:
        if isinstance(f.type, ParameterValuesType):
            pairs = f.construct().build(value)[1:]
            return {f"{key}_count": Expected(len(value), len(value)), key: Expected(pairs, pairs)}
        if f.array is not None:
            out = {f"{key}_count": Expected(len(value), len(value))}
            items = [self._one(f, v) for v in value]
            out[key] = Expected([i.value for i in items], [i.raw for i in items])
            return out
        out = {}
        if is_prefixed(f.type):
            size = len(value.encode() if isinstance(value, str) else value)
            out[f"{key}_length"] = Expected(size, size)
        out[key] = self._one(f, value)
        return out

    def _one(self, f: Field, value: Any) -> Expected:
        if f.refers is not None:
            return Expected(self._label(f, value), value)
        return _typed(f.type, value)

    def _label(self, f: Field, number: int) -> str:
        if number == f.none:
            return NONE_LABEL
        if f.refers == "failure":
            failure = self.d.failure(number)
            return failure.name if failure else f"{number}?"
        if f.refers == "parameter":
            p = self.d.parameter_by_id(number)
            return p.name if p else f"{number}?"
        structure = self.d.structure(number)
        return structure.name if structure else f"{number}?"


def _headers(packet: bytes, tm: PusTm) -> dict[str, Expected]:
    values = {
        "ccsds_version": 0,
        "ccsds_type": 0,
        "ccsds_secondary_header": 1,
        "ccsds_apid": tm.apid,
        "ccsds_sequence_flags": 3,
        "ccsds_sequence_count": tm.seq_count,
        "ccsds_length": len(packet) - 7,
        "pus_version": 2,
        "pus_time_status": tm.time_ref_status,
        "pus_service": tm.service,
        "pus_subtype": tm.subtype,
        "pus_message_counter": tm.msg_type_counter,
        "pus_destination": tm.destination_id,
        "pus_time_pfield": 0x40,
        "pus_time_days": tm.time.days,
        "pus_time_ms": tm.time.ms_of_day,
        "ccsds_packet_error_control": int.from_bytes(packet[-2:], "big"),
    }
    return {k: Expected(v, v) for k, v in values.items()}


def _parameter(p: Parameter, raw: Any) -> Expected:
    if p.calibration is not None:
        return Expected(p.engineering(raw), raw)
    return _typed(p.type, raw)


def _typed(vt: Any, value: Any) -> Expected:
    if isinstance(vt, EnumType):
        return Expected(vt.names()[value], value)
    if isinstance(vt, BoolType):
        return Expected(bool(value), int(value))
    if isinstance(vt, StringType):
        return Expected(value, value.encode())
    if isinstance(vt, BytesType | IntType):
        return Expected(value, value)
    return Expected(float(value), float(value))


def _differs(key: str, want: Expected, got: Any) -> str | None:
    raw = getattr(got, "raw_value", got)
    if isinstance(want.value, float):
        # A reading the payload has not got (no power source: POWER_STATUS) goes down as NaN.
        nan = math.isnan(want.value) and math.isnan(float(got)) and math.isnan(float(raw))
        same = nan or math.isclose(float(got), want.value, rel_tol=1e-9, abs_tol=1e-12)
        same_raw = nan or raw == want.raw
    else:
        same = bool(got == want.value)
        same_raw = raw == want.raw
    if not same or not same_raw:
        return f"{key}: library {got!r} (raw {raw!r}), dictionary {want.value!r} (raw {want.raw!r})"
    return None
