"""Hypothesis strategies for the link's values, shared by the spacelink tests."""

from __future__ import annotations

from hypothesis import strategies as st

from spacelink.cdstime import CdsTime
from spacelink.spacepacket import AckFlags, PusTc, PusTm
from spacelink.tcframe import TcFrame

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
apids = st.integers(0, 0x7FE)
seq_counts = st.integers(0, 0x3FFF)
cds_times = st.builds(CdsTime, st.integers(0, 0xFFFF), st.integers(0, 86_400_999))

pus_tcs = st.builds(
    PusTc,
    apid=apids,
    service=u8,
    subtype=u8,
    app_data=st.binary(max_size=300),
    seq_count=seq_counts,
    source_id=u16,
    ack_flags=st.sampled_from(list(AckFlags)),
)
pus_tms = st.builds(
    PusTm,
    apid=apids,
    service=u8,
    subtype=u8,
    source_data=st.binary(max_size=300),
    seq_count=seq_counts,
    msg_type_counter=u16,
    destination_id=u16,
    time=cds_times,
    time_ref_status=st.integers(0, 15),
)


@st.composite
def tc_frames(draw: st.DrawFn, max_data: int = 1017) -> TcFrame:
    kind = draw(st.sampled_from(["AD", "BD", "BC"]))
    return TcFrame(
        scid=draw(st.integers(0, 0x3FF)),
        vcid=draw(st.integers(0, 63)),
        seq=draw(u8) if kind == "AD" else 0,
        data=draw(st.binary(min_size=1, max_size=max_data)),
        bypass=kind != "AD",
        control=kind == "BC",
    )


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """`data` cut at arbitrary points."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    pieces, last = [], 0
    for cut in [*cuts, len(data)]:
        pieces.append(data[last:cut])
        last = cut
    return pieces
