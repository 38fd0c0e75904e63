"""Stamps outgoing TM packets: sequence count, per-type message counters and time."""

from __future__ import annotations

import threading
from collections.abc import Callable

from spacelink.cdstime import CdsTime
from spacelink.icd import TM_VCID_REALTIME
from spacelink.spacepacket import MAX_SEQUENCE_COUNT, PusTm

PacketSink = Callable[[int, bytes], None]
# Told of each packet as it is published, before it is queued for the line, in publication
# order: (packet, its octets, its virtual channel).
PacketObserver = Callable[[PusTm, bytes, int], None]


class TmPublisher:
    """The one place the payload's TM packets are made; any thread may publish (the job
    worker reports its jobs itself)."""

    def __init__(self, apid: int, sink: PacketSink, clock: Callable[[], float]) -> None:
        self._apid = apid
        self._sink = sink
        self._clock = clock
        self._seq = 0
        self._type_counters: dict[tuple[int, int], int] = {}
        self._observers: list[PacketObserver] = []
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
            raw = tm.pack()
            for observe in self._observers:
                observe(tm, raw, vcid)
            self._sink(vcid, raw)
        return tm

    def observe(self, observer: PacketObserver) -> None:
        """Have `observer` told of every packet from now on (the packet stores keep them)."""
        with self._lock:
            self._observers.append(observer)
