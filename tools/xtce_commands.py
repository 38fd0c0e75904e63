"""XTCE commands: an abstract PUS-C TC meta-command holding the primary and secondary headers,
and one meta-command per dictionary command that assigns its APID, service and subtype.

The sequence count, packet length and packet error control of a TC are left at zero for the
ground station's CCSDS post-processor to fill (Yamcs: `CcsdsPacketPreprocessor`,
`errorDetection: CRC-16-CCIIT`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from telemetry_defs.model import Dictionary, Layout, ParameterValuesType
from telemetry_defs.valuetypes import BytesType, IntType
from tools.xtce_types import (
    ExportError,
    TypeWriter,
    is_greedy,
    is_prefixed,
    prefix_type,
    reference_labels,
    sub,
)

TC_BASE_COMMAND = "PUS_TC"
# The most octets a command's greedy value can hold (the CCSDS packet length field is 16 bits).
MAX_DATA_OCTETS = 65536


@dataclass(frozen=True)
class Argument:
    name: str
    type_name: str
    description: str
    encoded: bool = True  # False: only sizes another argument (the count of greedy octets)


class CommandWriter:
    """Writes the CommandMetaData of one dictionary."""

    def __init__(self, dictionary: Dictionary, cm: ET.Element) -> None:
        self.d = dictionary
        self.types = TypeWriter(sub(cm, "ArgumentTypeSet"), "Argument")
        self.commands = sub(cm, "MetaCommandSet")

    def write(self) -> None:
        d = self.d
        for name, bits in (("apid", 11), ("ack", 4), ("service", 8), ("subtype", 8)):
            self.types.unsigned(f"tc_{name}_type", bits)
        self.types.unsigned("tc_source_type", 16)
        self._base_command()
        for c in sorted(d.commands.values(), key=lambda c: (c.service, c.subtype)):
            mc = sub(
                self.commands, "MetaCommand", name=c.name, shortDescription=c.description or None
            )
            ref = sub(mc, "BaseMetaCommand", metaCommandRef=TC_BASE_COMMAND)
            assign = sub(ref, "ArgumentAssignmentList")
            assigned = (("apid", d.apid), ("service", c.service), ("subtype", c.subtype))
            for arg, number in assigned:
                sub(assign, "ArgumentAssignment", argumentName=arg, argumentValue=number)
            arguments = self._arguments(c.name, c.layout)
            if arguments:
                arg_list = sub(mc, "ArgumentList")
                for a in arguments:
                    sub(
                        arg_list,
                        "Argument",
                        name=a.name,
                        argumentTypeRef=a.type_name,
                        shortDescription=a.description or None,
                    )
            cc = sub(mc, "CommandContainer", name=f"{c.name}_container")
            entries = sub(cc, "EntryList")
            for a in arguments:
                if a.encoded:
                    sub(entries, "ArgumentRefEntry", argumentRef=a.name)
            sub(cc, "BaseContainer", containerRef=TC_BASE_COMMAND)

    def _base_command(self) -> None:
        base = sub(self.commands, "MetaCommand", name=TC_BASE_COMMAND, abstract=True)
        base.set("shortDescription", "PUS-C telecommand: primary and secondary headers (ICD 5).")
        args = sub(base, "ArgumentList")
        sub(args, "Argument", name="apid", argumentTypeRef="tc_apid_type")
        sub(args, "Argument", name="ack", argumentTypeRef="tc_ack_type", initialValue=15)
        sub(args, "Argument", name="service", argumentTypeRef="tc_service_type")
        sub(args, "Argument", name="subtype", argumentTypeRef="tc_subtype_type")
        sub(args, "Argument", name="source_id", argumentTypeRef="tc_source_type", initialValue=0)
        entries = sub(sub(base, "CommandContainer", name=TC_BASE_COMMAND), "EntryList")

        def fixed(name: str, value: str, bits: int) -> None:
            sub(entries, "FixedValueEntry", name=name, binaryValue=value, sizeInBits=bits)

        fixed("ccsds_version", "00", 3)
        fixed("ccsds_type", "01", 1)
        fixed("ccsds_secondary_header", "01", 1)
        sub(entries, "ArgumentRefEntry", argumentRef="apid")
        fixed("ccsds_sequence_flags", "03", 2)
        fixed("ccsds_sequence_count", "0000", 14)
        fixed("ccsds_length", "0000", 16)
        fixed("pus_version", "02", 4)
        for name in ("ack", "service", "subtype", "source_id"):
            sub(entries, "ArgumentRefEntry", argumentRef=name)

    def _arguments(self, command: str, layout: Layout) -> list[Argument]:
        """Every argument of a command, in order.

        What XTCE cannot say as the codec does, and how it is written instead:
        - greedy octets or text, and a list of parameter values (ST[20]: the count, then the
          pairs as one binary value): an extra, unencoded `<name>_octets` argument gives their
          count;
        - a length-prefixed value: its length as an argument of its own, which the value's size
          refers to (octets x 8).
        """
        arguments: list[Argument] = []

        def counter(name: str, vt: IntType, description: str, encoded: bool = True) -> str:
            """An integer argument that counts or sizes the next one."""
            self.types.value(f"{command}_{name}_type", vt)
            arguments.append(Argument(name, f"{command}_{name}_type", description, encoded))
            return name

        for f in layout.fields:
            where = f"{command} argument {f.name}"
            type_name = f"{command}_{f.name}_type"
            if isinstance(f.type, ParameterValuesType) or is_greedy(f.type):
                pairs = isinstance(f.type, ParameterValuesType)
                if pairs:
                    counter(f"{f.name}_count", IntType("u8", 8), "Number of values.")
                size = counter(
                    f"{f.name}_octets", IntType("u16", 16), f"Octets in {f.name} (not sent).", False
                )
                vt = f.type if isinstance(f.type, BytesType) else BytesType("bytes")
                self.types.sized(type_name, vt, size, max_octets=MAX_DATA_OCTETS, unit=f.unit)
                description = (
                    "(parameter ID u16, value) pairs; each value has its parameter's type."
                    if pairs
                    else f.description
                )
                arguments.append(Argument(f.name, type_name, description))
                continue
            if f.array is not None:
                if is_prefixed(f.type):
                    raise ExportError(f"{where}: a list of length-prefixed values in a command")
                count = counter(f"{f.name}_count", f.array, f"Items in {f.name}.")
                item = f"{command}_{f.name}_item_type"
                self.types.field(item, f, reference_labels(self.d, f, where), where)
                self.types.array(type_name, item, count)
            elif is_prefixed(f.type):
                assert isinstance(f.type, BytesType)
                length = counter(f"{f.name}_length", prefix_type(f.type), f"Octets in {f.name}.")
                most = f.type.max_length()
                assert most is not None
                self.types.sized(type_name, f.type, length, max_octets=most, unit=f.unit)
            else:
                self.types.field(type_name, f, reference_labels(self.d, f, where), where)
            arguments.append(Argument(f.name, type_name, f.description))
        return arguments
