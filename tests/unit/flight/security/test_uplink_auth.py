"""The payload's uplink authenticator through its real parts (key file, triplicated store, link
counters): refusals counted and reported, the anti-replay counter reserved across restarts and
recovered by a challenge when lost, key rotation, and KEY_ROTATE through the command router."""

from __future__ import annotations

import dataclasses
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flight.counters import LinkCounters
from flight.protection.triplicate import FILE_NAMES, FileState, Medium, TripleStore, read_file
from flight.protection.upsets import UpsetLog
from flight.router import CommandRouter
from flight.security.uplink_auth import (
    ARSN_BLOCK,
    CHALLENGE_OCTETS,
    CHALLENGE_REPEAT_S,
    LOST_KEY,
    RESERVED_KEY,
    STATE_DIR,
    STORE_CHECK_S,
    KeyRotationError,
    UplinkAuthenticator,
)
from flight.services.security import SecurityService
from flight.telemetry import TmPublisher
from spacelink.errors import DiscardReason
from spacelink.keystore import create_keys, read_keys
from spacelink.pus import Stage, VerificationReport
from spacelink.sdls import Algorithm, SecurityAssociation, apply_security, wrap_key
from spacelink.spacepacket import AckFlags, PusTc, PusTm
from spacelink.tcframe import TcFrame
from telemetry_defs.loader import default_dictionary

D = default_dictionary()
SA1 = SecurityAssociation(1, Algorithm.HMAC_SHA256, bytes(range(32)))
SA2 = SecurityAssociation(2, Algorithm.AES_CMAC, bytes(range(100, 116)))
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

    def make(self, *, first_boot: bool, key_file: Path | None = None) -> UplinkAuthenticator:
        self.counters = LinkCounters()
        return UplinkAuthenticator(
            read_keys(self.key_file),
            key_file or self.key_file,
            self.state_dir,
            UpsetLog(),
            self.counters,
            self.events,
            self.clock,
            first_boot=first_boot,
            random_octets=self.nonces,
        )

    @property
    def store_dir(self) -> Path:
        return self.state_dir / STATE_DIR

    def saved(self) -> list[int | None]:
        """The reserved ARSN each file on disk holds (None: not intact)."""
        files = [read_file(self.store_dir / name) for name in FILE_NAMES]
        return [
            int(f.records[RESERVED_KEY])
            if f.state is FileState.INTACT and RESERVED_KEY in f.records
            else None
            for f in files
        ]

    def discards(self) -> dict[DiscardReason, int]:
        return {reason: n for reason, n in self.counters.discarded.items() if n}


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def wire(frame: TcFrame) -> Wire:
    """The frame as the uplink hands it over: parsed from its octets, with its header."""
    raw = frame.pack()
    return TcFrame.unpack(raw), raw[:5]


def secured(sa: SecurityAssociation, arsn: int, challenge: bytes = b"") -> Wire:
    return wire(apply_security(PLAIN, sa, arsn, challenge))


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
    ("fault", "reason", "frame", "expected"), REFUSALS, ids=[r[0] for r in REFUSALS]
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


