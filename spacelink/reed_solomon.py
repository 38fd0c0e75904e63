"""Reed-Solomon TM channel coding (CCSDS 131.0-B section 4, ICD section 6a).

RS(255,223), E = 16, over GF(2^8) with field generator F(x) = x^8 + x^7 + x^2 + x + 1 and code
generator roots alpha^(11j), j = 112 ... 143; symbols on the line in Berlekamp's dual basis. The
1115 octets of a TM frame are five interleaved codewords (octet k in codeword k mod 5), followed
on the line by the 5 x 32 check symbols, interleaved the same way: a codeblock of 1275 octets.

The code is GF(2)-linear from line bits to line bits, dual-basis conversion included, so the
check symbols are the XOR of one table row per (position, octet value), and so are the
syndromes: numpy gathers and XOR-reduces all five codewords at once, ~25 us to encode or check
a codeblock where a symbol-by-symbol loop in Python takes milliseconds (at 921600 baud a
codeblock goes by every 14 ms). Only codewords with a non-zero syndrome go through
Berlekamp-Massey, Chien search and Forney, in Python on log/antilog tables. The tables (4 MB)
are built on first use, in ~10 ms.

A decoder failure is reported, never a guess: the locator's degree must equal its LFSR length
and the number of its roots, and the errors found must reproduce all 32 syndromes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from spacelink.icd import (
    TM_RS_CHECK_SYMBOLS,
    TM_RS_CODEBLOCK_LENGTH,
    TM_RS_CODEWORD_LENGTH,
    TM_RS_CORRECTABLE,
    TM_RS_DATA_SYMBOLS,
    TM_RS_FRAME_LENGTH,
    TM_RS_INTERLEAVING,
)

CODEBLOCK_LENGTH = TM_RS_CODEBLOCK_LENGTH
INTERLEAVING = TM_RS_INTERLEAVING
PARITY = TM_RS_CHECK_SYMBOLS
CORRECTABLE = TM_RS_CORRECTABLE
FRAME_LENGTH = TM_RS_FRAME_LENGTH

FIELD_GENERATOR = 0x187  # F(x) = x^8 + x^7 + x^2 + x + 1
FIRST_ROOT = 112  # roots gamma^j, j = 112 ... 143, of the code generator, with gamma = alpha^11
ROOT_STEP = 11
DUAL_BASIS_BETA = 117  # dual basis {l_i} of {beta^j}, beta = alpha^117: Tr(l_i beta^j) = [i = j]

_N = TM_RS_CODEWORD_LENGTH
_K = TM_RS_DATA_SYMBOLS
_ORDER = 255  # multiplicative order of the field

_U8 = npt.NDArray[np.uint8]
_U64 = npt.NDArray[np.uint64]


def _field_tables() -> tuple[list[int], list[int]]:
    exp = [0] * (2 * _ORDER)
    log = [0] * 256
    value = 1
    for power in range(_ORDER):
        exp[power] = exp[power + _ORDER] = value
        log[value] = power
        value <<= 1
        if value & 0x100:
            value ^= FIELD_GENERATOR
    return exp, log


_EXP, _LOG = _field_tables()  # conventional representation: bit i is the coefficient of alpha^i


def _mul(a: int, b: int) -> int:
    return _EXP[_LOG[a] + _LOG[b]] if a and b else 0


def _trace(x: int) -> int:
    total, power = 0, x
    for _ in range(8):
        total ^= power
        power = _mul(power, power)
    return total  # 0 or 1


def _dual_basis_tables() -> tuple[bytes, bytes]:
    # z_i = Tr(x beta^i) are the dual-basis coordinates of x; z_0 is sent first (the MSB). Tr is
    # linear, so one row per conventional bit alpha^k builds the whole table.
    rows = [0] * 8
    for k in range(8):
        for i in range(8):
            rows[k] |= _trace(_EXP[(k + DUAL_BASIS_BETA * i) % _ORDER]) << (7 - i)
    to_dual = bytearray(256)
    for value in range(256):
        for k in range(8):
            if value >> k & 1:
                to_dual[value] ^= rows[k]
    from_dual = bytearray(256)
    for value, dual in enumerate(to_dual):
        from_dual[dual] = value
    return bytes(to_dual), bytes(from_dual)


TO_DUAL_BASIS, FROM_DUAL_BASIS = _dual_basis_tables()
"""Symbol conversions, conventional (alpha^7 ... alpha^0) to dual basis (l_0 ... l_7) and back."""


def _generator_polynomial() -> list[int]:
    """g(x) = prod (x - gamma^j), j = 112 ... 143; coefficients from x^32 down to x^0."""
    poly = [1]
    for j in range(FIRST_ROOT, FIRST_ROOT + PARITY):
        root = _EXP[ROOT_STEP * j % _ORDER]
        poly = [a ^ _mul(b, root) for a, b in zip([*poly, 0], [0, *poly], strict=True)]
    return poly


def _linear_table(basis: _U8) -> _U64:
    """(positions, 8, 32) responses to each bit of a symbol -> (positions, 256, 4) by XOR."""
    table = np.zeros((basis.shape[0], 256, PARITY), dtype=np.uint8)
    for bit in range(8):
        table[:, 1 << bit : 2 << bit] = table[:, : 1 << bit] ^ basis[:, bit, None, :]
    return table.view(np.uint64)


def _gf_mul_arrays(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> _U8:
    exp, log = np.array(_EXP), np.array(_LOG)
    product = exp[log[a] + log[b]]
    return np.where((a != 0) & (b != 0), product, 0).astype(np.uint8)


def _dual_bit_values() -> npt.NDArray[np.int64]:
    """The conventional value of each single-bit dual-basis symbol 1 << b."""
    return np.array([FROM_DUAL_BASIS[1 << bit] for bit in range(8)])


@functools.cache
def _encoder_table() -> _U64:
    """Check symbols (dual basis) of a data symbol alone at each of the 223 positions."""
    generator_low = _generator_polynomial()[1:]  # x^32 = sum g_i x^i modulo g(x)
    remainders = np.zeros((_K, PARITY), dtype=np.int64)  # x^(254-p) mod g(x), x^31 first
    remainder = list(generator_low)
    for degree in range(PARITY, _N):
        remainders[_N - 1 - degree] = remainder
        top, rest = remainder[0], remainder[1:]
        remainder = [a ^ _mul(top, g) for a, g in zip([*rest, 0], generator_low, strict=True)]
    conventional = _gf_mul_arrays(_dual_bit_values()[None, :, None], remainders[:, None, :])
    return _linear_table(np.frombuffer(TO_DUAL_BASIS, dtype=np.uint8)[conventional])


@functools.cache
def _syndrome_table() -> _U64:
    """Syndromes S_0 ... S_31 (conventional) of a symbol alone at each of the 255 positions."""
    degrees = np.arange(_N - 1, -1, -1)  # position p holds the coefficient of x^(254-p)
    roots = ROOT_STEP * np.arange(FIRST_ROOT, FIRST_ROOT + PARITY)
    powers = np.array(_EXP)[(degrees[:, None] * roots[None, :]) % _ORDER]
    return _linear_table(_gf_mul_arrays(_dual_bit_values()[None, :, None], powers[:, None, :]))


_DATA_POSITIONS = np.arange(_K)[:, None]
_ALL_POSITIONS = np.arange(_N)[:, None]
# Chien search: the exponent of alpha in gamma^(-d*i), for locator coefficient i and degree d.
_CHIEN_EXPONENTS = (-ROOT_STEP * np.outer(np.arange(CORRECTABLE + 1), np.arange(_N))) % _ORDER
_EXP_ARRAY = np.array(_EXP, dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class DecodedBlock:
    """A decoded codeblock: the frame (None if a codeword was uncorrectable) and the counts."""

    frame: bytes | None
    corrected_symbols: int
    uncorrectable_codewords: int


def encode_codeblock(frame: bytes) -> bytes:
    """The codeblock of a 1115-octet frame: the frame, then its 160 interleaved check symbols."""
    if len(frame) != FRAME_LENGTH:
        raise ValueError(f"an RS codeblock carries {FRAME_LENGTH} octets, not {len(frame)}")
    symbols = np.frombuffer(frame, dtype=np.uint8).reshape(_K, INTERLEAVING)
    check = np.bitwise_xor.reduce(_encoder_table()[_DATA_POSITIONS, symbols], axis=0)
    # check[j] holds the 32 check symbols of codeword j; on the line they interleave like data.
    return bytes(frame) + check.view(np.uint8).reshape(INTERLEAVING, PARITY).T.tobytes()


def decode_codeblock(
    block: bytes | bytearray | memoryview, *, max_corrections: int = CORRECTABLE
) -> DecodedBlock:
    """Correct up to `max_corrections` (E = 16) symbol errors per codeword; frame None past that.

    `corrected_symbols` counts those of the codewords that decoded, check symbols included.
    """
    if len(block) != CODEBLOCK_LENGTH:
        raise ValueError(f"an RS codeblock is {CODEBLOCK_LENGTH} octets, not {len(block)}")
    if not 0 <= max_corrections <= CORRECTABLE:
        raise ValueError(f"a codeword corrects 0 to {CORRECTABLE} symbols, not {max_corrections}")
    symbols = np.frombuffer(block, dtype=np.uint8).reshape(_N, INTERLEAVING)
    syndromes = np.bitwise_xor.reduce(_syndrome_table()[_ALL_POSITIONS, symbols], axis=0)
    dirty = np.flatnonzero(syndromes.any(axis=1))
    if not dirty.size:
        return DecodedBlock(bytes(block[:FRAME_LENGTH]), 0, 0)
    frame = bytearray(block[:FRAME_LENGTH])
    syndrome_octets = syndromes.view(np.uint8).reshape(INTERLEAVING, PARITY)
    corrected = failed = 0
    for codeword in dirty.tolist():
        errors = _locate_and_evaluate(syndrome_octets[codeword].tolist(), max_corrections)
        if errors is None:
            failed += 1
            continue
        corrected += len(errors)
        for position, magnitude in errors:
            if position < _K:  # errors in check symbols are counted, not copied out
                frame[position * INTERLEAVING + codeword] ^= TO_DUAL_BASIS[magnitude]
    return DecodedBlock(None if failed else bytes(frame), corrected, failed)


def _locate_and_evaluate(syndromes: list[int], limit: int) -> list[tuple[int, int]] | None:
    """(position, conventional error value) of each error, or None if the decoder fails."""
    locator, length = _berlekamp_massey(syndromes)
    if length > limit or len(locator) - 1 != length:
        return None  # more errors than allowed, or a locator shorter than its LFSR: failure
    # No virtual fill: all 255 non-zero field elements are positions of the codeword, so a root
    # can fall nowhere else, and counting the distinct roots is the whole check.
    degrees = _chien_search(locator)
    if len(degrees) != length:
        return None  # the locator does not split into distinct roots: more errors than E
    evaluator = _evaluator(syndromes, locator)
    errors: list[tuple[int, int]] = []
    for degree in degrees:
        inverse = (-ROOT_STEP * degree) % _ORDER  # log of X^-1, X = gamma^degree
        derivative = 0  # Lambda'(X^-1): the odd terms only, in characteristic 2
        for i in range(1, len(locator), 2):
            if locator[i]:
                derivative ^= _EXP[(_LOG[locator[i]] + inverse * (i - 1)) % _ORDER]
        numerator = 0  # Omega(X^-1)
        for i, coefficient in enumerate(evaluator):
            if coefficient:
                numerator ^= _EXP[(_LOG[coefficient] + inverse * i) % _ORDER]
        if not derivative or not numerator:
            return None
        # Forney: e = X^(1-b) Omega(X^-1) / Lambda'(X^-1), b = 112 (first root gamma^b).
        scale = ROOT_STEP * degree * (1 - FIRST_ROOT)
        value = _EXP[(scale + _LOG[numerator] - _LOG[derivative]) % _ORDER]
        errors.append((_N - 1 - degree, value))
    if not _explains(syndromes, errors):
        return None
    return errors


def _berlekamp_massey(syndromes: list[int]) -> tuple[list[int], int]:
    """The error locator Lambda(x) (from x^0 up, trimmed to its degree) and its LFSR length."""
    locator, previous = [1], [1]
    length, shift, previous_discrepancy = 0, 1, 1
    for n, syndrome in enumerate(syndromes):
        discrepancy = syndrome
        for i in range(1, min(length, n) + 1):
            discrepancy ^= _mul(locator[i], syndromes[n - i])
        if not discrepancy:
            shift += 1
            continue
        factor = _LOG[discrepancy] - _LOG[previous_discrepancy] + _ORDER
        update = [0] * shift + [_EXP[(_LOG[c] + factor) % _ORDER] if c else 0 for c in previous]
        grown = locator + [0] * (len(update) - len(locator))
        new = [a ^ b for a, b in zip(grown, update + [0] * (len(grown) - len(update)), strict=True)]
        if 2 * length <= n:
            previous, previous_discrepancy = locator, discrepancy
            length, shift = n + 1 - length, 1
        else:
            shift += 1
        locator = new
    while len(locator) > 1 and not locator[-1]:
        locator.pop()
    return locator, length


def _chien_search(locator: list[int]) -> list[int]:
    """Degrees d (0 ... 254) with Lambda(gamma^-d) = 0, i.e. the error locations X = gamma^d."""
    logs = np.array([_LOG[c] if c else -1 for c in locator])
    rows = _CHIEN_EXPONENTS[: len(locator)]
    terms = _EXP_ARRAY[(rows + logs[:, None]) % _ORDER]
    terms[logs < 0] = 0
    return np.flatnonzero(np.bitwise_xor.reduce(terms, axis=0) == 0).tolist()


def _evaluator(syndromes: list[int], locator: list[int]) -> list[int]:
    """The error evaluator Omega(x) = S(x) Lambda(x) mod x^32."""
    omega = [0] * PARITY
    for i, s in enumerate(syndromes):
        if s:
            for j, c in enumerate(locator[: PARITY - i]):
                if c:
                    omega[i + j] ^= _EXP[_LOG[s] + _LOG[c]]
    return omega


def _explains(syndromes: list[int], errors: list[tuple[int, int]]) -> bool:
    """Whether the errors found give exactly the syndromes received: S_j = sum e X^(112+j)."""
    for j, syndrome in enumerate(syndromes):
        total = 0
        for position, value in errors:
            degree = _N - 1 - position
            total ^= _EXP[(_LOG[value] + ROOT_STEP * degree * (FIRST_ROOT + j)) % _ORDER]
        if total != syndrome:
            return False
    return True
