"""CLTU coding (CCSDS 231.0-B, ICD section 2): BCH(63,56) codeblocks, start and tail sequences.

The BCH code is linear, so the 7 parity bits of a codeblock are the XOR of one table entry per
information octet. Encoding runs over all codeblocks of a frame at once with numpy; decoding
with bytes.translate, one C call per octet position of every codeblock (a bit-serial loop in
Python manages ~1.5 MB/s, the tables several tens of MB/s).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from spacelink.icd import TC_MAX_FRAME_LENGTH

START_SEQUENCE = b"\xeb\x90"
TAIL_SEQUENCE = b"\xc5\xc5\xc5\xc5\xc5\xc5\xc5\x79"
FILL_OCTET = 0x55
INFO_OCTETS = 7
CODEBLOCK_OCTETS = 8
# g(x) = x^7 + x^6 + x^2 + 1, without its x^7 term
_GENERATOR_LOW = 0b1000101
# Longest CLTU the decoder follows: a maximum frame plus one codeblock of slack for fill.
MAX_CODEBLOCKS = -(-TC_MAX_FRAME_LENGTH // INFO_OCTETS) + 1


def bch_parity_bitwise(info: bytes) -> int:
    """The 7 BCH parity bits of 7 information octets, by polynomial division bit by bit.

    The reference the tables are built from (and checked against in the tests).
    """
    register = 0
    for octet in info:
        for bit in range(7, -1, -1):
            feedback = ((register >> 6) & 1) ^ ((octet >> bit) & 1)
            register = (register << 1) & 0x7F
            if feedback:
                register ^= _GENERATOR_LOW
    return register


def _build_tables() -> npt.NDArray[np.uint8]:
    # tables[k][v]: parity contribution of octet value v at position k of the codeblock.
    tables = np.zeros((INFO_OCTETS, 256), dtype=np.uint8)
    for k in range(INFO_OCTETS):
        for v in range(256):
            info = bytearray(INFO_OCTETS)
            info[k] = v
            tables[k, v] = bch_parity_bitwise(bytes(info))
    return tables


_TABLES = _build_tables()
_OFFSETS = (np.arange(INFO_OCTETS, dtype=np.intp) * 256)[None, :]
_FLAT_TABLES = _TABLES.reshape(-1)


def _build_syndrome_table() -> npt.NDArray[np.int16]:
    # Syndrome -> position of the single flipped bit: 0..55 information bits (MSB first),
    # 56..62 parity bits; -1 when no single error explains the syndrome (uncorrectable).
    table = np.full(128, -1, dtype=np.int16)
    table[0] = 0
    for pos in range(56):
        info = bytearray(INFO_OCTETS)
        info[pos // 8] = 0x80 >> (pos % 8)
        table[bch_parity_bitwise(bytes(info))] = pos
    for j in range(7):
        table[0x40 >> j] = 56 + j
    return table


_SYNDROME_TO_POSITION = _build_syndrome_table()

# The decoder's tables as bytes.translate tables: one C call handles a position of every
# codeblock of a CLTU, with none of numpy's per-call overhead (most CLTUs are a few dozen
# codeblocks, and the payload decodes each on a cold wake-up, where that overhead dominated).
_UNCORRECTABLE = b"\xff"
_CONTRIBUTIONS = [bytes(_TABLES[k].tolist()) for k in range(INFO_OCTETS)]
_RECEIVED_PARITY = bytes(((~v) >> 1) & 0x7F for v in range(256))
_SYNDROME_TO_POSITION_OCTET = bytes(
    _UNCORRECTABLE[0] if p < 0 else p for p in _SYNDROME_TO_POSITION.tolist()
).ljust(256, _UNCORRECTABLE)


def codeblock_syndromes(blocks: bytes) -> bytes:
    """The BCH syndrome of each 8-octet codeblock in `blocks` (0: a valid codeblock)."""
    count = len(blocks) // CODEBLOCK_OCTETS
    accumulated = int.from_bytes(blocks[INFO_OCTETS::CODEBLOCK_OCTETS].translate(_RECEIVED_PARITY))
    for k, table in enumerate(_CONTRIBUTIONS):
        accumulated ^= int.from_bytes(blocks[k::CODEBLOCK_OCTETS].translate(table))
    return accumulated.to_bytes(count)


def _parities(info: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Parity bits of every row of an (n, 7) array of information octets."""
    contributions = _FLAT_TABLES[info.astype(np.intp) + _OFFSETS]
    return np.bitwise_xor.reduce(contributions, axis=1)


def bch_parity_octet(info: bytes) -> int:
    """The eighth octet of a codeblock: the parity bits complemented, then a 0 filler bit."""
    parity = 0
    for k, v in enumerate(info):
        parity ^= int(_TABLES[k, v])
    return ((~parity) & 0x7F) << 1


def encode_codeblocks(data: bytes) -> bytes:
    """BCH-encode `data` (padded with fill octets to a multiple of 7) into 8-octet codeblocks."""
    if not data:
        raise ValueError("a CLTU carries at least one octet")
    pad = -len(data) % INFO_OCTETS
    info = np.frombuffer(data + bytes([FILL_OCTET]) * pad, dtype=np.uint8).reshape(-1, INFO_OCTETS)
    blocks = np.empty((info.shape[0], CODEBLOCK_OCTETS), dtype=np.uint8)
    blocks[:, :INFO_OCTETS] = info
    blocks[:, INFO_OCTETS] = (_parities(info) ^ 0x7F) << 1
    return blocks.tobytes()


def encode_cltu(frame: bytes) -> bytes:
    """One TC frame as a CLTU: start sequence, codeblocks, tail sequence (ICD 2)."""
    return START_SEQUENCE + encode_codeblocks(frame) + TAIL_SEQUENCE


