"""A minimal XTCE interpreter for tests: decodes TM packets and encodes TCs with an XTCE document
alone, the way a ground system would, so that the export is checked against the real codecs."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

NS = {"x": "http://www.omg.org/spec/XTCE/20180204"}


def _local(e: ET.Element) -> str:
    return e.tag.split("}", 1)[1]


class Bits:
    """A big-endian bit reader."""

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.size = 8 * len(data)
        self.pos = 0

    def read(self, bits: int) -> int:
        if self.pos + bits > self.size:
            raise ValueError(f"read past the end: {bits} bits at {self.pos} of {self.size}")
        shift = self.size - self.pos - bits
        self.pos += bits
        return (self.value >> shift) & ((1 << bits) - 1)

    def octets(self, count: int) -> bytes:
        return self.read(8 * count).to_bytes(count, "big") if count else b""


@dataclass
class Entry:
    """A ParameterRefEntry (`parameter`) or a ContainerRefEntry (`container`), maybe repeated
    (`repeat`: the RepeatEntry's Count)."""

    parameter: str | None = None
    container: str | None = None
    repeat: ET.Element | None = None


@dataclass
class Container:
    name: str
    entries: list[Entry]
    base: str | None
    restrictions: list[tuple[str, int]]
    abstract: bool


@dataclass
class Xtce:
    root: ET.Element
    ptypes: dict[str, ET.Element] = field(default_factory=dict)
    atypes: dict[str, ET.Element] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    containers: dict[str, Container] = field(default_factory=dict)
    commands: dict[str, ET.Element] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Xtce:
        root = ET.fromstring(text)
        x = cls(root)
        for t in root.find("x:TelemetryMetaData/x:ParameterTypeSet", NS) or []:
            x.ptypes[t.get("name", "")] = t
        for t in root.find("x:CommandMetaData/x:ArgumentTypeSet", NS) or []:
            x.atypes[t.get("name", "")] = t
        for p in root.find("x:TelemetryMetaData/x:ParameterSet", NS) or []:
            x.parameters[p.get("name", "")] = p.get("parameterTypeRef", "")
        for c in root.find("x:TelemetryMetaData/x:ContainerSet", NS) or []:
            entries = [
                Entry(
                    e.get("parameterRef"),
                    e.get("containerRef"),
                    e.find("x:RepeatEntry/x:Count", NS),
                )
                for e in c.find("x:EntryList", NS) or []
            ]
            base = c.find("x:BaseContainer", NS)
            restrictions = []
            if base is not None:
                for comp in base.iterfind(".//x:Comparison", NS):
                    restrictions.append((comp.get("parameterRef", ""), int(comp.get("value", ""))))
            x.containers[c.get("name", "")] = Container(
                c.get("name", ""),
                entries,
                base.get("containerRef") if base is not None else None,
                restrictions,
                c.get("abstract") == "true",
            )
        for mc in root.find("x:CommandMetaData/x:MetaCommandSet", NS) or []:
            x.commands[mc.get("name", "")] = mc
        return x

    # -- telemetry -------------------------------------------------------------------------

    def decode(self, packet: bytes, root: str) -> tuple[str, dict[str, Any], int]:
        """(the most derived container, raw values by parameter, bits consumed). A parameter of a
        repeated container has the list of its values."""
        bits = Bits(packet)
        values: dict[str, Any] = {}
        repeated: dict[str, list[Any]] = {}
        current = self.containers[root]
        while True:
            self._read_entries(bits, current, values, repeated)
            children = [
                c
                for c in self.containers.values()
                if c.base == current.name and all(values.get(p) == v for p, v in c.restrictions)
            ]
            if not children:
                return current.name, {**values, **repeated}, bits.pos
            if len(children) > 1:
                raise ValueError(f"ambiguous: {[c.name for c in children]}")
            current = children[0]

    def _read_entries(
        self,
        bits: Bits,
        container: Container,
        values: dict[str, Any],
        repeated: dict[str, list[Any]],
    ) -> None:
        for entry in container.entries:
            if entry.parameter is not None:
                assert entry.repeat is None, "the export repeats containers only"
                t = self.ptypes[self.parameters[entry.parameter]]
                values[entry.parameter] = self._read(bits, t, values)
                continue
            nested = self.containers[entry.container or ""]
            if entry.repeat is None:
                self._read_entries(bits, nested, values, repeated)
                continue
            names = self._parameters_of(nested)
            for name in names:
                repeated.setdefault(name, [])
            # A reference to a parameter of the item (its length) is to its current value.
            for _ in range(self._size(entry.repeat, values)):
                self._read_entries(bits, nested, values, repeated)
                for name in names:
                    repeated[name].append(values[name])

    def _parameters_of(self, container: Container) -> list[str]:
        out: list[str] = []
        for entry in container.entries:
            if entry.parameter is not None:
                out.append(entry.parameter)
            else:
                out += self._parameters_of(self.containers[entry.container or ""])
        return out

    def _size(self, holder: ET.Element, values: dict[str, Any]) -> int:
        fixed = holder.find("x:FixedValue", NS)
        if fixed is not None:
            return int(fixed.text or "0")
        dynamic = holder.find("x:DynamicValue", NS)
        assert dynamic is not None, f"no size in {_local(holder)}"
        ref = dynamic.find("x:ParameterInstanceRef", NS)
        if ref is None:
            ref = dynamic.find("x:ArgumentInstanceRef", NS)
        assert ref is not None
        key = ref.get("parameterRef") or ref.get("argumentRef") or ""
        if ref.get("useCalibratedValue") != "false":
            raise ValueError(f"{key}: sizes are read from raw values")
        adjust = dynamic.find("x:LinearAdjustment", NS)
        if adjust is None:
            return int(values[key])
        if adjust.get("slope") is None:  # the schema gives it no default
            raise ValueError(f"LinearAdjustment on {key} without a slope")
        return int(
            float(adjust.get("slope", "")) * values[key] + float(adjust.get("intercept", "0"))
        )

    def _read(self, bits: Bits, t: ET.Element, values: dict[str, Any]) -> Any:
        kind = _local(t)
        if kind.startswith("Array"):
            item = self.ptypes[t.get("arrayTypeRef", "")]
            end = self._size(t.find(".//x:EndingIndex", NS), values)  # type: ignore[arg-type]
            return [self._read(bits, item, values) for _ in range(end + 1)]
        enc = t.find("x:IntegerDataEncoding", NS)
        if enc is not None:
            size = int(enc.get("sizeInBits", "8"))
            raw = bits.read(size)
            if enc.get("encoding") == "twosComplement" and raw >> (size - 1):
                raw -= 1 << size
            return bool(raw) if kind.startswith("Boolean") else raw
        enc = t.find("x:FloatDataEncoding", NS)
        if enc is not None:
            size = int(enc.get("sizeInBits", "32"))
            raw = bits.read(size).to_bytes(size // 8, "big")
            return struct.unpack(">f" if size == 32 else ">d", raw)[0]
        enc = t.find("x:BinaryDataEncoding", NS)
        if enc is not None:
            size = enc.find("x:SizeInBits", NS)
            assert size is not None
            return bits.octets(self._size(size, values) // 8)
        enc = t.find("x:StringDataEncoding", NS)
        if enc is not None:
            variable = enc.find("x:Variable", NS)
            if variable is not None:
                assert variable.find("x:LeadingSize", NS) is None, "a size tag of unsaid unit"
                count = self._size(variable, values)
            else:
                count = int(enc.findtext(".//x:FixedValue", "0", NS))
            return bits.octets(count // 8).decode("utf-8")
        raise ValueError(f"cannot read {kind} {t.get('name')}")

    # -- commands --------------------------------------------------------------------------

    def encode_command(self, name: str, arguments: dict[str, Any]) -> bytes:
        """A TC packet (sequence count, length and PEC left zero) from the meta-command."""
        mc = self.commands[name]
        values: dict[str, Any] = {}
        base_ref = mc.find("x:BaseMetaCommand", NS)
        chain = [mc]
        if base_ref is not None:
            for a in base_ref.iterfind(".//x:ArgumentAssignment", NS):
                values[a.get("argumentName", "")] = int(a.get("argumentValue", ""))
            chain.insert(0, self.commands[base_ref.get("metaCommandRef", "")])
        types: dict[str, str] = {}
        for c in chain:
            for arg in c.iterfind("x:ArgumentList/x:Argument", NS):
                types[arg.get("name", "")] = arg.get("argumentTypeRef", "")
                if arg.get("initialValue") is not None:
                    values.setdefault(arg.get("name", ""), int(arg.get("initialValue", "")))
        values.update(arguments)
        out = 0
        nbits = 0
        for c in chain:
            for entry in c.find("x:CommandContainer/x:EntryList", NS) or []:
                if _local(entry) == "FixedValueEntry":
                    size = int(entry.get("sizeInBits", "0"))
                    value, size = int(entry.get("binaryValue", "0"), 16), size
                    out, nbits = (out << size) | value, nbits + size
                    continue
                arg = entry.get("argumentRef", "")
                for value, size in self._write(self.atypes[types[arg]], values[arg], values):
                    out, nbits = (out << size) | value, nbits + size
        assert nbits % 8 == 0, f"{name}: {nbits} bits"
        return out.to_bytes(nbits // 8, "big")

    def _write(self, t: ET.Element, value: Any, values: dict[str, Any]) -> list[tuple[int, int]]:
        kind = _local(t)
        if kind.startswith("Array"):
            item = self.atypes[t.get("arrayTypeRef", "")]
            end = self._size(t.find(".//x:EndingIndex", NS), values)  # type: ignore[arg-type]
            assert end + 1 == len(value)
            return [w for v in value for w in self._write(item, v, values)]
        enc = t.find("x:IntegerDataEncoding", NS)
        if enc is not None:
            size = int(enc.get("sizeInBits", "8"))
            return [(int(value) & ((1 << size) - 1), size)]
        enc = t.find("x:FloatDataEncoding", NS)
        if enc is not None:
            size = int(enc.get("sizeInBits", "32"))
            raw = struct.pack(">f" if size == 32 else ">d", value)
            return [(int.from_bytes(raw, "big"), size)]
        enc = t.find("x:BinaryDataEncoding", NS)
        if enc is not None:
            size_holder = enc.find("x:SizeInBits", NS)
            assert size_holder is not None
            size = self._size(size_holder, values)
            assert size == 8 * len(value), (size, len(value))
            return [(int.from_bytes(value, "big"), size)] if value else []
        enc = t.find("x:StringDataEncoding", NS)
        if enc is not None:
            octets = value.encode("utf-8")
            variable = enc.find("x:Variable", NS)
            assert variable is not None, "fixed-size strings are not used"
            assert variable.find("x:LeadingSize", NS) is None, "a size tag of unsaid unit"
            assert self._size(variable, values) == 8 * len(octets)
            return [(int.from_bytes(octets, "big"), 8 * len(octets))] if octets else []
        raise ValueError(f"cannot write {kind} {t.get('name')}")
