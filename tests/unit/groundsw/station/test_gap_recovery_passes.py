"""Gap recovery across passes: what the end of a pass does to a retrieval out and to the gaps
just found, and what the start of the next one does (the fake payload and ground of
test_gap_recovery)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from groundsw.gaps import GapState
from groundsw.station.gap_recovery import RecoveryTiming
from tests.unit.groundsw.station.test_gap_recovery import Ground


@pytest.fixture
def ground(tmp_path: Path) -> Iterator[Ground]:
    g = Ground(tmp_path)
    yield g
    g.recovery.close()
    g.archive.close()


def step(ground: Ground, seconds: float = 0.1) -> None:
    ground.clock.now += seconds
    ground.wall.now += seconds
    ground.recovery.step()


def test_a_retrieval_cut_by_the_end_of_a_pass_is_no_attempt_and_goes_again_at_the_next(
    ground: Ground,
) -> None:
    p = ground.payload
    p.make(3)
    p.make(2, heard=False)
    p.make(2)
    p.silent = True  # the pass ends before the answer comes
    ground.run(5)
    assert ground.state() == [(GapState.RETRIEVING, 0)]
    ground.link_up = False
    ground.recovery.contact_changed(False)
    step(ground)
    (gap,) = ground.archive.gaps()
    assert (gap.state, gap.attempts) == (GapState.OPEN, 0)
    assert gap.reason == "the pass ended before the retrieval did"
    step(ground, 30.0)  # between passes: nothing is sent
    assert len(p.retrievals) == 1
    p.silent = False
    ground.link_up = True
    ground.recovery.contact_changed(True)
    step(ground)  # at once, not after a retry's wait
    assert len(p.retrievals) == 2
    ground.run(5)
    assert ground.state() == [(GapState.RECOVERED, 1)]


def test_gaps_found_are_kept_at_the_end_of_a_pass_without_waiting_for_the_bulk_channel(
    ground: Ground,
) -> None:
    p = ground.payload
    p.make(2)
    p.make(1, heard=False)
    p.make(1)  # the gap is found; the bulk channel's settle time has not passed
    ground.link_up = False
    step(ground)
    assert ground.state() == []
    ground.recovery.contact_changed(False)
    step(ground)
    assert ground.state() == [(GapState.OPEN, 0)]


def test_the_waits_are_the_timings(ground: Ground) -> None:
    timing = RecoveryTiming(step_s=0.1, settle_s=0.3, max_settle_s=1.0)
    assert ground.recovery.timing == RecoveryTiming()
    ground.recovery.timing = timing
    p = ground.payload
    p.make(2)
    p.make(1, heard=False)
    p.make(1)
    step(ground, 0.4)  # kept 0.4 s after it was found (the default waits 2 s), and asked for
    assert ground.state() == [(GapState.RETRIEVING, 0)]
    with pytest.raises(ValueError, match="settle_s must be above 0"):
        RecoveryTiming(settle_s=0.0)
