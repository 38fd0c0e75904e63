"""Which held commands the payload took during an outage, decided from one CLCW."""

from __future__ import annotations

import pytest

from groundsw.recovery import OutageRecovery, RecoveryError, Unconfirmed


def held(*seqs: int | None) -> OutageRecovery:
    r = OutageRecovery()
    r.add([Unconfirmed(f"c{i}", bytes([i]), s) for i, s in enumerate(seqs)])
    return r


def tags(items: list[Unconfirmed]) -> list[object]:
    return [u.tag for u in items]


def test_nothing_arrived() -> None:
    done, again = held(10, 11, 12, None).resolve(10)
    assert done == [] and tags(again) == ["c0", "c1", "c2", "c3"]


def test_some_arrived_before_the_cut() -> None:
    done, again = held(10, 11, 12, None).resolve(12)
    assert tags(done) == ["c0", "c1"] and tags(again) == ["c2", "c3"]


def test_all_sent_arrived_only_acknowledgements_were_lost() -> None:
    done, again = held(10, 11, 12).resolve(13)
    assert tags(done) == ["c0", "c1", "c2"] and again == []


def test_sequence_numbers_wrap() -> None:
    done, again = held(254, 255, 0, 1).resolve(0)
    assert tags(done) == ["c0", "c1"] and tags(again) == ["c2", "c3"]


def test_never_sent_fdus_are_all_sent_again() -> None:
    done, again = held(None, None).resolve(77)
    assert done == [] and tags(again) == ["c0", "c1"]


@pytest.mark.parametrize("n_r", [9, 14, 0, 200])
def test_a_clcw_that_does_not_fit_means_the_fate_is_unknown(n_r: int) -> None:
    with pytest.raises(RecoveryError, match="restarted or was commanded by another ground"):
        held(10, 11, 12).resolve(n_r)
