"""The line fault model: rates come out as configured, and a seed replays a run exactly."""

from __future__ import annotations

import numpy as np
import pytest

from hil.impairments import ImpairmentError, Impairments, LineFaults

DATA = bytes(200_000)  # 1.6 Mbit of zeros: every one bit of the output is a flipped bit


def ones(data: bytes) -> int:
    return int(np.unpackbits(np.frombuffer(data, dtype=np.uint8)).sum())


def test_independent_bit_errors_at_the_configured_rate() -> None:
    faults = LineFaults(Impairments(ber=1e-4), seed=1)
    out = b"".join(faults.apply(DATA[i : i + 997]) for i in range(0, len(DATA), 997))
    flipped = ones(out)
    assert flipped == faults.stats.bits_flipped
    expected = len(DATA) * 8 * 1e-4  # 160
    assert abs(flipped - expected) < 5 * expected**0.5  # five standard deviations


def test_bursts_scramble_runs_of_bits() -> None:
    faults = LineFaults(Impairments(burst_rate=1e-3, burst_bits=64), seed=2)
    out = faults.apply(DATA)
    bits = np.unpackbits(np.frombuffer(out, dtype=np.uint8))
    hit = np.flatnonzero(bits)
    assert 100 < faults.stats.bursts < 300
    # flips cluster: consecutive flipped bits are mostly within a burst length of each other
    assert np.median(np.diff(hit)) <= 4
    assert faults.stats.bits_flipped == hit.size


def test_a_burst_carries_on_into_the_next_chunk() -> None:
    faults = LineFaults(Impairments(burst_rate=0.5, burst_bits=4000), seed=3)
    first = faults.apply(bytes(10))
    faults.impairments = Impairments()
    second = faults.apply(bytes(100))
    assert ones(first) > 0 and ones(second) > 0


def test_drops_remove_octets() -> None:
    faults = LineFaults(Impairments(drop_rate=0.01), seed=4)
    out = faults.apply(bytes(range(256)) * 400)
    assert len(out) == 102_400 - faults.stats.octets_dropped
    assert 800 < faults.stats.octets_dropped < 1250


def test_the_same_seed_replays_the_same_faults() -> None:
    imp = Impairments(ber=1e-3, burst_rate=1e-4, burst_bits=32, drop_rate=1e-3)
    a = LineFaults(imp, seed=42)
    b = LineFaults(imp, seed=42)
    c = LineFaults(imp, seed=43)
    chunks = [bytes(range(256)) * n for n in (1, 7, 3, 20)]
    out_a = [a.apply(x) for x in chunks]
    assert out_a == [b.apply(x) for x in chunks]
    assert out_a != [c.apply(x) for x in chunks]


def test_a_clean_line_passes_data_unchanged() -> None:
    assert LineFaults(Impairments(latency_s=0.5), seed=0).apply(b"abc") == b"abc"


@pytest.mark.parametrize(
    "kwargs",
    [{"ber": 1.5}, {"ber": -0.1}, {"drop_rate": 1.0}, {"burst_rate": 0.1}, {"latency_s": -1}],
)
def test_out_of_range_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ImpairmentError):
        Impairments(**kwargs)  # type: ignore[arg-type]
