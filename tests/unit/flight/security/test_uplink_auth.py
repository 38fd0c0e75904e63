"""The payload's uplink authenticator through its real parts (key file, anti-replay ledger on
disk, link counters): refusals counted and reported, each SA's anti-replay state kept exactly
across restarts and recovered by a challenge when lost, key rotation, and KEY_ROTATE through the
command router."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flight.counters import LinkCounters
from flight.protection.upsets import Outcome, UpsetLog
from flight.router import CommandRouter
from flight.security.anti_replay import COPIES, LEDGER_FILE, SLOT_OCTETS, decode_copy
from flight.security.uplink_auth import (
    CHALLENGE_REPEAT_S,
    LEDGER_CHECK_S,
    STATE_DIR,
    KeyRotationError,
    UplinkAuthenticator,
)
from flight.services.security import SecurityService
from flight.telemetry import TmPublisher
from spacelink.errors import DiscardReason
from spacelink.keystore import create_keys, read_keys
from spacelink.pus import Stage, VerificationReport
from spacelink.sdls import (
    MAX_ARSN,
    NONCE_LENGTH,
    Algorithm,
    SaState,
    SecurityAssociation,
    apply_security,
    wrap_key,
)
from spacelink.spacepacket import AckFlags, PusTc, PusTm
from spacelink.tcframe import TcFrame
from telemetry_defs.loader import default_dictionary

D = default_dictionary()
SA1 = SecurityAssociation(1, Algorithm.HMAC_SHA256, bytes(range(32)))
SA2 = SecurityAssociation(2, Algorithm.AES_CMAC, bytes(range(100, 116)))
SA3 = SecurityAssociation(3, Algorithm.AES_GCM, bytes(range(200, 232)))
STRANGER = SecurityAssociation(9, Algorithm.HMAC_SHA256, bytes(range(50, 82)))
NEW_KEY = bytes(range(150, 182))
PLAIN = TcFrame(scid=0x1AB, vcid=1, seq=0, data=b"\x18\x64\xc0\x00\x00\x05\x2f\x11\x01\x00\x00")
Wire = tuple[TcFrame, bytes]


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Events:
    """Every event raised, each first encoded by the dictionary (arguments must fit it)."""

    def __init__(self) -> None:
        self.raised: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, **values: Any) -> None:
        D.encode_event(name, values)
        self.raised.append((name, values))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [values for event, values in self.raised if event == name]

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        taken, self.raised = self.raised, []
        return taken


class Nonces:
    """random_octets that hands out distinct, recorded nonces."""

    def __init__(self) -> None:
        self.given: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        nonce = bytes([len(self.given) + 1]) * n
        self.given.append(nonce)
        return nonce


class Rig:
    """A state directory and key file, and authenticators made on them as the payload does."""

    def __init__(self, root: Path) -> None:
        self.state_dir = root / "state"
        self.state_dir.mkdir()
        self.key_file = self.state_dir / "uplink-keys.toml"
        create_keys(self.key_file, [SA1, SA2])
        self.clock = Clock()
        self.events = Events()
        self.nonces = Nonces()
        self.counters = LinkCounters()
        self.upsets = UpsetLog()

    def make(self, *, first_boot: bool, key_file: Path | None = None) -> UplinkAuthenticator:
        self.counters = LinkCounters()
        self.upsets = UpsetLog()
        return UplinkAuthenticator(
            read_keys(self.key_file),
            key_file or self.key_file,
            self.state_dir,
            self.upsets,
            self.counters,
            self.events,
            self.clock,
            first_boot=first_boot,
            random_octets=self.nonces,
        )

    @property
    def ledger(self) -> Path:
        return self.state_dir / STATE_DIR / LEDGER_FILE

    def saved(self) -> list[dict[int, SaState] | None]:
        """The states each copy of the ledger on disk holds (None: not intact)."""
        data = self.ledger.read_bytes()
        out: list[dict[int, SaState] | None] = []
        for i in range(COPIES):
            try:
                out.append(decode_copy(data[i * SLOT_OCTETS : (i + 1) * SLOT_OCTETS])[1])
            except ValueError:
                out.append(None)
        return out

    def discards(self) -> dict[DiscardReason, int]:
        return {reason: n for reason, n in self.counters.discarded.items() if n}


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def wire(frame: TcFrame) -> Wire:
    """The frame as the uplink hands it over: parsed from its octets, with its header."""
    raw = frame.pack()
    return TcFrame.unpack(raw), raw[:5]


def secured(sa: SecurityAssociation, arsn: int, nonce: bytes = b"") -> Wire:
    return wire(apply_security(PLAIN, sa, arsn, nonce))


def forged(sa: SecurityAssociation, arsn: int) -> Wire:
    frame = apply_security(PLAIN, sa, arsn)
    return wire(dataclasses.replace(frame, data=frame.data[:-1] + bytes([frame.data[-1] ^ 1])))


def under(key: bytes, sa: SecurityAssociation = SA1) -> SecurityAssociation:
    return SecurityAssociation(sa.spi, sa.algorithm, key)


# --- authentic frames and refusals ---------------------------------------------------------------


def test_authentic_frames_pass_as_plain_frames_and_are_counted(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    assert auth.verify(*secured(SA1, 7)) == PLAIN
    assert (auth.stats.verified, auth.stats.last_arsn) == (1, 7)
    assert auth.verify(*secured(SA2, 3)) == PLAIN
    assert (auth.stats.verified, auth.stats.last_arsn) == (2, 7)
    assert auth.verify(*secured(SA1, 8)) == PLAIN
    assert (auth.stats.verified, auth.stats.last_arsn) == (3, 8)
    assert rig.discards() == {}
    assert rig.events.raised == []


REFUSALS: list[tuple[str, DiscardReason, Callable[[], Wire], dict[str, int]]] = [
    (
        "TOO_SHORT",
        DiscardReason.AUTH_TOO_SHORT,
        lambda: wire(dataclasses.replace(PLAIN, data=b"\x00")),
        {"spi": 0, "arsn": 0, "last": 0},
    ),
    (
        "TOO_SHORT",
        DiscardReason.AUTH_TOO_SHORT,
        lambda: wire(dataclasses.replace(PLAIN, data=b"\x00\x01\x00\x00\x00\x09")),
        {"spi": 1, "arsn": 9, "last": 5},  # a known SPI: its ARSN and last, as for any fault
    ),
    (
        "UNKNOWN_SPI",
        DiscardReason.AUTH_UNKNOWN_SPI,
        lambda: secured(STRANGER, 20),
        {"spi": 9, "arsn": 0, "last": 0},
    ),
    (
        "BAD_MAC",
        DiscardReason.AUTH_BAD_MAC,
        lambda: forged(SA1, 20),
        {"spi": 1, "arsn": 20, "last": 5},
    ),
    (
        "REPLAY",
        DiscardReason.AUTH_REPLAY,
        lambda: secured(SA1, 5),
        {"spi": 1, "arsn": 5, "last": 5},
    ),
]


@pytest.mark.parametrize(
    ("fault", "reason", "frame", "expected"),
    REFUSALS,
    ids=["TOO_SHORT", "TOO_SHORT known SPI", "UNKNOWN_SPI", "BAD_MAC", "REPLAY"],
)
def test_each_refusal_is_counted_and_reported(
    rig: Rig, fault: str, reason: DiscardReason, frame: Callable[[], Wire], expected: dict[str, int]
) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    assert auth.verify(*secured(SA1, 5)) is not None
    assert auth.verify(*frame()) is None
    assert rig.discards() == {reason: 1}
    assert rig.events.named("AUTH_REFUSED") == [{"fault": fault, "suppressed": 0, **expected}]
    assert (auth.stats.verified, auth.stats.last_arsn) == (1, 5)


def test_refusals_are_reported_once_a_second_per_fault_with_the_rest_counted(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    for t in (0.0, 0.2, 0.5, 0.99):
        rig.clock.now = t
        assert auth.verify(*forged(SA1, 10)) is None
    rig.clock.now = 0.5
    assert auth.verify(*secured(STRANGER, 1)) is None  # another fault has its own second
    reported = [(v["fault"], v["suppressed"]) for v in rig.events.named("AUTH_REFUSED")]
    assert reported == [("BAD_MAC", 0), ("UNKNOWN_SPI", 0)]
    rig.events.take()
    rig.clock.now = 1.0
    assert auth.verify(*forged(SA1, 10)) is None
    rig.clock.now = 1.5
    assert auth.verify(*forged(SA1, 10)) is None
    rig.clock.now = 2.0
    assert auth.verify(*forged(SA1, 10)) is None
    reported = [(v["fault"], v["suppressed"]) for v in rig.events.named("AUTH_REFUSED")]
    assert reported == [("BAD_MAC", 3), ("BAD_MAC", 1)]
    assert rig.discards() == {DiscardReason.AUTH_BAD_MAC: 7, DiscardReason.AUTH_UNKNOWN_SPI: 1}


def test_a_forged_frame_never_moves_the_counter_or_the_ledger(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    assert auth.verify(*secured(SA1, 10)) is not None
    written = rig.ledger.read_bytes()
    assert auth.verify(*forged(SA1, 5000)) is None
    assert rig.ledger.read_bytes() == written
    assert auth.verify(*secured(SA1, 11)) == PLAIN
    assert auth.stats.last_arsn == 11


# --- the ledger and restarts ---------------------------------------------------------------------


def test_every_accepted_frame_is_in_the_ledger_before_it_is_returned(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    assert rig.saved() == [{1: SaState(), 2: SaState()}] * COPIES
    assert auth.verify(*secured(SA1, 100)) is not None
    assert rig.saved() == [{1: SaState(100), 2: SaState()}] * COPIES
    assert auth.verify(*secured(SA2, 7)) is not None
    assert auth.verify(*secured(SA1, 101)) is not None
    assert rig.saved() == [{1: SaState(101), 2: SaState(7)}] * COPIES


@pytest.mark.parametrize("restarts", [1, 3])
def test_a_restart_refuses_no_honest_frame_and_accepts_no_old_one(rig: Rig, restarts: int) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    recorded = [secured(SA1, n) for n in (1, 2, 3)] + [secured(SA2, 1)]
    for frame in recorded:
        assert auth.verify(*frame) is not None
    for _ in range(restarts):
        auth = rig.make(first_boot=False)
        auth.start()
    assert auth.challenges == 0 and rig.events.raised == []
    # The ground goes on where it was: its very next frame on each SA is accepted.
    assert auth.verify(*secured(SA1, 4)) == PLAIN
    assert auth.verify(*secured(SA2, 2)) == PLAIN
    assert all(auth.verify(*frame) is None for frame in recorded)
    assert rig.discards() == {DiscardReason.AUTH_REPLAY: len(recorded)}


def test_each_sa_keeps_its_own_counter_even_at_the_end_of_its_range(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    assert auth.verify(*secured(SA1, MAX_ARSN)) is not None
    assert auth.verify(*secured(SA2, 5)) is not None
    restarted = rig.make(first_boot=False)
    restarted.start()
    assert restarted.verify(*secured(SA1, MAX_ARSN)) is None  # SA 1 is used up
    # SA 2 goes on after a restart, and a new SA (the documented remedy) starts fresh.
    assert restarted.verify(*secured(SA2, 6)) == PLAIN
    create_keys(rig.key_file.with_name("more.toml"), [SA1, SA2, SA3])
    os.replace(rig.key_file.with_name("more.toml"), rig.key_file)
    provisioned = rig.make(first_boot=False)
    provisioned.start()
    # The ledger never saw SA 3: a challenge, which the ground answers with its first frame.
    assert [e["spi"] for e in rig.events.named("AUTH_CHALLENGE")] == [3]
    assert provisioned.verify(*secured(SA3, 1, rig.nonces.given[-1])) == PLAIN
    assert provisioned.verify(*secured(SA2, 7)) == PLAIN


def test_a_state_that_cannot_be_saved_is_reported_once_and_frames_still_pass(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    assert auth.verify(*secured(SA1, 10)) is not None
    real_save = auth.ledger.save

    def disk_full(states: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(auth.ledger, "save", disk_full)
    # Commandable still (a payload that refused every frame could not be told to free space).
    assert auth.verify(*secured(SA1, 11)) is not None
    assert auth.verify(*secured(SA1, 12)) is not None
    assert rig.events.named("AUTH_COUNTER_NOT_SAVED") == [{"spi": 1, "arsn": 11}]
    assert rig.saved() == [{1: SaState(10), 2: SaState()}] * COPIES
    monkeypatch.setattr(auth.ledger, "save", real_save)
    assert auth.verify(*secured(SA1, 13)) is not None
    assert rig.saved() == [{1: SaState(13), 2: SaState()}] * COPIES
    # Reported again only after a save succeeded in between.
    monkeypatch.setattr(auth.ledger, "save", disk_full)
    assert auth.verify(*secured(SA1, 14)) is not None
    assert len(rig.events.named("AUTH_COUNTER_NOT_SAVED")) == 2


# --- a lost state and its challenge --------------------------------------------------------------


def corrupt_every_copy(rig: Rig) -> None:
    rig.ledger.write_bytes(bytes(b ^ 0x55 for b in rig.ledger.read_bytes()))


def remove_the_directory(rig: Rig) -> None:
    shutil.rmtree(rig.ledger.parent)


def remove_the_ledger(rig: Rig) -> None:
    rig.ledger.unlink()


def plant_a_link(rig: Rig) -> None:
    rig.ledger.unlink()
    rig.ledger.symlink_to(rig.key_file)


LOSSES = [corrupt_every_copy, remove_the_directory, remove_the_ledger, plant_a_link]


def announced(rig: Rig) -> list[tuple[int, bytes]]:
    """(SPI, nonce) of each AUTH_CHALLENGE raised, in order."""
    return [(values["spi"], values["nonce"]) for values in rig.events.named("AUTH_CHALLENGE")]


def nonce(rig: Rig, spi: int) -> bytes:
    """The nonce last announced for `spi`: what the ground answers."""
    return [n for announced_spi, n in announced(rig) if announced_spi == spi][-1]


@pytest.mark.parametrize("lose", LOSSES, ids=lambda f: f.__name__)
def test_a_lost_state_is_challenged_and_a_low_answer_reopens_no_replay(
    rig: Rig, lose: Callable[[Rig], None]
) -> None:
    before = rig.make(first_boot=True)
    before.start()
    recorded = [secured(SA1, n) for n in (40, 14103, 22345)]
    for frame in recorded:
        assert before.verify(*frame) is not None
    lose(rig)

    auth = rig.make(first_boot=False)
    assert auth.verify(*secured(SA1, 41)) is None  # nothing accepted even before start()
    rig.events.take()
    auth.start()
    nonces = rig.nonces.given
    assert len(nonces) == 2 and all(len(n) == NONCE_LENGTH for n in nonces)
    assert announced(rig) == [(1, nonces[0]), (2, nonces[1])]
    assert auth.challenges == 2
    assert rig.upsets.total(Outcome.UNCORRECTABLE) == (lose is corrupt_every_copy) * COPIES

    assert all(auth.verify(*frame) is None for frame in recorded)
    assert auth.verify(*secured(SA1, 1000)) is None
    assert auth.verify(*secured(SA1, 41, nonces[1])) is None  # SA 2's nonce
    assert rig.discards() == {DiscardReason.AUTH_BAD_MAC: 6}

    # A ground whose counter was lost too answers low: accepted, and sets the counter.
    assert auth.verify(*secured(SA1, 2, nonces[0])) == PLAIN
    assert rig.events.named("AUTH_CHALLENGE_ANSWERED") == [{"spi": 1, "arsn": 2}]
    assert auth.challenges == 1
    # Every frame recorded before the loss is refused still, whatever its ARSN, now and after
    # any restart: the SA's MACs cover the nonce from now on.
    for restarted in (False, True):
        if restarted:
            auth = rig.make(first_boot=False)
            auth.start()
        assert all(auth.verify(*frame) is None for frame in recorded)
    assert auth.verify(*secured(SA1, 44)) is None  # without the nonce: no longer
    assert auth.verify(*secured(SA1, 3, nonces[0])) == PLAIN
    assert auth.challenges == 1  # SA 2 still waits, with the same nonce as before the restart
    assert nonce(rig, 2) == nonces[1] and len(rig.nonces.given) == 2


def test_on_first_boot_a_missing_ledger_is_new_not_lost(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    assert auth.challenges == 0
    assert rig.events.raised == []
    assert rig.nonces.given == []
    assert auth.verify(*secured(SA1, 1)) == PLAIN


def test_a_damaged_copy_is_outvoted_reported_and_rewritten(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    assert auth.verify(*secured(SA1, 100)) is not None
    data = bytearray(rig.ledger.read_bytes())
    data[SLOT_OCTETS + 9] ^= 0x04  # one bit of copy 1
    rig.ledger.write_bytes(bytes(data))
    again = rig.make(first_boot=False)
    assert again.challenges == 0
    assert rig.upsets.total(Outcome.CORRECTED) == 1
    assert again.verify(*secured(SA1, 100)) is None
    assert again.verify(*secured(SA1, 101)) is not None
    assert rig.saved() == [{1: SaState(101), 2: SaState()}] * COPIES


def test_challenges_are_repeated_and_a_bad_mac_hastens_its_own(rig: Rig) -> None:
    rig.make(first_boot=True)
    remove_the_directory(rig)
    auth = rig.make(first_boot=False)
    auth.start()
    nonces = dict(announced(rig))
    assert sorted(nonces) == [1, 2]
    rig.events.take()

    rig.clock.now = CHALLENGE_REPEAT_S - 0.1
    auth.tick()
    assert announced(rig) == []
    rig.clock.now = CHALLENGE_REPEAT_S
    auth.tick()
    assert [spi for spi, _ in announced(rig)] == [1, 2]
    rig.events.take()

    rig.clock.now = CHALLENGE_REPEAT_S + 0.5  # announced half a second ago: not again yet
    assert auth.verify(*secured(SA1, 7)) is None
    rig.clock.now = CHALLENGE_REPEAT_S + 1.0
    assert auth.verify(*secured(SA1, 8)) is None
    assert auth.verify(*secured(SA1, 9)) is None
    assert [spi for spi, _ in announced(rig)] == [1]
    rig.events.take()

    rig.clock.now = 2 * CHALLENGE_REPEAT_S  # SA 1 announced 9 s ago, SA 2 10 s ago
    auth.tick()
    assert [spi for spi, _ in announced(rig)] == [2]
    rig.events.take()

    assert auth.verify(*secured(SA1, 10, nonces[1])) is not None
    rig.clock.now = 10 * CHALLENGE_REPEAT_S
    auth.tick()
    assert announced(rig) == [(2, nonces[2])]
    # SA 1 answered: its nonce is no challenge any more, so ticks stay quiet about it, but a
    # ground that lost it (a bad MAC on SA 1) is told it again, as AUTH_NONCE.
    rig.events.take()
    rig.clock.now = 11 * CHALLENGE_REPEAT_S
    assert auth.verify(*secured(SA1, 11)) is None
    assert rig.events.named("AUTH_NONCE") == [{"spi": 1, "nonce": nonces[1]}]
    assert auth.verify(*secured(SA1, 12, nonces[1])) == PLAIN


def test_no_nonce_is_announced_for_a_bad_mac_on_an_sa_never_challenged(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    assert auth.verify(*forged(SA1, 3)) is None
    assert [name for name, _ in rig.events.raised] == ["AUTH_REFUSED"]


@pytest.mark.parametrize("damage", ["flip", "remove"])
def test_tick_writes_back_a_ledger_damaged_while_running(rig: Rig, damage: str) -> None:
    auth = rig.make(first_boot=True)
    assert auth.verify(*secured(SA1, 100)) is not None
    if damage == "flip":
        rig.ledger.write_bytes(bytes(b ^ 0x20 for b in rig.ledger.read_bytes()))
        assert rig.saved() == [None] * COPIES
    else:
        rig.ledger.unlink()
    rig.clock.now = LEDGER_CHECK_S - 1
    auth.tick()
    assert not rig.ledger.exists() or rig.saved() == [None] * COPIES
    rig.clock.now = LEDGER_CHECK_S
    auth.tick()
    assert rig.saved() == [{1: SaState(100), 2: SaState()}] * COPIES
    assert rig.upsets.total(Outcome.CORRECTED) == (COPIES if damage == "flip" else 0)
    again = rig.make(first_boot=False)
    assert again.challenges == 0
    assert again.verify(*secured(SA1, 100)) is None
    assert again.verify(*secured(SA1, 101)) is not None


# --- key rotation --------------------------------------------------------------------------------


def test_a_rotated_key_is_saved_then_used_and_the_counter_goes_on(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    assert auth.verify(*secured(SA1, 5)) is not None
    auth.rotate(1, wrap_key(NEW_KEY, SA1))

    saved = {sa.spi: sa for sa in read_keys(rig.key_file)}
    assert saved == {1: under(NEW_KEY), 2: SA2}
    assert stat.S_IMODE(rig.key_file.stat().st_mode) == 0o600
    assert rig.events.named("KEY_ROTATED") == [{"spi": 1}]
    assert auth.stats.rotations == 1

    assert auth.verify(*secured(SA1, 6)) is None
    assert rig.counters.discarded[DiscardReason.AUTH_BAD_MAC] == 1
    assert auth.verify(*secured(under(NEW_KEY), 5)) is None
    assert rig.counters.discarded[DiscardReason.AUTH_REPLAY] == 1
    assert auth.verify(*secured(under(NEW_KEY), 6)) == PLAIN
    assert auth.verify(*secured(SA2, 1)) == PLAIN  # the other SA keeps its key
    # A restart reads the new key from the file, and goes on right after the last ARSN.
    assert rig.make(first_boot=False).verify(*secured(under(NEW_KEY), 7)) == PLAIN


def altered(wrapped: bytes) -> bytes:
    return wrapped[:-1] + bytes([wrapped[-1] ^ 1])


@pytest.mark.parametrize(
    ("spi", "wrapped", "failure"),
    [
        (7, wrap_key(NEW_KEY, SA1), "KEY_UNKNOWN_SPI"),
        (1, wrap_key(NEW_KEY, SA2), "KEY_UNWRAP_FAILED"),
        (1, altered(wrap_key(NEW_KEY, SA1)), "KEY_UNWRAP_FAILED"),
        (1, wrap_key(NEW_KEY[:16], SA1), "KEY_UNWRAP_FAILED"),  # HMAC-SHA-256 needs 32
    ],
    ids=["unknown SPI", "another key", "altered", "wrong length"],
)
def test_a_refused_rotation_changes_nothing(
    rig: Rig, spi: int, wrapped: bytes, failure: str
) -> None:
    auth = rig.make(first_boot=True)
    before = rig.key_file.read_bytes()
    with pytest.raises(KeyRotationError) as raised:
        auth.rotate(spi, wrapped)
    assert raised.value.failure == failure
    assert str(raised.value)
    assert rig.key_file.read_bytes() == before
    assert auth.verify(*secured(SA1, 1)) == PLAIN
    assert (auth.stats.rotations, rig.events.named("KEY_ROTATED")) == (0, [])


def test_a_key_that_cannot_be_saved_is_not_used(rig: Rig, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    key_file = blocker / "uplink-keys.toml"
    auth = rig.make(first_boot=True, key_file=key_file)
    with pytest.raises(KeyRotationError) as raised:
        auth.rotate(1, wrap_key(NEW_KEY, SA1))
    assert raised.value.failure == "KEY_NOT_SAVED"
    assert str(key_file) in str(raised.value)
    assert auth.verify(*secured(under(NEW_KEY), 1)) is None
    assert auth.verify(*secured(SA1, 2)) == PLAIN
    assert (auth.stats.rotations, rig.events.named("KEY_ROTATED")) == (0, [])


# --- KEY_ROTATE through the command router -------------------------------------------------------

APID = 100


class Commanding:
    """A router with the security service, and the verification reports it sends."""

    def __init__(self, auth: UplinkAuthenticator | None) -> None:
        self.sent: list[PusTm] = []
        tm = TmPublisher(APID, lambda vc, raw: self.sent.append(PusTm.unpack(raw)), lambda: 0.0)
        self.router = CommandRouter(APID, tm, LinkCounters())
        SecurityService(D, auth).register(self.router)

    def key_rotate(self, spi: int, wrapped: bytes) -> list[VerificationReport]:
        data = D.command("KEY_ROTATE").encode({"spi": spi, "wrapped": wrapped})
        tc = PusTc(APID, 133, 1, data, seq_count=1, source_id=7, ack_flags=AckFlags.ALL)
        self.router.dispatch(tc.pack())
        reports = [VerificationReport.unpack(tm.subtype, tm.source_data) for tm in self.sent]
        self.sent.clear()
        return reports


def test_key_rotate_is_refused_at_start_when_authentication_is_off() -> None:
    reports = Commanding(None).key_rotate(1, wrap_key(NEW_KEY, SA1))
    assert [(r.stage, r.success) for r in reports] == [
        (Stage.ACCEPTANCE, True),
        (Stage.START, False),
    ]
    assert reports[-1].failure_code == D.failure_named("AUTHENTICATION_IS_OFF").code
    assert b"authentication is off" in reports[-1].failure_data


def test_key_rotate_reports_completion_or_the_rotation_failure(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    commanding = Commanding(auth)
    failed = commanding.key_rotate(7, wrap_key(NEW_KEY, SA1))[-1]
    assert (failed.stage, failed.success) == (Stage.COMPLETION, False)
    assert failed.failure_code == D.failure_named("KEY_UNKNOWN_SPI").code
    done = commanding.key_rotate(1, wrap_key(NEW_KEY, SA1))[-1]
    assert (done.stage, done.success) == (Stage.COMPLETION, True)
    assert {sa.spi: sa for sa in read_keys(rig.key_file)}[1] == under(NEW_KEY)
