"""Commanding through a bad link: bit errors, a link cut, garbage on the line (issue 3).

Each run sends numbered TC[17,128] sequence checks; the payload counts how many it executed
and whether they came in order, and the test reads that count back (asking again if the
report is lost). COP-1 retransmissions and outage recoveries are reported.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable

import pytest

from hil.bench import Bench
from hil.impairments import Impairments
from hil.testapi import GroundTestApi
from spacelink.spacepacket import AckFlags
from telemetry_defs.loader import default_dictionary
from tests.harness import open_test_api, sequence_report

SEQUENCE_CHECK = default_dictionary().command("LINK_SEQUENCE_CHECK")


def send_sequence(
    api: GroundTestApi,
    count: int,
    filler: int = 200,
    during: Callable[[int], None] | None = None,
    timeout: float = 120,
) -> dict[str, int]:
    """Send `count` numbered commands; assert exactly once and in order; link statistics."""
    sequence_report(api, reset=True)
    session = api.session
    retransmitted = session.fop.frames_retransmitted
    records = []
    for n in range(count):
        if during is not None:
            during(n)
        data = SEQUENCE_CHECK.encode({"number": n, "filler": bytes(filler)})
        records.append(
            api.send(SEQUENCE_CHECK.service, SEQUENCE_CHECK.subtype, data, ack=AckFlags.NONE)
        )
    api.assert_delivered(records, timeout=timeout)
    executed, out_of_order, expected_next = sequence_report(api)
    assert (executed, out_of_order, expected_next) == (count, 0, count), (
        f"payload executed {executed} of {count}, {out_of_order} out of order, "
        f"next expected {expected_next}"
    )
    return {
        "retransmitted frames": session.fop.frames_retransmitted - retransmitted,
        "outages recovered": session.stats.outages_recovered,
        "TM frames with bad FECF": session.sync.stats.fecf_errors,
    }


def report(record_property: Callable[[str, object], None], stats: dict[str, int]) -> None:
    for key, value in stats.items():
        record_property(key, value)
    print("\n" + ", ".join(f"{k}: {v}" for k, v in stats.items()))


@pytest.mark.parametrize("ber", [1e-5, 1e-4])
def test_200_commands_exactly_once_in_order_at_ber(
    make_bench: Callable[..., Bench], record_property: Callable[[str, object], None], ber: float
) -> None:
    line = Impairments(ber=ber)
    bench = make_bench(baud=115200, uplink=line, downlink=line, seed=int(ber * 1e6))
    with open_test_api(bench.ground_port) as api:
        stats = send_sequence(api, 200)
    report(
        record_property,
        {
            **stats,
            "uplink bits flipped": bench.link.stats("uplink").bits_flipped,
            "downlink bits flipped": bench.link.stats("downlink").bits_flipped,
        },
    )
    assert bench.link.stats("downlink").bits_flipped > 0


@pytest.mark.slow
@pytest.mark.parametrize("ber", [1e-5, 1e-4])
def test_2000_commands_at_ber_with_bursts(
    make_bench: Callable[..., Bench], record_property: Callable[[str, object], None], ber: float
) -> None:
    line = Impairments(ber=ber, burst_rate=2e-6, burst_bits=48)
    bench = make_bench(baud=115200, uplink=line, downlink=line, seed=3)
    with open_test_api(bench.ground_port) as api:
        stats = send_sequence(api, 2000, filler=600, timeout=600)
    report(record_property, stats)


def test_a_five_second_cut_mid_sequence_needs_no_operator(
    make_bench: Callable[..., Bench], record_property: Callable[[str, object], None]
) -> None:
    bench = make_bench(baud=115200)
    with open_test_api(bench.ground_port) as api:
        stats = send_sequence(api, 60, during=lambda n: n == 20 and bench.link.cut(5.0))
    assert bench.link.stats("uplink").octets_cut > 0
    report(record_property, stats)


def test_an_outage_longer_than_cop1_allows_is_ridden_out(
    make_bench: Callable[..., Bench], record_property: Callable[[str, object], None]
) -> None:
    """T1 x limit is 6 s at 921600 baud (13 s at 115200); a 10 s cut outlasts FOP-1 itself."""
    bench = make_bench(baud=921600)
    with open_test_api(bench.ground_port, baud=921600) as api:
        stats = send_sequence(api, 30, during=lambda n: n == 10 and bench.link.cut(10.0))
    assert stats["outages recovered"] >= 1
    report(record_property, stats)


def test_a_megabyte_of_noise_each_way_is_counted_and_survived(
    make_bench: Callable[..., Bench], record_property: Callable[[str, object], None]
) -> None:
    noise = 1_000_000
    bench = make_bench(baud=921600)
    with open_test_api(bench.ground_port, baud=921600) as api:
        skipped_before = api.session.sync.stats.octets_skipped
        bench.link.inject("uplink", os.urandom(noise))
        bench.link.inject("downlink", os.urandom(noise))
        stats = send_sequence(api, 20, timeout=120)
        skipped = api.session.sync.stats.octets_skipped - skipped_before
    assert bench.stop_flight(signal.SIGTERM) == 0  # alive and stopping cleanly
    counters = re.search(
        r"rx (\d+) octets; CLTUs (\d+).*?(\d+) octets outside CLTUs", bench.flight_log_text()
    )
    assert counters, bench.flight_log_text()[-2000:]
    received, cltus, outside = map(int, counters.groups())
    assert received >= noise
    # Noise octets are counted outside CLTUs, but for the few that chance made into a start
    # sequence and a codeblock or two: those show as extra (false) CLTUs.
    assert outside >= noise * 0.99
    assert cltus > 20 + 2  # the commands, the reports, and false starts in the noise
    assert skipped >= noise * 0.99  # the ground's frame sync skipped the downlink noise
    report(
        record_property,
        {**stats, "uplink noise outside CLTUs": outside, "downlink noise skipped": skipped},
    )


def test_commands_keep_flowing_while_the_line_is_noisy(
    make_bench: Callable[..., Bench],
) -> None:
    """Noise injected while commanding, not just before: the link never stalls."""
    bench = make_bench(baud=921600)
    stop = threading.Event()

    def noise() -> None:
        while not stop.wait(0.2):
            bench.link.inject("uplink", os.urandom(2000))
            bench.link.inject("downlink", os.urandom(2000))

    worker = threading.Thread(target=noise, daemon=True)
    worker.start()
    try:
        with open_test_api(bench.ground_port, baud=921600) as api:
            started = time.monotonic()
            send_sequence(api, 100)
            assert time.monotonic() - started < 60
    finally:
        stop.set()
        worker.join()
