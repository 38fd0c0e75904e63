"""The anti-replay ledger: every security association's receiving state (the last ARSN accepted,
its nonce, a challenge waiting for its answer), written before each accepted frame acts, so that
after a restart or a power cut the payload goes on exactly where it stopped: no honest frame is
refused, and none is accepted twice.

One file, `<state dir>/security/anti-replay.ledger`, rewritten in place with one write and one
fdatasync per accepted frame (a frame must not wait for the three atomic file replacements of a
TripleStore). It holds three copies, each in its own 1024-octet slot, so that a torn write or an
upset damages only the copies it touches:

    magic "ARL1" | generation u64 | count u16 | count x (SPI u16, last u32, flags u8, nonce 16)
    | CRC-32 u32 of everything before it in the copy                       (big-endian)

flags: bit 0 the SA has a nonce, bit 1 its challenge waits for an answer. The state is the copy
with the highest generation among those whose CRC holds; a copy whose CRC fails (an upset, or a
write a power cut interrupted) is reported and written again. With no copy intact, or no ledger
in a state directory that has booted before, the state is lost and every SA is challenged; an SA
the ledger does not hold (a key added later) is challenged too, so that no SA ever restarts its
counter from 0 on frames that may have been recorded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from flight.durable import NotRegularError, fsync_directory, move_directory_aside, open_regular_file
from flight.protection.upsets import UpsetLocation, UpsetLog
from spacelink.keyfile import MAX_ASSOCIATIONS
from spacelink.sdls import NONCE_LENGTH, SaState

log = logging.getLogger(__name__)

LEDGER_FILE = "anti-replay.ledger"
COPIES = 3
SLOT_OCTETS = 1024
_MAGIC = b"ARL1"
_HEADER = struct.Struct(">4sQH")
_ENTRY = struct.Struct(f">HIB{NONCE_LENGTH}s")
_CRC = struct.Struct(">I")
_HAS_NONCE = 0x01
_CHALLENGED = 0x02
# What a copy of the largest key file takes: it must fit its slot.
assert _HEADER.size + MAX_ASSOCIATIONS * _ENTRY.size + _CRC.size <= SLOT_OCTETS


class LedgerCopyError(ValueError):
    """A copy of the ledger that does not decode (its CRC fails, or it is not a ledger)."""


def encode_copy(generation: int, states: Mapping[int, SaState]) -> bytes:
    """One copy of the ledger holding `states` (by SPI)."""
    out = bytearray(_HEADER.pack(_MAGIC, generation, len(states)))
    for spi in sorted(states):
        state = states[spi]
        flags = (_HAS_NONCE if state.nonce else 0) | (_CHALLENGED if state.challenged else 0)
        out += _ENTRY.pack(spi, state.last, flags, state.nonce or bytes(NONCE_LENGTH))
    out += _CRC.pack(zlib.crc32(out))
    return bytes(out)


def decode_copy(slot: bytes) -> tuple[int, dict[int, SaState]]:
    """The generation and states one slot holds; LedgerCopyError when it is damaged."""
    if len(slot) < _HEADER.size + _CRC.size:
        raise LedgerCopyError(f"{len(slot)} octets, too short for a ledger copy")
    magic, generation, count = _HEADER.unpack_from(slot)
    end = _HEADER.size + count * _ENTRY.size
    if magic != _MAGIC or end + _CRC.size > len(slot):
        raise LedgerCopyError("not a ledger copy")
    (crc,) = _CRC.unpack_from(slot, end)
    if zlib.crc32(slot[:end]) != crc:
        raise LedgerCopyError("CRC-32 does not match")
    states: dict[int, SaState] = {}
    for spi, last, flags, nonce in _ENTRY.iter_unpack(slot[_HEADER.size : end]):
        try:
            states[spi] = SaState(
                last, nonce if flags & _HAS_NONCE else b"", bool(flags & _CHALLENGED)
            )
        except ValueError as exc:  # a valid CRC over values no ledger writes
            raise LedgerCopyError(str(exc)) from None
    return generation, states


@dataclass(frozen=True)
class LoadedLedger:
    """What the payload starts from: the state of every SA (fresh where unknown), the SAs to
    challenge (their state lost, or never recorded by a ledger that exists), and whether the
    whole ledger was lost."""

    states: dict[int, SaState]
    to_challenge: frozenset[int]
    lost: bool


class AntiReplayLedger:
    """The ledger file of one state directory; for the main thread only."""

    def __init__(self, directory: Path, upsets: UpsetLog) -> None:
        self.path = directory / LEDGER_FILE
        self._upsets = upsets
        self._fd: int | None = None
        self._generation = 0

    def load(self, spis: Iterable[int], *, first_boot: bool) -> LoadedLedger:
        """Read the ledger for the SAs `spis`. `first_boot`: the state directory is new, so a
        missing ledger is a fresh one, not a lost one. OSError when it cannot be opened."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self._clear_planted() and self.path.exists()
        self._open()
        slots = self._read_slots()
        intact = [decoded for decoded in (_try_decode(slot) for slot in slots) if decoded]
        damaged = len(slots) - len(intact)
        known: dict[int, SaState] = {}
        if intact:
            self._generation, known = max(intact, key=lambda decoded: decoded[0])
            if damaged:
                self._upsets.corrected(UpsetLocation.STATE, "anti-replay ledger", damaged)
        elif existed:
            self._upsets.uncorrectable(UpsetLocation.STATE, "anti-replay ledger", COPIES)
        wanted = set(spis)
        lost = not intact and (existed or not first_boot)
        if lost:
            to_challenge = wanted
        elif intact:
            to_challenge = wanted - set(known)
        else:  # a new state directory: nothing was ever accepted
            to_challenge = set()
        states = {spi: known.get(spi, SaState()) for spi in sorted(wanted)}
        return LoadedLedger(states, frozenset(to_challenge), lost)

    def save(self, states: Mapping[int, SaState]) -> None:
        """Write `states` durably (every copy, then fdatasync); OSError when it cannot be."""
        generation = self._generation + 1
        copy = encode_copy(generation, states).ljust(SLOT_OCTETS, b"\0")
        fd = self._open()
        written = os.pwrite(fd, copy * COPIES, 0)
        if written != COPIES * SLOT_OCTETS:
            raise OSError(f"{self.path}: {written} of {COPIES * SLOT_OCTETS} octets written")
        os.fdatasync(fd)
        self._generation = generation

    def scrub(self, states: Mapping[int, SaState], on_repair: Callable[[str], None]) -> None:
        """Read the ledger back and write it again where it no longer holds `states` (an upset,
        a copy overwritten, the file removed); `on_repair` is told why. OSError when it cannot
        be written."""
        why = ""
        if not self._still_ours():
            why = "the ledger file was removed or replaced"
            self._close()
        else:
            expected = encode_copy(self._generation, states)
            slots = self._read_slots()
            damaged = sum(1 for slot in slots if slot[: len(expected)] != expected)
            if damaged:
                why = f"{damaged} of {COPIES} ledger copies no longer hold the state"
                self._upsets.corrected(UpsetLocation.STATE, "anti-replay ledger", damaged)
        if why:
            self._clear_planted()
            self.save(states)
            on_repair(why)

    def close(self) -> None:
        self._close()

    def _open(self) -> int:
        if self._fd is None:
            self._fd = open_regular_file(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(self._fd).st_size == 0:
                fsync_directory(self.path.parent)
        return self._fd

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _read_slots(self) -> list[bytes]:
        fd = self._open()
        data = os.pread(fd, COPIES * SLOT_OCTETS, 0).ljust(COPIES * SLOT_OCTETS, b"\0")
        return [data[i * SLOT_OCTETS : (i + 1) * SLOT_OCTETS] for i in range(COPIES)]

    def _still_ours(self) -> bool:
        if self._fd is None:
            return False
        try:
            on_disk = os.lstat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self._fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def _clear_planted(self) -> bool:
        """Remove a link or special file planted in the ledger's place (never followed), move a
        directory aside; False when something had to go (whatever it held is not a ledger)."""
        if move_directory_aside(self.path) is not None:
            return False
        try:
            os.close(open_regular_file(self.path))
        except FileNotFoundError:
            return True
        except NotRegularError as exc:
            log.error("%s: %s; removed", self.path, exc.strerror)
            os.unlink(self.path)
            return False
        return True


def _try_decode(slot: bytes) -> tuple[int, dict[int, SaState]] | None:
    try:
        return decode_copy(slot)
    except LedgerCopyError:
        return None
