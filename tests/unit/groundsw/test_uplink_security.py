"""The ground's end of the authenticated uplink: ARSNs reserved in a counter file (never handed
out twice, across processes and restarts), frames that the payload's SecurityProcessor accepts,
and the payload's security events (real event packets) keeping the ground in step."""

from __future__ import annotations

import itertools
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from groundsw.uplink_security import (
    ARSN_BLOCK,
    ARSN_HEADROOM,
    ArsnCounter,
    RefusalLog,
    UplinkKeyError,
    UplinkSecurity,
    counter_path,
    security_event_sink,
)
from spacelink.icd import PAYLOAD_APID, SPACECRAFT_ID, TC_VCID
from spacelink.keystore import write_keys
from spacelink.sdls import (
    ARSN_LENGTH,
    MAX_ARSN,
    Algorithm,
    SaState,
    SecurityAssociation,
    SecurityError,
    SecurityFault,
    SecurityProcessor,
)
from spacelink.spacepacket import PusTc, PusTm
from spacelink.tcframe import TcFrame
from telemetry_defs.loader import default_dictionary
from telemetry_defs.model import EVENT_SERVICE
from tests.unit.groundsw.fakes import umask

D = default_dictionary()
REPO = Path(__file__).resolve().parents[3]

KEYS = {
    Algorithm.HMAC_SHA256: bytes(range(32)),
    Algorithm.AES_CMAC: bytes(range(100, 132)),
    Algorithm.AES_GCM: bytes(range(200, 216)),
}
SAS = [SecurityAssociation(spi, algorithm, KEYS[algorithm]) for spi, algorithm in
       ((1, Algorithm.HMAC_SHA256), (2, Algorithm.AES_CMAC), (3, Algorithm.AES_GCM))]  # fmt: skip
PING = PusTc(PAYLOAD_APID, 17, 1, b"", seq_count=5, source_id=1).pack()
NONCE = bytes(range(40, 56))


def frame(seq: int = 0) -> TcFrame:
    return TcFrame(scid=SPACECRAFT_ID, vcid=TC_VCID, seq=seq, data=PING)


def on_the_wire(secured: TcFrame) -> TcFrame:
    """The frame as the payload receives it: packed, then parsed back."""
    return TcFrame.unpack(secured.pack())


def arsn_of(secured: TcFrame, sa: SecurityAssociation) -> int:
    at = sa.header_length - ARSN_LENGTH
    return int.from_bytes(secured.data[at : at + ARSN_LENGTH], "big")


def ground(
    tmp_path: Path, sa: SecurityAssociation = SAS[0], block: int = ARSN_BLOCK
) -> UplinkSecurity:
    return UplinkSecurity(sa, ArsnCounter(tmp_path / "keys.toml.arsn", block))


