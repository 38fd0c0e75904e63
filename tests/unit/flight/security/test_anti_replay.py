"""The anti-replay ledger on disk: its copies decode to what was written, the newest intact copy
wins after a torn write, damage is reported, and nothing planted in its place is followed."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight.protection.upsets import Outcome, UpsetLog
from flight.security.anti_replay import (
    COPIES,
    LEDGER_FILE,
    SLOT_OCTETS,
    AntiReplayLedger,
    LedgerCopyError,
    decode_copy,
    encode_copy,
)
from spacelink.keyfile import MAX_ASSOCIATIONS
from spacelink.sdls import MAX_ARSN, NONCE_LENGTH, SaState

states_strategy = st.dictionaries(
    st.integers(1, 0xFFFF),
    st.builds(
        lambda last, nonce, challenged: SaState(last, nonce, challenged and bool(nonce)),
        st.integers(0, MAX_ARSN),
        st.one_of(st.just(b""), st.binary(min_size=NONCE_LENGTH, max_size=NONCE_LENGTH)),
        st.booleans(),
    ),
    max_size=MAX_ASSOCIATIONS,
)


@given(generation=st.integers(0, 2**64 - 1), states=states_strategy)
def test_a_copy_decodes_to_what_was_encoded_and_fits_its_slot(
    generation: int, states: dict[int, SaState]
) -> None:
    copy = encode_copy(generation, states)
    assert len(copy) <= SLOT_OCTETS
    assert decode_copy(copy.ljust(SLOT_OCTETS, b"\0")) == (generation, states)


def test_the_layout_is_the_documented_one() -> None:
    nonce = bytes(range(16))
    copy = encode_copy(7, {1: SaState(5), 3: SaState(9, nonce, challenged=True)})
    body = (
        b"ARL1" + struct.pack(">QH", 7, 2)
        + struct.pack(">HIB", 1, 5, 0) + bytes(16)
        + struct.pack(">HIB", 3, 9, 3) + nonce
    )  # fmt: skip
    assert copy == body + struct.pack(">I", zlib.crc32(body))


@given(bit=st.integers(0, 8 * (4 + 8 + 2 + 23 + 4) - 1))
def test_any_flipped_bit_is_caught(bit: int) -> None:
    copy = bytearray(encode_copy(3, {1: SaState(77)}))
    copy[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(LedgerCopyError):
        decode_copy(bytes(copy).ljust(SLOT_OCTETS, b"\0"))


def ledger(tmp_path: Path, upsets: UpsetLog | None = None) -> AntiReplayLedger:
    return AntiReplayLedger(tmp_path / "security", upsets or UpsetLog())


def test_saved_states_are_loaded_after_a_restart(tmp_path: Path) -> None:
    first = ledger(tmp_path)
    loaded = first.load([1, 2], first_boot=True)
    assert (loaded.states, loaded.to_challenge, loaded.lost) == (
        {1: SaState(), 2: SaState()},
        frozenset(),
        False,
    )
    first.save({1: SaState(10), 2: SaState(4)})
    first.save({1: SaState(11), 2: SaState(4)})
    first.close()
    path = tmp_path / "security" / LEDGER_FILE
    assert path.stat().st_size == COPIES * SLOT_OCTETS
    assert (path.stat().st_mode & 0o777) == 0o600
    again = ledger(tmp_path).load([1, 2, 5], first_boot=False)
    assert again.states == {1: SaState(11), 2: SaState(4), 5: SaState()}
    assert (again.to_challenge, again.lost) == (frozenset({5}), False)


def test_after_a_torn_write_the_newest_intact_copy_wins(tmp_path: Path) -> None:
    store = ledger(tmp_path)
    store.load([1], first_boot=True)
    store.save({1: SaState(10)})
    store.close()
    path = tmp_path / "security" / LEDGER_FILE
    old = path.read_bytes()
    newer = encode_copy(5, {1: SaState(11)}).ljust(SLOT_OCTETS, b"\0")
    # The power went while the new state was being written: copy 0 done, copy 1 cut inside its
    # entry, copy 2 not reached.
    torn = newer + newer[:20] + old[SLOT_OCTETS + 20 :]
    path.write_bytes(torn)
    upsets = UpsetLog()
    loaded = ledger(tmp_path, upsets).load([1], first_boot=False)
    assert loaded.states == {1: SaState(11)} and not loaded.lost
    assert upsets.total(Outcome.CORRECTED) == 1


def test_no_intact_copy_is_a_lost_ledger(tmp_path: Path) -> None:
    store = ledger(tmp_path)
    store.load([1, 2], first_boot=True)
    store.save({1: SaState(10), 2: SaState(3)})
    store.close()
    (tmp_path / "security" / LEDGER_FILE).write_bytes(os.urandom(COPIES * SLOT_OCTETS))
    upsets = UpsetLog()
    loaded = ledger(tmp_path, upsets).load([1, 2], first_boot=False)
    assert (loaded.lost, loaded.to_challenge) == (True, frozenset({1, 2}))
    assert upsets.total(Outcome.UNCORRECTABLE) == COPIES


def test_a_missing_ledger_is_lost_unless_the_state_directory_is_new(tmp_path: Path) -> None:
    assert ledger(tmp_path).load([1], first_boot=True).lost is False
    assert ledger(tmp_path / "other").load([1], first_boot=False).lost is True


@pytest.mark.parametrize("planted", ["link", "fifo", "directory"])
def test_something_planted_in_its_place_is_not_followed_and_counts_as_lost(
    tmp_path: Path, planted: str
) -> None:
    directory = tmp_path / "security"
    directory.mkdir()
    path = directory / LEDGER_FILE
    target = tmp_path / "elsewhere"
    target.write_bytes(b"precious")
    if planted == "link":
        path.symlink_to(target)
    elif planted == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    store = ledger(tmp_path)
    loaded = store.load([1], first_boot=False)
    assert loaded.lost
    store.save({1: SaState(1)})
    assert target.read_bytes() == b"precious"
    assert path.is_file() and not path.is_symlink()
    if planted == "directory":
        assert next(p.name for p in directory.iterdir() if p.is_dir()).startswith(LEDGER_FILE)
