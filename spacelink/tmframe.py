"""TM transfer frames (CCSDS 132.0-B) and their channel coding (131.0-B), ICD section 6.

On the line every frame is the attached sync marker followed by the randomized frame or, with
Reed-Solomon coding (ICD 6a), the randomized codeblock: the frame and its check symbols. The
`FrameSynchronizer` finds frames in a byte stream the way a hardware frame synchronizer does:
it searches for the marker, then, once a frame has checked out, expects the next marker right
after it and tolerates a few bit errors there, so one corrupted marker does not cost a search.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from spacelink.crc import crc16
from spacelink.errors import DiscardReason, FrameError
from spacelink.icd import (
    ATTACHED_SYNC_MARKER,
    TM_FECF_LENGTH,
    TM_FRAME_LENGTH,
    TM_HEADER_LENGTH,
    TM_OCF_LENGTH,
    TM_RS_CODEBLOCK_LENGTH,
    TM_RS_FRAME_LENGTH,
    TmCoding,
)
from spacelink.randomizer import randomize
from spacelink.reed_solomon import decode_codeblock, encode_codeblock

FHP_NO_PACKET_START = 0x7FF
FHP_IDLE_ONLY = 0x7FE
_SEGMENT_LENGTH_ID = 0b11
_HEADER = struct.Struct(">HBBH")
_OCF = struct.Struct(">I")
_FECF = struct.Struct(">H")
_TRAILER_LENGTH = TM_OCF_LENGTH + TM_FECF_LENGTH


@dataclass(frozen=True, slots=True)
class TmFrame:
    """One TM transfer frame with an OCF (the CLCW) and a FECF, as ICD section 6 fixes."""

    scid: int
    vcid: int
    mc_count: int
    vc_count: int
    fhp: int
    data: bytes
    ocf: int

    def pack(self) -> bytes:
        """The frame octets before randomization (no sync marker)."""
        head = _HEADER.pack(
            (self.scid << 4) | (self.vcid << 1) | 1,  # version 00, OCF flag 1
            self.mc_count,
            self.vc_count,
            (_SEGMENT_LENGTH_ID << 11) | self.fhp,  # no secondary header, sync 0, order 0
        )
        body = head + self.data + _OCF.pack(self.ocf)
        return body + _FECF.pack(crc16(body))

    @classmethod
    def unpack(cls, frame: bytes | bytearray | memoryview) -> TmFrame:
        """Parse one de-randomized frame; checks FECF and the fields the ICD fixes."""
        if len(frame) < TM_HEADER_LENGTH + _TRAILER_LENGTH + 1:
            raise FrameError(DiscardReason.TM_FRAME_HEADER, f"{len(frame)} octets is too short")
        if crc16(frame) != 0:
            raise FrameError(DiscardReason.TM_FRAME_FECF, "frame error control does not match")
        word0, mc_count, vc_count, status = _HEADER.unpack_from(frame)
        if word0 >> 14:
            raise FrameError(DiscardReason.TM_FRAME_HEADER, f"frame version {word0 >> 14}")
        if not word0 & 1:
            raise FrameError(DiscardReason.TM_FRAME_HEADER, "OCF flag 0, the ICD needs the CLCW")
        if status >> 11 != _SEGMENT_LENGTH_ID:
            raise FrameError(
                DiscardReason.TM_FRAME_HEADER,
                f"data field status 0x{status:04X}: secondary header, sync or order flag set",
            )
        (ocf,) = _OCF.unpack_from(frame, len(frame) - _TRAILER_LENGTH)
        return cls(
            scid=(word0 >> 4) & 0x3FF,
            vcid=(word0 >> 1) & 0x7,
            mc_count=mc_count,
            vc_count=vc_count,
            fhp=status & 0x7FF,
            data=bytes(frame[TM_HEADER_LENGTH : len(frame) - _TRAILER_LENGTH]),
            ocf=ocf,
        )


def encode_channel_frame(frame: bytes, coding: TmCoding = TmCoding.NONE) -> bytes:
    """What goes on the line for one frame: the sync marker, then the randomized frame or,
    with RS coding, the randomized codeblock (the randomizer covers the check symbols)."""
    if coding == TmCoding.RS:
        return ATTACHED_SYNC_MARKER + randomize(encode_codeblock(frame))
    return ATTACHED_SYNC_MARKER + randomize(frame)


def _coded_length(coding: TmCoding, frame_length: int) -> int:
    if coding != TmCoding.RS:
        return frame_length
    if frame_length != TM_RS_FRAME_LENGTH:
        raise ValueError(
            f"Reed-Solomon coding needs {TM_RS_FRAME_LENGTH}-octet TM frames (5 x 223), "
            f"not {frame_length}"
        )
    return TM_RS_CODEBLOCK_LENGTH


def channel_frame_octets(coding: TmCoding, frame_length: int = TM_FRAME_LENGTH) -> int:
    """Octets on the line per frame, sync marker included (1119 uncoded, 1279 with RS)."""
    return len(ATTACHED_SYNC_MARKER) + _coded_length(coding, frame_length)


@dataclass(slots=True)
class SyncStats:
    """Counts of the frame synchronizer; every discarded octet and frame is accounted for."""

    frames: int = 0
    fecf_errors: int = 0
    header_errors: int = 0
    scid_errors: int = 0
    octets_skipped: int = 0
    markers_with_errors: int = 0
    rs_corrected_symbols: int = 0  # in codeblocks that decoded, check symbols included
    rs_uncorrectable: int = 0  # codeblocks discarded: a codeword had more errors than E


def _bit_distance(a: bytes | bytearray | memoryview, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


@dataclass(slots=True)
class FrameSynchronizer:
    """Turns the downlink byte stream into checked TM frames (search, check and lock).

    With RS coding each codeblock is derandomized and decoded before its FECF is checked; an
    uncorrectable codeblock counts in `rs_uncorrectable` and is otherwise a bad-FECF frame.
    """

    scid: int | None = None
    frame_length: int = TM_FRAME_LENGTH
    marker_tolerance: int = 3
    coding: TmCoding = TmCoding.NONE
    stats: SyncStats = field(default_factory=SyncStats)
    _buffer: bytearray = field(default_factory=bytearray)
    _locked: bool = False

    def __post_init__(self) -> None:
        _coded_length(self.coding, self.frame_length)  # RS needs 1115-octet frames

    def feed(self, data: bytes | bytearray | memoryview) -> list[TmFrame]:
        buf = self._buffer
        buf += data
        marker = ATTACHED_SYNC_MARKER
        mlen = len(marker)
        total = mlen + _coded_length(self.coding, self.frame_length)
        frames: list[TmFrame] = []
        while True:
            distance = 0
            if self._locked:
                if len(buf) < mlen:
                    break
                distance = _bit_distance(buf[:mlen], marker)
            else:
                idx = buf.find(marker)
                if idx < 0:
                    drop = max(0, len(buf) - (mlen - 1))
                    self.stats.octets_skipped += drop
                    del buf[:drop]
                    break
                self.stats.octets_skipped += idx
                del buf[:idx]
            if len(buf) < total:
                break  # the marker is checked again, and counted once, when the frame is in
            # Locked, a marker too damaged to recognise (a burst across it: the marker is not
            # coded) is passed over when the block where it says checks (flywheel): only when
            # both are wrong is the stream out of step and searched again from here.
            flywheel = self._locked and distance > self.marker_tolerance
            frame, corrected, failure = self._check(randomize(buf[mlen:total]))
            if flywheel and frame is None:
                self._locked = False
                continue
            self._count(corrected, failure)
            if distance:
                self.stats.markers_with_errors += 1
            searched = not self._locked
            if frame is None:
                if searched:
                    # The marker may have been a chance match inside other data: look again
                    # just past it rather than skipping a whole frame length.
                    self.stats.octets_skipped += mlen
                    del buf[:mlen]
                else:
                    del buf[:total]
                continue
            del buf[:total]
            if self.scid is not None and frame.scid != self.scid:
                self.stats.scid_errors += 1
                continue
            self._locked = True
            self.stats.frames += 1
            frames.append(frame)
        return frames

    def octets_awaited(self) -> int:
        """Octets still to come before the frame being received is whole; 0 out of lock or
        between frames (what comes next is not yet known to be a frame)."""
        if not self._locked or not self._buffer:
            return 0
        total = len(ATTACHED_SYNC_MARKER) + _coded_length(self.coding, self.frame_length)
        return max(0, total - len(self._buffer))

    def _check(self, block: bytes) -> tuple[TmFrame | None, int, str | None]:
        """The frame in a derandomized block, the symbols corrected on the way, and why there
        is none ("rs", "fecf" or "header"); counts nothing."""
        corrected = 0
        octets = block
        if self.coding == TmCoding.RS:
            decoded = decode_codeblock(block)
            if decoded.frame is None:
                return None, 0, "rs"
            octets, corrected = decoded.frame, decoded.corrected_symbols
        try:
            return TmFrame.unpack(octets), corrected, None
        except FrameError as exc:
            bad_fecf = exc.reason is DiscardReason.TM_FRAME_FECF
            return None, corrected, "fecf" if bad_fecf else "header"

    def _count(self, corrected: int, failure: str | None) -> None:
        if failure == "rs":
            self.stats.rs_uncorrectable += 1
            return
        self.stats.rs_corrected_symbols += corrected
        if failure == "fecf":
            self.stats.fecf_errors += 1
        elif failure == "header":
            self.stats.header_errors += 1