class CltuEnd(enum.Enum):
    """How the decoder left a CLTU."""

    TAIL = "tail"  # the tail sequence (or a codeblock within 3 bits of it)
    UNCORRECTABLE = "uncorrectable"  # a codeblock with more than one bit error
    TOO_LONG = "too_long"  # more codeblocks than the longest frame needs


@dataclass(frozen=True, slots=True)
class DecodedCltu:
    """The information octets of one CLTU (frame plus fill) and how its decoding ended."""

    data: bytes
    end: CltuEnd
    corrected_bits: int


@dataclass(slots=True)
class CltuStats:
    """Running counts of the decoder (ICD 2: every discarded codeblock is counted)."""

    cltus: int = 0
    codeblocks: int = 0
    corrected_codeblocks: int = 0
    uncorrectable_codeblocks: int = 0
    cltus_too_long: int = 0
    octets_outside_cltu: int = 0


def _distance(a: bytes | bytearray | memoryview, b: bytes) -> int:
    return sum((x ^ y).bit_count() for x, y in zip(a, b, strict=True))


@dataclass(slots=True)
class CltuDecoder:
    """Streaming CLTU decoder in error-correcting mode.

    Feed it octets as they arrive; it hunts for the start sequence, corrects one bit error per
    codeblock, ends the CLTU at the first codeblock it cannot correct (the tail sequence is
    built to be one) and hunts again from that codeblock, so a lost tail costs no more than its
    own CLTU. The octets of every CLTU are returned; the frame layer checks length and FECF.
    """

    max_codeblocks: int = MAX_CODEBLOCKS
    stats: CltuStats = field(default_factory=CltuStats)
    _buffer: bytearray = field(default_factory=bytearray)
    _in_cltu: bool = False
    _info: bytearray = field(default_factory=bytearray)
    _blocks: int = 0
    _corrected: int = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[DecodedCltu]:
        self._buffer += data
        out: list[DecodedCltu] = []
        while True:
            if not self._in_cltu and not self._hunt():
                return out
            done = self._decode_available()
            if done is None:
                return out
            out.append(done)

    def octets_awaited(self, info_octets: Callable[[bytes], int | None]) -> int:
        """Octets still to come before the CLTU being received can end (0 between CLTUs).

        `info_octets(first)` says how many information octets the CLTU carries from the first
        codeblock's (the frame's length field), None when they do not tell; the decoder itself
        does not read frames. Lets a reader sleep for a CLTU's line time instead of waking for
        each part of it.
        """
        if not self._in_cltu:
            return 0
        total = info_octets(bytes(self._info[:INFO_OCTETS])) if self._blocks else None
        # Without a length, the next codeblock; with one, the frame's and the tail sequence.
        blocks = self._blocks + 1 if total is None else -(-total // INFO_OCTETS) + 1
        return max(0, (blocks - self._blocks) * CODEBLOCK_OCTETS - len(self._buffer))

    def _hunt(self) -> bool:
        buf = self._buffer
        idx = buf.find(START_SEQUENCE)
        if idx < 0:
            # Keep a trailing first octet of the start sequence: its partner may come next.
            keep = 1 if buf and buf[-1] == START_SEQUENCE[0] else 0
            self.stats.octets_outside_cltu += len(buf) - keep
            del buf[: len(buf) - keep]
            return False
        self.stats.octets_outside_cltu += idx
        del buf[: idx + len(START_SEQUENCE)]
        self._in_cltu = True
        self._info.clear()
        self._blocks = 0
        self._corrected = 0
        return True

    def _decode_available(self) -> DecodedCltu | None:
        buf = self._buffer
        room = self.max_codeblocks - self._blocks
        count = min(len(buf) // CODEBLOCK_OCTETS, room + 1)
        if count == 0:
            return None
        chunk = bytes(buf[: count * CODEBLOCK_OCTETS])
        syndromes = codeblock_syndromes(chunk)
        positions = syndromes.translate(_SYNDROME_TO_POSITION_OCTET)
        good = positions.find(_UNCORRECTABLE)
        good = min(count if good < 0 else good, room)
        decoded = bytearray(chunk[: good * CODEBLOCK_OCTETS])
        del decoded[INFO_OCTETS::CODEBLOCK_OCTETS]  # the parity octets
        corrected = good - syndromes.count(0, 0, good)
        if corrected:
            for row in range(good):
                pos = positions[row]
                if syndromes[row] and pos < 56:
                    # An information bit; a flipped parity bit needs no repair.
                    decoded[row * INFO_OCTETS + pos // 8] ^= 0x80 >> (pos % 8)
        self._corrected += corrected
        self._info += decoded
        self._blocks += good
        self.stats.codeblocks += good
        self.stats.corrected_codeblocks += corrected
        if good < count:
            end_block = chunk[good * CODEBLOCK_OCTETS : (good + 1) * CODEBLOCK_OCTETS]
            if good == room and positions[good] != _UNCORRECTABLE[0]:
                end = CltuEnd.TOO_LONG
                self.stats.cltus_too_long += 1
            elif _distance(end_block, TAIL_SEQUENCE) <= 3:
                end = CltuEnd.TAIL
            else:
                end = CltuEnd.UNCORRECTABLE
                self.stats.uncorrectable_codeblocks += 1
            # Hunt again from the codeblock that ended this CLTU: when the tail was lost, the
            # next start sequence sits inside it.
            del buf[: good * CODEBLOCK_OCTETS]
            if end is CltuEnd.TAIL:
                del buf[:CODEBLOCK_OCTETS]
            self._in_cltu = False
            self.stats.cltus += 1
            return DecodedCltu(bytes(self._info), end, self._corrected)
        del buf[: good * CODEBLOCK_OCTETS]
        return None