def test_a_forged_frame_never_moves_the_counter_or_the_reservation(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    assert auth.verify(*secured(SA1, 10)) is not None
    assert auth.verify(*forged(SA1, 10 + 2 * ARSN_BLOCK)) is None
    assert auth.verify(*secured(SA1, 11)) == PLAIN
    assert auth.stats.last_arsn == 11
    assert rig.saved() == [10 + ARSN_BLOCK] * 3


# --- the reservation and restarts ----------------------------------------------------------------


def test_the_reservation_is_on_disk_before_a_frame_at_or_above_it_is_returned(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    assert rig.saved() == [-1] * 3
    assert auth.verify(*secured(SA1, 100)) is not None
    assert rig.saved() == [100 + ARSN_BLOCK] * 3
    written = [path.read_bytes() for path in sorted(rig.store_dir.iterdir())]
    # Frames below the reservation cost no write, on any SA.
    assert auth.verify(*secured(SA1, 99 + ARSN_BLOCK)) is not None
    assert auth.verify(*secured(SA2, 50)) is not None
    assert [path.read_bytes() for path in sorted(rig.store_dir.iterdir())] == written
    assert auth.verify(*secured(SA2, 100 + ARSN_BLOCK)) is not None
    assert rig.saved() == [100 + 2 * ARSN_BLOCK] * 3


def test_a_counter_that_cannot_be_saved_is_reported_once_and_frames_still_pass(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    assert auth.verify(*secured(SA1, 10)) is not None
    real_update = auth.store.update

    def disk_full(values: dict[str, Any]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(auth.store, "update", disk_full)
    # Commandable still (a payload that refused every frame could not be told to free space).
    assert auth.verify(*secured(SA1, 10 + ARSN_BLOCK)) is not None
    assert auth.verify(*secured(SA1, 11 + ARSN_BLOCK)) is not None
    assert rig.events.named("AUTH_COUNTER_NOT_SAVED") == [
        {"reserved": 10 + 2 * ARSN_BLOCK, "saved": 10 + ARSN_BLOCK}
    ]
    assert rig.saved() == [10 + ARSN_BLOCK] * 3
    monkeypatch.setattr(auth.store, "update", real_update)
    assert auth.verify(*secured(SA1, 12 + ARSN_BLOCK)) is not None
    assert rig.saved() == [12 + 2 * ARSN_BLOCK] * 3
    # Reported again only after a save succeeded in between.
    monkeypatch.setattr(auth.store, "update", disk_full)
    assert auth.verify(*secured(SA1, 12 + 2 * ARSN_BLOCK)) is not None
    assert len(rig.events.named("AUTH_COUNTER_NOT_SAVED")) == 2


def test_the_reservation_stops_at_the_last_arsn(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    last = 2**32 - 1
    assert auth.verify(*secured(SA1, last - 10)) is not None
    assert rig.saved() == [last] * 3
    assert auth.verify(*secured(SA1, last)) is not None
    restarted = rig.make(first_boot=False)
    restarted.start()
    assert restarted.verify(*secured(SA1, last)) is None
    assert rig.events.named("AUTH_REFUSED")[-1]["last"] == last


def test_after_a_restart_no_arsn_up_to_the_reservation_is_accepted(rig: Rig) -> None:
    first = rig.make(first_boot=True)
    first.start()
    assert first.verify(*secured(SA1, 100)) is not None
    reserved = 100 + ARSN_BLOCK

    again = rig.make(first_boot=False)
    again.start()
    assert again.challenges == 0
    assert again.verify(*secured(SA1, 150)) is None  # never seen, but might have been
    assert again.verify(*secured(SA2, reserved)) is None
    assert rig.discards() == {DiscardReason.AUTH_REPLAY: 2}
    refused = rig.events.named("AUTH_REFUSED")[0]
    assert (refused["fault"], refused["last"]) == ("REPLAY", reserved)  # where the ground goes on
    assert again.verify(*secured(SA1, reserved + 1)) == PLAIN
    assert again.verify(*secured(SA2, reserved + 1)) == PLAIN


# --- a lost counter and its challenge ------------------------------------------------------------


def corrupt_every_file(rig: Rig) -> None:
    for path in rig.store_dir.iterdir():
        path.write_bytes(bytes(b ^ 0x55 for b in path.read_bytes()))


def remove_the_store(rig: Rig) -> None:
    shutil.rmtree(rig.store_dir)


def remove_every_file(rig: Rig) -> None:
    for path in rig.store_dir.iterdir():
        path.unlink()


LOSSES = [corrupt_every_file, remove_the_store, remove_every_file]


def announced(rig: Rig) -> list[tuple[int, bytes]]:
    """(SPI, nonce) of each AUTH_CHALLENGE raised, in order."""
    return [(values["spi"], values["nonce"]) for values in rig.events.named("AUTH_CHALLENGE")]


def nonce(rig: Rig, spi: int) -> bytes:
    """The nonce last announced for `spi`: what the ground answers."""
    return [n for announced_spi, n in announced(rig) if announced_spi == spi][-1]


@pytest.mark.parametrize("lose", LOSSES, ids=lambda f: f.__name__)
def test_a_lost_counter_is_challenged_and_recovered_only_by_the_answer(
    rig: Rig, lose: Callable[[Rig], None]
) -> None:
    before = rig.make(first_boot=True)
    before.start()
    recorded = secured(SA1, 40)
    assert before.verify(*recorded) is not None
    lose(rig)

    auth = rig.make(first_boot=False)
    assert auth.verify(*secured(SA1, 41)) is None  # nothing accepted even before start()
    rig.events.take()
    auth.start()
    nonces = rig.nonces.given
    assert len(nonces) == 2 and all(len(n) == CHALLENGE_OCTETS for n in nonces)
    assert announced(rig) == [(1, nonces[0]), (2, nonces[1])]
    assert auth.challenges == 2

    assert auth.verify(*recorded) is None
    assert auth.verify(*secured(SA1, 1000)) is None
    assert auth.verify(*secured(SA1, 41, challenge=nonces[1])) is None  # SA 2's nonce
    assert rig.discards() == {DiscardReason.AUTH_BAD_MAC: 4}

    # The ground's counter went on from 41: its answer sets the payload's.
    assert auth.verify(*secured(SA1, 42, challenge=nonces[0])) == PLAIN
    assert rig.events.named("AUTH_CHALLENGE_ANSWERED") == [{"spi": 1, "arsn": 42}]
    assert auth.challenges == 1
    # The ground may not know yet that its answer arrived: with or without the nonce.
    assert auth.verify(*secured(SA1, 43, challenge=nonces[0])) == PLAIN
    assert auth.verify(*secured(SA1, 44)) == PLAIN
    assert auth.verify(*recorded) is None
    assert rig.counters.discarded[DiscardReason.AUTH_REPLAY] == 1


def test_on_first_boot_a_missing_store_is_new_not_lost(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    auth.start()
    assert auth.challenges == 0
    assert rig.events.raised == []
    assert rig.nonces.given == []
    assert auth.verify(*secured(SA1, 0)) == PLAIN


def test_a_restart_before_every_challenge_is_answered_challenges_again(rig: Rig) -> None:
    before = rig.make(first_boot=True)
    recorded = secured(SA1, 40)
    assert before.verify(*recorded) is not None
    remove_the_store(rig)
    rig.make(first_boot=False).start()  # no frame came before this restart
    lost = rig.make(first_boot=False)
    lost.start()
    assert lost.challenges == 2
    assert lost.verify(*secured(SA1, 41, challenge=nonce(rig, 1))) is not None

    # SA 2 never answered: its counter, and so the shared reservation, are still unknown.
    again = rig.make(first_boot=False)
    again.start()
    assert again.challenges == 2
    assert again.verify(*recorded) is None
    assert again.verify(*secured(SA2, 1, challenge=nonce(rig, 2))) is not None
    assert again.verify(*secured(SA1, 42, challenge=nonce(rig, 1))) is not None
    assert again.challenges == 0

    recovered = rig.make(first_boot=False)
    recovered.start()
    assert recovered.challenges == 0
    assert recovered.verify(*recorded) is None
    assert recovered.verify(*secured(SA1, 42 + ARSN_BLOCK)) is None
    assert recovered.verify(*secured(SA1, 43 + ARSN_BLOCK)) == PLAIN


def test_challenges_are_repeated_and_a_bad_mac_hastens_its_own(rig: Rig) -> None:
    rig.make(first_boot=True)
    remove_the_store(rig)
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

    assert auth.verify(*secured(SA1, 10, challenge=nonces[1])) is not None
    rig.clock.now = 10 * CHALLENGE_REPEAT_S
    auth.tick()
    assert announced(rig) == [(2, nonces[2])]


def test_tick_writes_back_a_counter_the_store_lost_while_running(rig: Rig) -> None:
    auth = rig.make(first_boot=True)
    assert auth.verify(*secured(SA1, 100)) is not None
    reserved = 100 + ARSN_BLOCK

    def flip(octets: bytearray) -> None:
        at = octets.index(RESERVED_KEY.encode())
        octets[at] ^= 0x20

    for site in auth.store.fault_sites():
        if site.medium is Medium.FILE or site.key == RESERVED_KEY:
            auth.store.corrupt(site, flip)
    assert rig.saved() == [None] * 3

    rig.clock.now = STORE_CHECK_S
    auth.tick()
    assert rig.saved() == [reserved] * 3
    again = rig.make(first_boot=False)
    assert again.challenges == 0
    assert again.verify(*secured(SA1, reserved)) is None
    assert again.verify(*secured(SA1, reserved + 1)) is not None


def test_tick_writes_back_a_pending_challenge_the_store_forgot(rig: Rig) -> None:
    rig.make(first_boot=True)
    remove_the_store(rig)
    auth = rig.make(first_boot=False)
    auth.start()
    for site in auth.store.fault_sites():
        if site.medium is Medium.MEMORY and site.key == LOST_KEY:
            auth.store.corrupt(site, lambda octets: octets.__setitem__(-2, ord("X")))
    for path in rig.store_dir.iterdir():
        path.write_bytes(path.read_bytes().replace(b"true", b"trux"))
    rig.clock.now = STORE_CHECK_S
    auth.tick()
    store = TripleStore(rig.store_dir, {RESERVED_KEY: -1, LOST_KEY: False})
    assert (store.loaded.lost, store.get(LOST_KEY)) == ((), True)
    assert rig.make(first_boot=False).challenges == 2


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
    # A restart reads the new key from the file.
    assert rig.make(first_boot=False).verify(*secured(under(NEW_KEY), ARSN_BLOCK + 6)) == PLAIN


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
