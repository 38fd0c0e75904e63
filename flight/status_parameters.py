"""Where the payload's status parameters come from: clock, mode, link counters, FARM, resources."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flight.counters import LinkCounters
from spacelink.cop1 import Farm1
from spacelink.errors import DiscardReason

Getter = Callable[[], Any]

DISCARD_PREFIX = "DISCARDED_"


def link_parameters(
    counters: LinkCounters, farm: Farm1, tm_queue_octets: Callable[[], int]
) -> dict[str, Getter]:
    """The LINK_STATUS and LINK_DISCARDS parameters, read live from the link's counters."""
    c = counters
    getters: dict[str, Getter] = {
        "UPLINK_OCTETS": lambda: _u32(c.octets_received),
        "CLTUS_RECEIVED": lambda: _u32(c.cltu.cltus),
        "CODEBLOCKS_CORRECTED": lambda: _u32(c.cltu.corrected_codeblocks),
        "OCTETS_OUTSIDE_CLTU": lambda: _u32(c.cltu.octets_outside_cltu),
        "TC_FRAMES_ACCEPTED": lambda: _u32(c.frames_accepted),
        "CONTROL_COMMANDS": lambda: _u32(c.control_commands),
        "TC_PACKETS_ACCEPTED": lambda: _u32(c.packets_accepted),
        "FARM_STATE": lambda: int(farm.state),
        "FARM_VR": lambda: farm.v_r,
        "FARM_B_COUNTER": lambda: farm.farm_b_counter,
        "FARM_RETRANSMIT": lambda: farm.retransmit,
        "TM_FRAMES_SENT": lambda: _u32(c.tm_frames_sent),
        "TM_PACKETS_SENT": lambda: _u32(c.tm_packets_sent),
        "TM_QUEUE_OCTETS": lambda: _u32(tm_queue_octets()),
        # The CLTU decoder counts these itself: codeblocks (not the frames they cut) and CLTUs.
        f"{DISCARD_PREFIX}CODEBLOCK_UNCORRECTABLE": lambda: _u32(c.cltu.uncorrectable_codeblocks),
        f"{DISCARD_PREFIX}CLTU_TOO_LONG": lambda: _u32(c.cltu.cltus_too_long),
    }
    for reason in UPLINK_DISCARD_REASONS:
        name = f"{DISCARD_PREFIX}{reason.name}"
        if name not in getters:
            getters[name] = _discard_getter(c, reason)
    return getters


# The reasons the payload itself can discard for (the TM_* ones and PACKET_TIME are the
# ground's); each has a DISCARDED_<REASON> parameter in the dictionary.
UPLINK_DISCARD_REASONS = tuple(
    r for r in DiscardReason if not r.name.startswith("TM_") and r is not DiscardReason.PACKET_TIME
)


def _discard_getter(counters: LinkCounters, reason: DiscardReason) -> Getter:
    return lambda: _u32(counters.discarded[reason])


def _u32(value: int) -> int:
    # Counters wrap as on a real board rather than failing the housekeeping report.
    return value & 0xFFFFFFFF
