"""Uplink authentication cost: CPU time to secure and check one full TC frame, against the time
that frame takes on the line, and the octets the security fields take from each frame; and the
payload's whole check of a frame, with its anti-replay ledger written and synced to this disk.

The issue's target is under 5 % of uplink goodput: the octets are the cost that matters (a frame
of 1017 data octets carries 995 with HMAC or CMAC, 983 with GCM); the CPU time must stay a small
share of a frame's time on the line at the fastest rate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from flight.counters import LinkCounters
from flight.protection.upsets import UpsetLog
from flight.security.uplink_auth import UplinkAuthenticator
from spacelink.icd import TC_MAX_DATA_LENGTH, TC_MAX_FRAME_LENGTH
from spacelink.sdls import Algorithm, SecurityAssociation, SecurityProcessor, apply_security
from spacelink.tcframe import TcFrame

BAUD = 921600
# A CLTU carries the frame in 8-octet codeblocks of 7 data octets, plus start and tail sequences.
CLTU_OCTETS = 2 + 8 * -(-TC_MAX_FRAME_LENGTH // 7) + 8
LINE_S = CLTU_OCTETS * 10 / BAUD  # 8N1
KEYS = {
    Algorithm.HMAC_SHA256: bytes(range(32)),
    Algorithm.AES_CMAC: bytes(range(16)),
    Algorithm.AES_GCM: bytes(range(32)),
}


@pytest.mark.parametrize("algorithm", list(Algorithm), ids=lambda a: a.name)
def test_secure_and_check_one_full_frame(benchmark, report, algorithm: Algorithm) -> None:  # type: ignore[no-untyped-def]
    sa = SecurityAssociation(1, algorithm, KEYS[algorithm])
    payload = bytes(range(256)) * 4
    frame = TcFrame(scid=0x1AB, vcid=1, seq=0, data=payload[: TC_MAX_DATA_LENGTH - sa.overhead])
    receiver = SecurityProcessor([sa])
    counter = iter(range(1, 1 << 31))

    def round_trip() -> None:
        arsn = next(counter)
        secured = apply_security(dataclasses.replace(frame, seq=arsn & 0xFF), sa, arsn)
        receiver.process(TcFrame.unpack(secured.pack()))

    benchmark.group = "SDLS: secure + check one full TC frame"
    benchmark(round_trip)
    if benchmark.enabled:
        cpu_s = benchmark.stats.stats.mean
        octets = sa.overhead / TC_MAX_DATA_LENGTH
        benchmark.extra_info["share of line time"] = round(cpu_s / LINE_S, 5)
        report(
            "Uplink authentication (issue 8)",
            f"{algorithm.name:<12} {cpu_s * 1e6:7.1f} us per full frame, "
            f"{cpu_s / LINE_S * 100:.2f} % of its {LINE_S * 1000:.1f} ms on the line at {BAUD}; "
            f"security fields {sa.overhead} octets = {octets * 100:.1f} % of the data field",
        )
        assert octets < 0.05


def test_the_payloads_check_with_its_ledger_saved(benchmark, report, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sa = SecurityAssociation(1, Algorithm.HMAC_SHA256, KEYS[Algorithm.HMAC_SHA256])
    others = [SecurityAssociation(spi, Algorithm.AES_CMAC, bytes(16)) for spi in range(2, 5)]
    payload = bytes(range(256)) * 4
    frame = TcFrame(scid=0x1AB, vcid=1, seq=0, data=payload[: TC_MAX_DATA_LENGTH - sa.overhead])
    auth = UplinkAuthenticator(
        [sa, *others],
        tmp_path / "keys.toml",
        tmp_path,
        UpsetLog(),
        LinkCounters(),
        lambda name, **values: None,
        lambda: 0.0,
        first_boot=True,
    )
    counter = iter(range(1, 1 << 31))
    secured = [apply_security(frame, sa, next(counter)).pack() for _ in range(20_000)]
    frames = iter(secured)

    def check() -> None:
        raw = next(frames)
        assert auth.verify(TcFrame.unpack(raw), raw[:5]) is not None

    benchmark.group = "SDLS: the payload's check of one full TC frame, ledger synced"
    benchmark.pedantic(check, rounds=2000, iterations=1, warmup_rounds=10)
    if benchmark.enabled:
        cost_s = benchmark.stats.stats.mean
        benchmark.extra_info["share of line time"] = round(cost_s / LINE_S, 5)
        report(
            "Uplink authentication (issue 16)",
            f"check + anti-replay ledger write and fdatasync (4 SAs): {cost_s * 1e6:7.1f} us per "
            f"full frame, {cost_s / LINE_S * 100:.2f} % of its {LINE_S * 1000:.1f} ms on the line "
            f"at {BAUD}",
        )
