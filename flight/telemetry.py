"""Stamps outgoing TM packets: sequence count, per-type message counters and time."""

from __future__ import annotations

import threading
from collections.abc import Callable

from spacelink.cdstime import CdsTime
from spacelink.icd import TM_VCID_REALTIME
from spacelink.spacepacket import MAX_SEQUENCE_COUNT, PusTm

PacketSink = Callable[[int, bytes], None]


class TmPublisher:
    """The one place the payload's TM packets are made; any thread may publish (the job
    worker reports its jobs itself)."""

    def __init__(self, apid: int, sink: PacketSink, clock: Callable[[], float]) -> None:
        self._apid = apid
        self._sink = sink
        self._clock = clock
        self._seq = 0
        self._type_counters: dict[tuple[int, int], int] = {}
        # Counters and the order of packets on the line must agree across threads.
        self._lock = threading.Lock()

    def publish(
        self,
        service: int,
        subtype: int,
        data: bytes = b"",
        *,
        destination_id: int = 0,
        vcid: int = TM_VCID_REALTIME,
    ) -> PusTm:
        key = (service, subtype)
        with self._lock:
            counter = self._type_counters.get(key, 0)
            self._type_counters[key] = (counter + 1) & 0xFFFF
            tm = PusTm(
                apid=self._apid,
                service=service,
                subtype=subtype,
                source_data=data,
                seq_count=self._seq,
                msg_type_counter=counter,
                destination_id=destination_id,
                time=CdsTime.from_unix(self._clock()),
            )
            self._seq = (self._seq + 1) & MAX_SEQUENCE_COUNT
            self._sink(vcid, tm.pack())
        return tm
