"""Space packet build and parse: ours against `spacepackets` on the same packets.

Target (issue 2): ours at least as fast, i.e. time ratio ours/spacepackets <= 1.0. Both sides
start from the same field values (build) or the same octets (parse, with the PEC checked), and
each benchmark first checks that both produce the same result. Our TM parse also decodes and
checks the CDS time, which spacepackets leaves as raw octets: the comparison favours them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from spacepackets.ecss.tc import InvalidTcCrc16Error
from spacepackets.ecss.tc import PusTc as TheirTc
from spacepackets.ecss.tm import InvalidTmCrc16Error
from spacepackets.ecss.tm import PusTm as TheirTm

from spacelink.cdstime import CDS_LENGTH, CdsTime
from spacelink.errors import PacketError
from spacelink.spacepacket import PusTc, PusTm
from tests.bench.timing import best_seconds

TIME = CdsTime(25_000, 43_200_123)
TC_PING = PusTc(100, 17, 1, seq_count=5, source_id=3)
TC_200 = PusTc(100, 128, 1, bytes(range(200)), seq_count=6, source_id=3)
TM_ACK = PusTm(
    100,
    1,
    1,
    TC_PING.request_id.pack(),
    seq_count=7,
    msg_type_counter=7,
    destination_id=3,
    time=TIME,
)
TM_HK = PusTm(100, 3, 25, bytes(range(100)), seq_count=8, msg_type_counter=8, time=TIME)
STAMP = TIME.pack()
assert len(STAMP) == CDS_LENGTH and STAMP[0] == 0x40  # the ICD's CDS short form, P-field 0x40


def _build_tc(tc: PusTc) -> tuple[Callable[[], bytes], Callable[[], bytes]]:
    def ours() -> bytes:
        return PusTc(
            tc.apid, tc.service, tc.subtype, tc.app_data, tc.seq_count, tc.source_id
        ).pack()

    def theirs() -> bytes:
        return TheirTc(
            service=tc.service,
            message_subtype=tc.subtype,
            apid=tc.apid,
            seq_count=tc.seq_count,
            source_id=tc.source_id,
            app_data=tc.app_data,
        ).pack()

    return ours, theirs


def _build_tm(tm: PusTm) -> tuple[Callable[[], bytes], Callable[[], bytes]]:
    def ours() -> bytes:
        return PusTm(
            tm.apid,
            tm.service,
            tm.subtype,
            tm.source_data,
            tm.seq_count,
            tm.msg_type_counter,
            tm.destination_id,
            tm.time,
        ).pack()

    def theirs() -> bytes:
        return TheirTm(
            service=tm.service,
            message_subtype=tm.subtype,
            timestamp=STAMP,
            source_data=tm.source_data,
            apid=tm.apid,
            seq_count=tm.seq_count,
            message_counter=tm.msg_type_counter,
            destination_id=tm.destination_id,
        ).pack()

    return ours, theirs


def _parse_tc(tc: PusTc) -> tuple[Callable[[], PusTc], Callable[[], TheirTc]]:
    raw = tc.pack()
    return lambda: PusTc.unpack(raw), lambda: TheirTc.unpack(raw)


def _parse_tm(tm: PusTm) -> tuple[Callable[[], PusTm], Callable[[], TheirTm]]:
    raw = tm.pack()
    return lambda: PusTm.unpack(raw), lambda: TheirTm.unpack(raw, timestamp_len=CDS_LENGTH)


@dataclass(frozen=True)
class Case:
    operation: str
    packet: str
    source: PusTc | PusTm
    ours: Callable[[], object]
    theirs: Callable[[], object]

    def check(self) -> None:
        """Both sides give the same octets or fields; both parsers reject a bad PEC."""
        ours, theirs = self.ours(), self.theirs()
        if self.operation.endswith("build"):
            assert bytes(theirs) == ours == self.source.pack()  # type: ignore[arg-type]
            return
        assert ours == self.source
        assert bytes(theirs.pack()) == self.source.pack()  # type: ignore[attr-defined]
        bad = bytearray(self.source.pack())
        bad[-3] ^= 0x01
        with pytest.raises(PacketError):
            type(self.source).unpack(bytes(bad))
        with pytest.raises((InvalidTcCrc16Error, InvalidTmCrc16Error)):
            if isinstance(self.source, PusTc):
                TheirTc.unpack(bytes(bad))
            else:
                TheirTm.unpack(bytes(bad), timestamp_len=CDS_LENGTH)


def _cases() -> list[Case]:
    tcs = {"TC[17,1] empty": TC_PING, "TC[128,1] 200 octets": TC_200}
    tms = {"TM[1,1] request ID": TM_ACK, "TM[3,25] 100 octets": TM_HK}
    out = []
    for operation, packets, make in (
        ("TC build", tcs, _build_tc),
        ("TC parse", tcs, _parse_tc),
        ("TM build", tms, _build_tm),
        ("TM parse", tms, _parse_tm),
    ):
        for name, packet in packets.items():
            out.append(Case(operation, name, packet, *make(packet)))  # type: ignore[operator]
    return out


CASES = _cases()
OPERATIONS = list(dict.fromkeys(c.operation for c in CASES))


@pytest.mark.parametrize("side", ["ours", "spacepackets"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.operation}: {c.packet}")
def test_packet_codec(benchmark, case: Case, side: str) -> None:  # type: ignore[no-untyped-def]
    """Time of one build or parse; the group pairs ours and theirs on one packet."""
    case.check()
    benchmark.group = f"packet {case.operation}: {case.packet}"
    benchmark.extra_info.update(operation=case.operation, packet=case.packet, side=side)
    benchmark(case.ours if side == "ours" else case.theirs)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_ratio_ours_to_spacepackets(benchmark, report, operation: str) -> None:  # type: ignore[no-untyped-def]
    """Time ratio ours/spacepackets per packet: best of 7 interleaved timeit loops per side."""
    cases = [c for c in CASES if c.operation == operation]
    for case in cases:
        case.check()
    fast = not benchmark.enabled  # --benchmark-disable: a quick smoke run
    fns = [fn for c in cases for fn in (c.ours, c.theirs)]

    def measure() -> list[float]:
        return best_seconds(fns, repeat=2 if fast else 7, loop_s=0.002 if fast else 0.02)

    benchmark.group = "packet ratio ours/spacepackets (timeit)"
    times = benchmark.pedantic(measure, rounds=1, iterations=1)
    ratios = []
    for i, case in enumerate(cases):
        ours, theirs = times[2 * i], times[2 * i + 1]
        ratios.append(ours / theirs)
        benchmark.extra_info[case.packet] = {
            "ours_us": round(ours * 1e6, 3),
            "spacepackets_us": round(theirs * 1e6, 3),
            "ratio": round(ours / theirs, 3),
        }
        report(
            "packet codec, time ratio ours/spacepackets (target <= 1.0)",
            f"{operation:<9} {case.packet:<22} ours {ours * 1e6:6.2f} us"
            f"  spacepackets {theirs * 1e6:6.2f} us  ratio {ours / theirs:4.2f}",
        )
    benchmark.extra_info["max_ratio"] = round(max(ratios), 3)
    # Noise must not fail the run: only a gross regression does.
    assert max(ratios) < 3, f"{operation}: ours/spacepackets {max(ratios):.2f}, target <= 1.0"
