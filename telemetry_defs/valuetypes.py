"""The value types of the dictionary: how each raw value is checked, coded and read from text."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from construct import Bytes as FixedBytes
from construct import (
    BytesInteger,
    Construct,
    Flag,
    Float32b,
    Float64b,
    GreedyBytes,
    GreedyString,
    Int8ub,
    Int16ub,
    PaddedString,
    PascalString,
    Prefixed,
)


class DictionaryValueError(ValueError):
    """A value that does not fit its definition; the message names the field."""


class ValueOutOfRange(DictionaryValueError):
    """A value outside its type or its range; the message names the field."""


class BadText(DictionaryValueError):
    """Text that does not read as a value of the type."""


@dataclass(frozen=True)
class ValueType:
    """A raw type on the wire."""

    name: str

    def construct(self) -> Construct:
        raise NotImplementedError

    def check(self, value: Any, where: str) -> Any:
        """The value, normalised; ValueOutOfRange when it does not fit."""
        raise NotImplementedError

    def from_text(self, text: str, where: str) -> Any:
        raise NotImplementedError

    def to_text(self, value: Any) -> str:
        return str(value)

    @property
    def bounds(self) -> tuple[float, float] | None:
        return None


@dataclass(frozen=True)
class IntType(ValueType):
    bits: int = 8
    signed: bool = False

    @property
    def bounds(self) -> tuple[int, int]:
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    def construct(self) -> Construct:
        return BytesInteger(self.bits // 8, signed=self.signed)

    def check(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValueOutOfRange(f"{where}: {value!r} is not an integer")
        low, high = self.bounds
        if not low <= value <= high:
            raise ValueOutOfRange(f"{where}: {value} is outside {self.name} ({low}..{high})")
        return value

    def from_text(self, text: str, where: str) -> int:
        try:
            return int(text, 0)
        except ValueError:
            raise BadText(f"{where}: {text!r} is not an integer") from None


@dataclass(frozen=True)
class FloatType(ValueType):
    bits: int = 64

    @property
    def bounds(self) -> tuple[float, float]:
        return (-math.inf, math.inf)

    def construct(self) -> Construct:
        return Float32b if self.bits == 32 else Float64b

    def check(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueOutOfRange(f"{where}: {value!r} is not a number")
        value = float(value)
        if self.bits == 32 and math.isfinite(value) and abs(value) > 3.4028234663852886e38:
            raise ValueOutOfRange(f"{where}: {value} does not fit a 32-bit float")
        return value

    def from_text(self, text: str, where: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise BadText(f"{where}: {text!r} is not a number") from None

    def to_text(self, value: Any) -> str:
        # A 32-bit float holds about 7 significant digits: more would show noise, not data.
        return f"{value:.7g}" if self.bits == 32 else repr(float(value))


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class BoolType(ValueType):
    def construct(self) -> Construct:
        return Flag

    def check(self, value: Any, where: str) -> bool:
        if isinstance(value, bool):
            return value
        if value in (0, 1):
            return bool(value)
        raise ValueOutOfRange(f"{where}: {value!r} is not true or false")

    def from_text(self, text: str, where: str) -> bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise BadText(f"{where}: {text!r} is not true or false")

    def to_text(self, value: Any) -> str:
        return "true" if value else "false"


@dataclass(frozen=True)
class EnumType(ValueType):
    """Named values of an integer base type; the raw value is the integer."""

    base: IntType = field(default_factory=lambda: IntType("u8"))
    values: Mapping[str, int] = field(default_factory=dict)
    description: str = ""

    def construct(self) -> Construct:
        return self.base.construct()

    def names(self) -> dict[int, str]:
        return {v: k for k, v in self.values.items()}

    def check(self, value: Any, where: str) -> int:
        if isinstance(value, str):
            return self.from_text(value, where)
        number = self.base.check(value, where)
        if number not in self.names():
            raise ValueOutOfRange(f"{where}: {number} is not a {self.name} ({self._choices()})")
        return number

    def from_text(self, text: str, where: str) -> int:
        for name, number in self.values.items():
            if name.lower() == text.strip().lower():
                return number
        try:
            return self.check(int(text, 0), where)
        except ValueError:
            raise BadText(f"{where}: {text!r} is not a {self.name} ({self._choices()})") from None

    def to_text(self, value: Any) -> str:
        return self.names().get(value, f"{value} (unknown {self.name})")

    def _choices(self) -> str:
        return ", ".join(self.values)


# How variable-length octets are delimited: a length prefix of one or two octets, or "the rest".
LENGTH_PREFIXES: dict[str, Construct] = {"u8": Int8ub, "u16": Int16ub}
GREEDY = "greedy"


@dataclass(frozen=True)
class BytesType(ValueType):
    """Octets: `length` is a prefix type ("u8", "u16"), "greedy" (the rest) or a fixed count."""

    length: str | int = GREEDY

    def construct(self) -> Construct:
        if isinstance(self.length, int):
            return FixedBytes(self.length)
        if self.length == GREEDY:
            return GreedyBytes
        return Prefixed(LENGTH_PREFIXES[self.length], GreedyBytes)

    def max_length(self) -> int | None:
        if isinstance(self.length, int):
            return self.length
        if self.length == GREEDY:
            return None
        return (1 << int(self.length[1:])) - 1

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, bytes | bytearray):
            raise ValueOutOfRange(f"{where}: expected octets, got {type(value).__name__}")
        self._check_length(len(value), where)
        return bytes(value)

    def _check_length(self, n: int, where: str) -> None:
        if isinstance(self.length, int) and n != self.length:
            raise ValueOutOfRange(f"{where}: {n} octets, expected exactly {self.length}")
        limit = self.max_length()
        if limit is not None and n > limit:
            raise ValueOutOfRange(f"{where}: {n} octets, at most {limit}")

    def from_text(self, text: str, where: str) -> Any:
        digits = text[2:] if text.lower().startswith("0x") else text
        try:
            return self.check(bytes.fromhex(digits), where)
        except ValueError:
            raise BadText(f"{where}: {text!r} is not hexadecimal octets") from None

    def to_text(self, value: Any) -> str:
        data = bytes(value)
        shown = data[:32].hex()
        return f"{shown}{'...' if len(data) > 32 else ''} ({len(data)} octets)"


@dataclass(frozen=True)
class StringType(BytesType):
    """UTF-8 text, delimited as BytesType."""

    def construct(self) -> Construct:
        if isinstance(self.length, int):
            return PaddedString(self.length, "utf8")
        if self.length == GREEDY:
            return GreedyString("utf8")
        return PascalString(LENGTH_PREFIXES[self.length], "utf8")

    def check(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise ValueOutOfRange(f"{where}: expected text, got {type(value).__name__}")
        self._check_length(len(value.encode()), where)
        return value

    def from_text(self, text: str, where: str) -> str:
        return self.check(text, where)

    def to_text(self, value: Any) -> str:
        return str(value)


def primitive_types() -> dict[str, ValueType]:
    """The built-in raw types by name."""
    types: dict[str, ValueType] = {}
    for bits in (8, 16, 32, 64):
        types[f"u{bits}"] = IntType(f"u{bits}", bits, False)
        types[f"i{bits}"] = IntType(f"i{bits}", bits, True)
    types["f32"] = FloatType("f32", 32)
    types["f64"] = FloatType("f64", 64)
    types["bool"] = BoolType("bool")
    return types
