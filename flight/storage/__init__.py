"""On-board packet stores (ST[15]): every TM packet kept on disk, bounded, for later retrieval."""

from flight.storage.packet_store import (
    MAX_PACKET_OCTETS,
    RECORD_OVERHEAD,
    InvalidPacket,
    InvalidTime,
    PacketStore,
    PacketStoreBusy,
    PacketStoreClosed,
    PacketStoreError,
    PacketStoreFull,
    StoredPacket,
    StoreSummary,
)

__all__ = [
    "MAX_PACKET_OCTETS",
    "RECORD_OVERHEAD",
    "InvalidPacket",
    "InvalidTime",
    "PacketStore",
    "PacketStoreBusy",
    "PacketStoreClosed",
    "PacketStoreError",
    "PacketStoreFull",
    "StoreSummary",
    "StoredPacket",
]