def increasing(values: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def one_sentence(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message
    assert ". " not in message.rstrip(".")
    return message


# -- the ARSN counter ---------------------------------------------------------------------------


def test_arsns_strictly_increase_across_reservations(tmp_path: Path) -> None:
    counter = ArsnCounter(tmp_path / "c.arsn", block=4)
    taken = [counter.take() for _ in range(30)]
    assert increasing(taken)
    # The file holds the end of the block in use: what a restart goes on from.
    assert int((tmp_path / "c.arsn").read_text()) > taken[-1]


def test_a_restarted_counter_starts_above_everything_handed_out(tmp_path: Path) -> None:
    path = tmp_path / "c.arsn"
    first = ArsnCounter(path, block=8)
    before = [first.take() for _ in range(3)]
    restarted = ArsnCounter(path, block=8)  # a second process, or this one after a crash
    after = [restarted.take() for _ in range(20)]
    # What `first` reserved but has not used yet is still its own.
    rest = [first.take() for _ in range(20)]
    assert min(after) > max(before)
    assert len(set(before + after + rest)) == len(before + after + rest)
    again = ArsnCounter(path, block=8)
    assert again.take() > max(before + after + rest)


_TAKER = """
import sys
from pathlib import Path
from groundsw.uplink_security import ArsnCounter
counter = ArsnCounter(Path(sys.argv[1]), block=int(sys.argv[2]))
print("ready", flush=True)
sys.stdin.readline()
print(" ".join(str(counter.take()) for _ in range(int(sys.argv[3]))), flush=True)
"""


def test_two_processes_on_one_counter_file_never_share_an_arsn(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml.arsn"
    takers = [
        subprocess.Popen(
            [sys.executable, "-c", _TAKER, str(path), "3", "600"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for taker in takers:  # both started before either takes: their reservations interleave
            assert taker.stdout is not None and taker.stdout.readline() == "ready\n"
        for taker in takers:
            assert taker.stdin is not None
            taker.stdin.write("go\n")
            taker.stdin.flush()
        outputs = [taker.communicate(timeout=120)[0] for taker in takers]
    finally:
        for taker in takers:
            taker.kill()
    assert all(taker.returncode == 0 for taker in takers)
    runs = [[int(n) for n in out.split()] for out in outputs]
    for run in runs:
        assert len(run) == 600
        assert increasing(run)
    everything = runs[0] + runs[1]
    assert len(set(everything)) == len(everything)
    assert ArsnCounter(path).take() > max(everything)


def test_the_counter_file_is_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml.arsn"
    with umask(0):  # the mode is the code's, not a umask's
        ArsnCounter(path).take()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("text", ["twelve\n", "0x10\n", "12 13\n"])
def test_a_counter_file_that_is_not_a_number_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "keys.toml.arsn"
    path.write_text(text)
    with pytest.raises(UplinkKeyError) as refused:
        ArsnCounter(path).take()
    message = one_sentence(refused.value)
    assert str(path) in message and "not a number" in message
    assert path.read_text() == text  # left for the operator to look at


def test_a_counter_at_the_end_of_its_range_asks_for_a_new_association(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml.arsn"
    path.write_text(f"{MAX_ARSN - 4}\n")
    counter = ArsnCounter(path, block=4)
    last = [counter.take() for _ in range(4)]  # the last block that fits is used up
    assert last == list(range(MAX_ARSN - 4, MAX_ARSN))
    with pytest.raises(UplinkKeyError) as refused:
        counter.take()
    assert "provision the payload with a new one" in one_sentence(refused.value)
    with pytest.raises(UplinkKeyError):  # and a restart does not get round it
        ArsnCounter(path, block=4).take()


def test_skip_past_moves_only_forwards(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml.arsn"
    counter = ArsnCounter(path, block=16)
    assert counter.take() == 1
    counter.skip_past(5)  # inside the block: no new reservation needed
    assert counter.take() == 6
    counter.skip_past(3)  # behind: ignored
    assert counter.take() == 7
    counter.skip_past(7)  # the last handed out: the next is above it anyway
    assert counter.take() == 8
    counter.skip_past(10_000)  # beyond the block: reserved from there, in the file too
    assert counter.take() == 10_001
    assert ArsnCounter(path).take() > 10_001


def test_skip_past_near_the_end_asks_for_a_rotation(tmp_path: Path) -> None:
    counter = ArsnCounter(tmp_path / "keys.toml.arsn")
    counter.skip_past(MAX_ARSN - 10)
    with pytest.raises(UplinkKeyError):
        counter.take()


# -- securing frames ----------------------------------------------------------------------------


@pytest.mark.parametrize("sa", SAS, ids=lambda sa: sa.algorithm.name)
def test_secured_frames_verify_with_the_payloads_processor(
    tmp_path: Path, sa: SecurityAssociation
) -> None:
    security = ground(tmp_path, sa, block=4)
    payload = SecurityProcessor([sa])
    arsns: list[int] = []
    for seq in range(10):
        original = frame(seq)
        verified = payload.process(on_the_wire(security.secure(original)))
        assert verified.frame == original
        assert verified.spi == sa.spi
        arsns.append(verified.arsn)
    # A retransmission is secured again, with a new ARSN: the payload takes it, not a replay.
    resent = payload.process(on_the_wire(security.secure(frame(9))))
    assert resent.frame == frame(9)
    assert increasing([*arsns, resent.arsn])
    assert security.overhead == sa.overhead


def test_threads_securing_at_once_never_share_an_arsn(tmp_path: Path) -> None:
    security = ground(tmp_path, block=8)
    found: list[list[int]] = [[] for _ in range(4)]

    def send(mine: list[int]) -> None:
        for _ in range(200):
            mine.append(arsn_of(security.secure(frame()), security.sa))

    threads = [threading.Thread(target=send, args=(mine,)) for mine in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [arsn for mine in found for arsn in mine]
    assert len(set(everything)) == len(everything) == 800


def test_a_replay_refusal_moves_the_counter_above_the_payloads(tmp_path: Path) -> None:
    sa = SAS[0]
    security = ground(tmp_path, sa)
    payload = SecurityProcessor([sa])
    payload.process(on_the_wire(security.secure(frame())))
    # The ground's counter file was lost or is an old copy: the payload is far ahead.
    payload = SecurityProcessor([sa], {sa.spi: SaState(5000)})
    with pytest.raises(SecurityError) as refused:
        payload.process(on_the_wire(security.secure(frame())))
    assert refused.value.fault is SecurityFault.REPLAY
    security.on_event(
        "AUTH_REFUSED",
        {"fault": "REPLAY", "spi": sa.spi, "arsn": refused.value.arsn, "last": 5000},
    )
    verified = payload.process(on_the_wire(security.secure(frame())))
    assert verified.arsn > 5000


def test_replay_claims_that_are_not_followed(tmp_path: Path) -> None:
    security = ground(tmp_path)
    security.secure(frame())
    at = security.counter.next
    too_far = MAX_ARSN - ARSN_HEADROOM + 1
    for name, values in [
        ("AUTH_REFUSED", {"fault": "REPLAY", "spi": 1, "last": too_far}),  # stale or forged
        ("AUTH_REFUSED", {"fault": "REPLAY", "spi": 2, "last": 9000}),  # another SA's
        ("AUTH_REFUSED", {"fault": "BAD_MAC", "spi": 1, "last": 9000}),  # not about the counter
        ("AUTH_REFUSED", {"fault": "REPLAY", "spi": 1, "last": 0}),  # behind: never back
    ]:
        security.on_event(name, values)
        assert security.counter.next == at, (name, values)
    security.on_event("AUTH_REFUSED", {"fault": "REPLAY", "spi": 1, "last": too_far - 1})
    assert security.counter.next == too_far


@pytest.mark.parametrize("sa", SAS, ids=lambda sa: sa.algorithm.name)
def test_frames_answer_the_payloads_challenge_and_cover_its_nonce_for_good(
    tmp_path: Path, sa: SecurityAssociation
) -> None:
    security = ground(tmp_path, sa)
    challenging = SecurityProcessor([sa])
    challenging.set_challenge(sa.spi, NONCE)
    with pytest.raises(SecurityError) as refused:  # the ground does not know the nonce yet
        challenging.process(on_the_wire(security.secure(frame())))
    assert refused.value.fault is SecurityFault.BAD_MAC
    security.on_event("AUTH_CHALLENGE", {"spi": sa.spi + 10, "nonce": NONCE})  # not ours
    SecurityProcessor([sa]).process(on_the_wire(security.secure(frame())))
    security.on_event("AUTH_CHALLENGE", {"spi": sa.spi, "nonce": NONCE})
    answer = security.secure(frame())
    assert challenging.process(on_the_wire(answer)).arsn == arsn_of(answer, sa)
    assert challenging.challenge(sa.spi) is None
    # The nonce is part of the SA now: after the answer, and in every later ground process.
    security.on_event("AUTH_CHALLENGE_ANSWERED", {"spi": sa.spi, "arsn": arsn_of(answer, sa)})
    challenging.process(on_the_wire(security.secure(frame())))
    later = ground(tmp_path, sa)
    assert later.nonce == NONCE
    challenging.process(on_the_wire(later.secure(frame())))


def test_a_ground_that_lost_the_nonce_takes_it_from_auth_nonce(tmp_path: Path) -> None:
    sa = SAS[0]
    payload = SecurityProcessor([sa], {sa.spi: SaState(1, NONCE)})
    security = ground(tmp_path, sa)  # a fresh counter file: no nonce
    with pytest.raises(SecurityError):
        payload.process(on_the_wire(security.secure(frame())))
    security.on_event("AUTH_NONCE", {"spi": sa.spi, "nonce": NONCE})
    assert payload.process(on_the_wire(security.secure(frame()))).arsn > 1
    assert counter_path(tmp_path / "keys.toml").read_text().splitlines()[1:] == [
        f"nonce {sa.spi} {NONCE.hex()}"
    ]


def test_the_counter_file_keeps_each_sas_nonce_beside_the_counter(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml.arsn"
    counter = ArsnCounter(path, block=4)
    counter.take()
    counter.save_nonce(7, NONCE)
    counter.save_nonce(2, bytes(16))
    assert path.read_text() == f"5\nnonce 2 {bytes(16).hex()}\nnonce 7 {NONCE.hex()}\n"
    for _ in range(4):  # a new block keeps the nonces
        counter.take()
    assert path.read_text().splitlines()[0] == "9"
    assert ArsnCounter(path).nonce(7) == NONCE and ArsnCounter(path).nonce(3) == b""


@pytest.mark.parametrize("line", ["nonce 1 abcd", "nonce x 00", "epoch 1 " + "00" * 16])
def test_a_counter_file_with_a_bad_line_is_refused(tmp_path: Path, line: str) -> None:
    path = tmp_path / "keys.toml.arsn"
    path.write_text(f"17\n{line}\n")
    with pytest.raises(UplinkKeyError) as refused:
        ArsnCounter(path).take()
    message = one_sentence(refused.value)
    assert str(path) in message and "line 2" in message


def event_tm(name: str, values: dict[str, object]) -> PusTm:
    """The payload's event packet, built with the dictionary."""
    severity, data = D.encode_event(name, values)
    return PusTm(PAYLOAD_APID, EVENT_SERVICE, int(severity), data)


def test_the_packet_sink_follows_the_payloads_event_packets(tmp_path: Path) -> None:
    sa = SAS[0]
    security = ground(tmp_path, sa)
    sink = security_event_sink(D, security.on_event)
    security.secure(frame())
    at = security.counter.next
    refused = {"spi": sa.spi, "arsn": 3, "last": 7000, "suppressed": 0}
    replay = event_tm("AUTH_REFUSED", {**refused, "fault": "REPLAY"})
    ignored = [
        event_tm("AUTH_REFUSED", {**refused, "fault": "BAD_MAC"}),
        event_tm("KEY_ROTATED", {"spi": sa.spi}),
        PusTm(PAYLOAD_APID, EVENT_SERVICE, replay.subtype, replay.source_data[:-3]),  # cut short
        PusTm(PAYLOAD_APID, EVENT_SERVICE, replay.subtype, b"\xff\xff"),  # unknown event ID
        PusTm(PAYLOAD_APID, 3, 25, b"\x00\x07"),  # not an event at all
    ]
    for tm in ignored:
        sink(tm, tm.pack(), 0.0)
        assert security.counter.next == at
    sink(replay, replay.pack(), 0.0)
    assert security.counter.next == 7001

    challenging = SecurityProcessor([sa], {sa.spi: SaState(7000)})
    challenging.set_challenge(sa.spi, NONCE)
    challenge = event_tm("AUTH_CHALLENGE", {"spi": sa.spi, "nonce": NONCE})
    sink(challenge, challenge.pack(), 0.0)
    answer = security.secure(frame())
    assert challenging.process(on_the_wire(answer)).arsn == 7001
    assert challenging.process(on_the_wire(security.secure(frame()))).arsn == 7002


# -- what the payload said ----------------------------------------------------------------------


def refused_event(fault: str, spi: int = 1, **values: int) -> dict[str, object]:
    return {"fault": fault, "spi": spi, "arsn": 9, "last": 12, "suppressed": 0, **values}


def test_refusals_of_our_sa_are_explained_in_one_sentence(tmp_path: Path) -> None:
    log = RefusalLog(1, tmp_path / "keys.toml.arsn")
    assert log.explain() is None
    log.on_event("AUTH_REFUSED", refused_event("BAD_MAC", spi=2))  # another station's
    log.on_event("AUTH_CHALLENGE", {"spi": 1, "nonce": NONCE})
    assert log.explain() is None
    log.on_event("AUTH_REFUSED", refused_event("BAD_MAC", suppressed=2))
    said = one_sentence(AssertionError(log.explain()))
    assert said.startswith("the payload refused 3 of our frames: the MAC does not verify")
    assert "SPI 1" in said
    log.on_event("AUTH_REFUSED", refused_event("REPLAY"))
    said = str(log.explain())
    assert "as a replay" in said and "ARSN 9 is not above 12" in said and "keys.toml.arsn" in said
    log.on_event("AUTH_REFUSED", refused_event("UNKNOWN_SPI"))
    assert "--spi" in str(log.explain())
    log.on_event("AUTH_REFUSED", refused_event("REPLAY", last=MAX_ARSN))
    assert "used up" in one_sentence(AssertionError(log.explain()))
    log.answered()  # the ground caught up: those refusals explain no later silence
    assert log.explain() is None


def test_refusals_of_an_unauthenticated_ground_point_at_the_keys() -> None:
    log = RefusalLog(None)
    log.on_event("AUTH_REFUSED", refused_event("UNKNOWN_SPI", spi=6244))
    said = one_sentence(AssertionError(log.explain()))
    assert "unauthenticated" in said and "--keys" in said


def test_rekey_switches_to_the_new_key_and_the_counter_goes_on(tmp_path: Path) -> None:
    sa = SAS[1]
    security = ground(tmp_path, sa)
    payload = SecurityProcessor([sa])
    before = payload.process(on_the_wire(security.secure(frame()))).arsn
    new_key = bytes(range(50, 82))
    security.rekey(new_key)
    assert security.sa == SecurityAssociation(sa.spi, sa.algorithm, new_key)
    after = on_the_wire(security.secure(frame()))
    with pytest.raises(SecurityError) as refused:
        SecurityProcessor([sa]).process(after)
    assert refused.value.fault is SecurityFault.BAD_MAC
    payload.replace_key(sa.spi, new_key)
    assert payload.process(after).arsn > before


# -- from a key file ----------------------------------------------------------------------------


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    write_keys(path, [SAS[0], SAS[2]])
    return path


def test_from_key_file_takes_the_first_sa_or_the_one_named(tmp_path: Path) -> None:
    path = key_file(tmp_path)
    first = UplinkSecurity.from_key_file(path)
    assert first.sa == SAS[0]
    chosen = UplinkSecurity.from_key_file(path, spi=3)
    assert chosen.sa == SAS[2]
    # Its counter lives beside the key file.
    assert chosen.counter.path == counter_path(path) == tmp_path / "keys.toml.arsn"
    chosen.secure(frame())
    assert counter_path(path).is_file()
    assert first.secure(frame()) != chosen.secure(frame())


def test_from_key_file_without_the_spi_lists_the_files_spis(tmp_path: Path) -> None:
    path = key_file(tmp_path)
    with pytest.raises(UplinkKeyError) as refused:
        UplinkSecurity.from_key_file(path, spi=2)
    message = one_sentence(refused.value)
    assert str(path) in message and "SPI 2" in message and "1, 3" in message


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_from_key_file_refuses_a_file_others_can_read(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path)
    path.chmod(mode)
    with pytest.raises(UplinkKeyError) as refused:
        UplinkSecurity.from_key_file(path)
    assert "chmod 600" in one_sentence(refused.value)
    assert not counter_path(path).exists()


def test_from_key_file_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UplinkKeyError) as refused:
        UplinkSecurity.from_key_file(tmp_path / "none.toml")
    assert "does not exist" in one_sentence(refused.value)


def test_frames_secured_after_a_restart_are_not_replays(tmp_path: Path) -> None:
    path = key_file(tmp_path)
    payload = SecurityProcessor([SAS[0]])
    for _ in range(3):  # three runs of groundsw, one frame each
        security = UplinkSecurity.from_key_file(path)
        payload.process(on_the_wire(security.secure(frame(1))))
