"""Trials of faults on the uplink: TC frames as CLTUs into the receive chain."""

from __future__ import annotations

import numpy as np

from flight.counters import LinkCounters
from flight.protection.faults import FaultModel, inject_bytes
from flight.uplink import UplinkReceiver
from spacelink.cltu import encode_cltu
from spacelink.cop1 import Farm1
from spacelink.icd import TC_MAX_DATA_LENGTH, LinkParameters
from spacelink.spacepacket import (
    PEC_LENGTH,
    PRIMARY_HEADER_LENGTH,
    TC_SECONDARY_HEADER_LENGTH,
    PusTc,
)
from spacelink.tcframe import TcFrame
from telemetry_defs.loader import default_dictionary
from tools.fault_campaign.outcomes import TrialResult, classify_frame

# The uplink carries file-upload chunks, the bulk of a pass's TC traffic.
UPLOAD_CHUNK = "FILE_UPLOAD_CHUNK"
# Alternating ones and zeros between CLTUs (CCSDS 231.0 idle sequence): it also ends a CLTU
# whose tail sequence a fault made decodable, as the next CLTU's start would.
IDLE_SEQUENCE = b"\x55" * 16


class Uplink:
    """TC frames carrying file-upload chunks, as CLTUs into the payload's receive chain."""

    def __init__(self, params: LinkParameters | None = None) -> None:
        self.params = params or LinkParameters()
        self._command = default_dictionary().command(UPLOAD_CHUNK)
        arguments = len(self._chunk(b"\0")) - 1
        overhead = PRIMARY_HEADER_LENGTH + TC_SECONDARY_HEADER_LENGTH + PEC_LENGTH + arguments
        #: The longest chunk that fills a TC frame.
        self.max_chunk = TC_MAX_DATA_LENGTH - overhead

    def _chunk(self, data: bytes, transfer_id: int = 0, offset: int = 0) -> bytes:
        return self._command.encode({"transfer_id": transfer_id, "offset": offset, "data": data})

    def trial(self, fault: FaultModel, protection: str, rng: np.random.Generator) -> TrialResult:
        """One CLTU of a random chunk size, corrupted on the line, into a fresh receiver."""
        size = 1 + int(rng.integers(self.max_chunk))
        data = self._chunk(rng.bytes(size), int(rng.integers(1 << 16)), int(rng.integers(1 << 24)))
        packet = PusTc(
            self.params.apid,
            self._command.service,
            self._command.subtype,
            data,
            seq_count=int(rng.integers(1 << 14)),
        ).pack()
        frame = TcFrame(self.params.scid, self.params.tc_vcid, 0, packet).pack()
        line = bytearray(encode_cltu(frame))
        inject_bytes(line, fault, rng)
        receiver = UplinkReceiver(self.params, Farm1(self.params.tc_vcid), LinkCounters())
        received = receiver.feed(bytes(line) + IDLE_SEQUENCE)
        corrected = receiver.counters.cltu.corrected_codeblocks
        return TrialResult(classify_frame(received, [packet], corrected), flag=not received)
