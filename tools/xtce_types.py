"""XTCE 1.2 elements and data types: how one dictionary value type is written, for telemetry
(`Parameter` types) and commands (`Argument` types) alike."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping

from telemetry_defs.model import Dictionary, Field, Limits
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
XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"

# The label of the number a reference field holds when it refers to nothing (JOB_REPORT's
# failure_code 0 while a job has not failed).
NONE_LABEL = "NONE"

ET.register_namespace("", XTCE_NAMESPACE)
ET.register_namespace("xsi", XSI_NAMESPACE)


class ExportError(Exception):
    """A definition that the XTCE export cannot express; the message names it."""


def x(tag: str) -> str:
    """The qualified name of an XTCE element."""
    return f"{{{XTCE_NAMESPACE}}}{tag}"


def sub(parent: ET.Element, tag: str, **attrs: object) -> ET.Element:
    """A child XTCE element; attributes given as None are left out."""
    return ET.SubElement(parent, x(tag), {k: _attr(v) for k, v in attrs.items() if v is not None})


def _attr(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def is_greedy(vt: ValueType) -> bool:
    return isinstance(vt, BytesType) and vt.length == GREEDY


def is_prefixed(vt: ValueType) -> bool:
    """Octets or text preceded by their length in octets (u8 or u16)."""
    return isinstance(vt, BytesType) and isinstance(vt.length, str) and vt.length != GREEDY


def prefix_type(vt: ValueType) -> IntType:
    """The integer type of a length prefix."""
    assert isinstance(vt, BytesType) and isinstance(vt.length, str)
    return IntType(vt.length, int(vt.length[1:]))


def fixed_octets(vt: ValueType) -> int | None:
    """Octets a value of `vt` always takes; None when its size varies."""
    if isinstance(vt, EnumType):
        return vt.base.bits // 8
    if isinstance(vt, IntType | FloatType):
        return vt.bits // 8
    if isinstance(vt, BoolType):
        return 1
    if isinstance(vt, BytesType) and isinstance(vt.length, int):
        return vt.length
    return None


def engineering_bits(raw_bits: int) -> int:
    return next(b for b in (8, 16, 32, 64) if b >= raw_bits)


def _int_coding(vt: IntType) -> str:
    return "twosComplement" if vt.signed else "unsigned"


class TypeWriter:
    """Writes data types into one type set: `kind` is "Parameter" (telemetry) or "Argument"."""

    def __init__(self, types: ET.Element, kind: str) -> None:
        self.types = types
        self.kind = kind
        # Instance references in DynamicValue: ParameterInstanceRef or ArgumentInstanceRef.
        self._ref_tag, self._ref_attr = (
            ("ParameterInstanceRef", "parameterRef")
            if kind == "Parameter"
            else ("ArgumentInstanceRef", "argumentRef")
        )

    def unsigned(self, name: str, bits: int) -> None:
        """An unsigned integer of `bits` bits (header fields, counts, lengths)."""
        t = sub(self.types, f"Integer{self.kind}Type", name=name, signed=False)
        t.set("sizeInBits", str(engineering_bits(bits)))
        sub(t, "UnitSet")
        sub(t, "IntegerDataEncoding", sizeInBits=bits, encoding="unsigned")

    def enumerated(self, name: str, bits: int, labels: Mapping[str, int], unit: str = "") -> None:
        t = sub(self.types, f"Enumerated{self.kind}Type", name=name)
        self.units(t, unit)
        sub(t, "IntegerDataEncoding", sizeInBits=bits, encoding="unsigned")
        self.enumeration(t, labels)

    def enumeration(self, t: ET.Element, labels: Mapping[str, int]) -> None:
        values = sub(t, "EnumerationList")
        for label, number in sorted(labels.items(), key=lambda kv: kv[1]):
            sub(values, "Enumeration", value=number, label=label)

    def units(self, t: ET.Element, unit: str) -> None:
        units = sub(t, "UnitSet")
        if unit:
            sub(units, "Unit").text = unit

    def field(self, name: str, f: Field, labels: Mapping[str, int] | None, where: str) -> None:
        """The type of one fixed-size field (or array item); `labels` for a field that refers to
        named things (failure codes, parameters, structures) by number."""
        if labels is not None and isinstance(f.type, IntType):
            self.enumerated(name, f.type.bits, labels, f.unit)
            return
        if fixed_octets(f.type) is None:
            raise ExportError(f"{where}: {f.type.name} of varying size cannot be written here")
        self.value(name, f.type, f.unit, valid=f.range)

    def value(
        self,
        name: str,
        vt: ValueType,
        unit: str = "",
        *,
        calibration: tuple[float, ...] | None = None,
        limits: Limits | None = None,
        valid: tuple[float, float] | None = None,
    ) -> None:
        """One data type for a fixed-size raw type."""
        kind = self.kind
        if isinstance(vt, EnumType):
            t = sub(self.types, f"Enumerated{kind}Type", name=name, shortDescription=vt.description)
            self.units(t, unit)
            sub(t, "IntegerDataEncoding", sizeInBits=vt.base.bits, encoding=_int_coding(vt.base))
            self.enumeration(t, vt.values)
        elif isinstance(vt, BoolType):
            t = sub(self.types, f"Boolean{kind}Type", name=name)
            t.set("zeroStringValue", "false")
            t.set("oneStringValue", "true")
            self.units(t, unit)
            sub(t, "IntegerDataEncoding", sizeInBits=8, encoding="unsigned")
        elif isinstance(vt, IntType) and calibration is None:
            t = sub(
                self.types, f"Integer{kind}Type", name=name, signed=vt.signed, sizeInBits=vt.bits
            )
            self.units(t, unit)
            sub(t, "IntegerDataEncoding", sizeInBits=vt.bits, encoding=_int_coding(vt))
            self._valid(t, valid)
            self._alarm(t, limits)
        elif isinstance(vt, IntType | FloatType):
            t = sub(self.types, f"Float{kind}Type", name=name, sizeInBits=64)
            self.units(t, unit)
            if isinstance(vt, FloatType):
                enc = sub(t, "FloatDataEncoding", sizeInBits=vt.bits, encoding="IEEE754_1985")
            else:
                enc = sub(t, "IntegerDataEncoding", sizeInBits=vt.bits, encoding=_int_coding(vt))
            if calibration is not None:
                poly = sub(sub(enc, "DefaultCalibrator"), "PolynomialCalibrator")
                for exponent, coefficient in enumerate(calibration):
                    sub(poly, "Term", coefficient=coefficient, exponent=exponent)
            self._valid(t, valid)
            self._alarm(t, limits)
        elif isinstance(vt, BytesType) and isinstance(vt.length, int):
            t = sub(self.types, f"{_octets_kind(vt)}{kind}Type", name=name)
            self.units(t, unit)
            bits = str(8 * vt.length)
            if isinstance(vt, StringType):  # SizeInBitsType: a fixed buffer
                size = sub(sub(t, "StringDataEncoding", encoding="UTF-8"), "SizeInBits")
                sub(sub(size, "Fixed"), "FixedValue").text = bits
            else:  # IntegerValueType
                sub(sub(sub(t, "BinaryDataEncoding"), "SizeInBits"), "FixedValue").text = bits
        else:
            raise ExportError(f"{name}: no XTCE type for {vt.name}")

    def sized(
        self,
        name: str,
        vt: BytesType,
        size_ref: str,
        *,
        intercept: int = 0,
        max_octets: int,
        unit: str = "",
    ) -> None:
        """Octets or text whose size in bits is 8 x `size_ref` + `intercept`: `size_ref` is the
        parameter or argument that holds their length in octets (or the packet length)."""
        t = sub(self.types, f"{_octets_kind(vt)}{self.kind}Type", name=name)
        self.units(t, unit)
        if isinstance(vt, StringType):
            enc = sub(t, "StringDataEncoding", encoding="UTF-8")
            holder = sub(enc, "Variable", maxSizeInBits=8 * max(max_octets, 1))
        else:
            holder = sub(sub(t, "BinaryDataEncoding"), "SizeInBits")
        self.dynamic(holder, size_ref, slope=8, intercept=intercept)

    def dynamic(self, parent: ET.Element, ref: str, *, slope: int, intercept: int) -> None:
        """A DynamicValue: slope x (the raw value of `ref`) + intercept. A LinearAdjustment has
        both written out: the schema gives the slope no default (readers differ: 0 or 1)."""
        dynamic = sub(parent, "DynamicValue")
        sub(dynamic, self._ref_tag, **{self._ref_attr: ref, "useCalibratedValue": False})
        if (slope, intercept) != (1, 0):
            sub(dynamic, "LinearAdjustment", slope=slope, intercept=intercept)

    def array(self, name: str, item_type: str, count: str) -> None:
        """An array of `item_type` whose item count is the value of `count`."""
        array = sub(self.types, f"Array{self.kind}Type", name=name, arrayTypeRef=item_type)
        dims = sub(sub(array, "DimensionList"), "Dimension")
        sub(sub(dims, "StartingIndex"), "FixedValue").text = "0"
        self.dynamic(sub(dims, "EndingIndex"), count, slope=1, intercept=-1)

    def _valid(self, t: ET.Element, valid: tuple[float, float] | None) -> None:
        if valid is None:
            return
        if self.kind == "Argument":
            rs = sub(t, "ValidRangeSet")
            sub(rs, "ValidRange", minInclusive=valid[0], maxInclusive=valid[1])
        else:
            sub(t, "ValidRange", minInclusive=valid[0], maxInclusive=valid[1])

    def _alarm(self, t: ET.Element, limits: Limits | None) -> None:
        if limits is None:
            return
        ranges = sub(sub(t, "DefaultAlarm"), "StaticAlarmRanges")
        # XTCE's ranges are the values inside which the level is not reached.
        for tag, low, high in (
            ("WarningRange", limits.yellow_low, limits.yellow_high),
            ("CriticalRange", limits.red_low, limits.red_high),
        ):
            if low is not None or high is not None:
                sub(ranges, tag, minInclusive=low, maxInclusive=high)


def _octets_kind(vt: BytesType) -> str:
    return "String" if isinstance(vt, StringType) else "Binary"


def reference_labels(d: Dictionary, f: Field, where: str) -> dict[str, int] | None:
    """The labels of a field that refers to named things by number (failure codes, parameters,
    structures), the number that means "none" included; None for other fields."""
    if f.refers == "failure":
        labels = {x.name: x.code for x in d.failures.values()}
    elif f.refers == "parameter":
        labels = {p.name: p.id for p in d.parameters.values()}
    elif f.refers == "housekeeping":
        labels = {h.name: h.sid for h in d.housekeeping.values()}
    else:
        return None
    if f.none is not None:
        if NONE_LABEL in labels or f.none in labels.values():
            raise ExportError(f"{where}: {f.none} (none) is also a {f.refers}")
        labels[NONE_LABEL] = f.none
    return labels
