"""SDLS-style TC frame authentication: secured frames verify under their SA, every forged,
truncated or replayed one is refused, and a refused frame leaves the receiver's state alone."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms
from hypothesis import example, given, settings
from hypothesis import strategies as st

from spacelink.errors import FrameError
from spacelink.sdls import (
    MAC_LENGTH,
    MAX_ARSN,
    Algorithm,
    KeyWrapError,
    SaState,
    SecurityAssociation,
    SecurityError,
    SecurityFault,
    SecurityProcessor,
    apply_security,
    unwrap_key,
    wrap_key,
)
from spacelink.tcframe import TcFrame

KEYS = {
    Algorithm.HMAC_SHA256: bytes(range(32)),
    Algorithm.AES_CMAC: bytes(range(100, 116)),
    Algorithm.AES_GCM: bytes(range(200, 232)),
}
SAS = [SecurityAssociation(spi, algorithm, KEYS[algorithm]) for spi, algorithm in
       ((1, Algorithm.HMAC_SHA256), (2, Algorithm.AES_CMAC), (3, Algorithm.AES_GCM))]  # fmt: skip
FRAME = TcFrame(
    scid=0x1AB, vcid=1, seq=17, data=b"\x18\x64\xc0\x00\x00\x05\x2f\x11\x01\x00\x00\x00"
)


def receiver() -> SecurityProcessor:
    return SecurityProcessor(SAS)


@pytest.mark.parametrize("sa", SAS, ids=lambda sa: sa.algorithm.name)
def test_a_secured_frame_verifies_and_gives_back_its_data(sa: SecurityAssociation) -> None:
    secured = apply_security(FRAME, sa, arsn=7)
    assert len(secured.data) == len(FRAME.data) + sa.overhead
    on_the_wire = secured.pack()
    verified = receiver().process(TcFrame.unpack(on_the_wire))
    assert verified.frame == FRAME
    assert (verified.spi, verified.arsn) == (sa.spi, 7)


def test_hmac_is_sha256_truncated_over_header_security_header_and_data() -> None:
    sa = SAS[0]
    secured = apply_security(FRAME, sa, arsn=0x01020304).pack()
    primary, body = secured[:5], secured[5:-2]
    header, data, mac = body[:6], body[6:-MAC_LENGTH], body[-MAC_LENGTH:]
    assert header == b"\x00\x01\x01\x02\x03\x04"
    assert data == FRAME.data
    expected = hmac.new(sa.key, primary + header + data, hashlib.sha256).digest()[:16]
    assert mac == expected


def test_cmac_is_aes_cmac_over_the_same() -> None:
    sa = SAS[1]
    secured = apply_security(FRAME, sa, arsn=9).pack()
    primary, body = secured[:5], secured[5:-2]
    reference = cmac.CMAC(algorithms.AES(sa.key))
    reference.update(primary + body[:-MAC_LENGTH])
    assert body[-MAC_LENGTH:] == reference.finalize()


def test_gcm_hides_the_data() -> None:
    secured = apply_security(FRAME, SAS[2], arsn=5)
    assert FRAME.data not in secured.data
    assert len(secured.data) == 2 + 12 + 4 + len(FRAME.data) + 16


def test_gcm_never_repeats_an_iv_even_when_a_sender_repeats_an_arsn() -> None:
    # A ground that lost its counter file starts again at a used ARSN: the random salt keeps
    # (key, IV) pairs unique, so GCM's keystream and authentication key do not leak.
    ivs = {apply_security(FRAME, SAS[2], arsn=5).data[2:14] for _ in range(100)}
    assert len(ivs) == 100
    assert all(iv[:2] == b"\x00\x03" and iv[-4:] == b"\x00\x00\x00\x05" for iv in ivs)
    fixed = apply_security(FRAME, SAS[2], arsn=5, iv_salt=bytes(6))
    assert fixed.data[2:14] == b"\x00\x03" + bytes(6) + b"\x00\x00\x00\x05"
    assert receiver().process(fixed).frame == FRAME
    with pytest.raises(ValueError, match="IV salt"):
        apply_security(FRAME, SAS[2], arsn=5, iv_salt=bytes(5))


@pytest.mark.parametrize("sa", SAS, ids=lambda sa: sa.algorithm.name)
@settings(max_examples=60, deadline=None)
@given(bit=st.integers(min_value=0))
@example(bit=4)  # the primary header's two spare bits, which the frame checks let through
@example(bit=5)
def test_any_flipped_bit_is_refused(sa: SecurityAssociation, bit: int) -> None:
    wire = bytearray(apply_security(FRAME, sa, arsn=3).pack()[:-2])
    bit %= 8 * len(wire)
    wire[bit // 8] ^= 0x80 >> (bit % 8)
    # The FECF is made again, as an attacker would: only the MAC stands in the way (or the
    # frame checks, for a version or length bit).
    sent = bytes(wire) + _fecf(bytes(wire))
    try:
        forged = TcFrame.unpack(sent)
    except FrameError:
        return
    # Refused as forged, or as too short for the SA a flipped SPI names.
    with pytest.raises(SecurityError):
        receiver().process(forged, sent[:5])


def _fecf(body: bytes) -> bytes:
    from spacelink.crc import crc16

    return crc16(body).to_bytes(2, "big")


def test_a_header_field_changed_by_a_forger_is_refused() -> None:
    secured = apply_security(FRAME, SAS[0], arsn=3)
    for changed in (
        dataclasses.replace(secured, seq=18),
        dataclasses.replace(secured, vcid=2),
        dataclasses.replace(secured, bypass=True),
    ):
        with pytest.raises(SecurityError) as refused:
            receiver().process(changed)
        assert refused.value.fault is SecurityFault.BAD_MAC


def hmac_frame_with_arsn(frame: TcFrame, sa: SecurityAssociation, arsn: int) -> TcFrame:
    """A frame secured under an HMAC SA with any ARSN, 0 included, its MAC made with plain
    hmac (apply_security refuses to send an ARSN of 0; an attacker need not)."""
    header = sa.spi.to_bytes(2, "big") + arsn.to_bytes(4, "big")
    primary = frame.primary_header(len(header) + len(frame.data) + MAC_LENGTH)
    mac = hmac.new(sa.key, primary + header + frame.data, hashlib.sha256).digest()[:MAC_LENGTH]
    return dataclasses.replace(frame, data=header + frame.data + mac)


def test_a_replayed_or_older_frame_is_refused_and_a_newer_one_accepted() -> None:
    rx = receiver()
    sa = SAS[0]
    rx.process(apply_security(FRAME, sa, arsn=10))
    for old in (10, 9, 1):
        with pytest.raises(SecurityError) as refused:
            rx.process(apply_security(FRAME, sa, arsn=old))
        assert refused.value.fault is SecurityFault.REPLAY
        assert (refused.value.arsn, refused.value.last) == (old, 10)
    assert rx.process(apply_security(FRAME, sa, arsn=11)).arsn == 11
    assert rx.state(sa.spi).last == 11
    # Each SA counts on its own.
    assert rx.process(apply_security(FRAME, SAS[1], arsn=1)).arsn == 1


def test_arsn_zero_means_none_and_is_never_accepted() -> None:
    rx = receiver()
    with pytest.raises(SecurityError) as refused:
        rx.process(hmac_frame_with_arsn(FRAME, SAS[0], 0))
    assert (refused.value.fault, refused.value.arsn, refused.value.last) == (
        SecurityFault.REPLAY,
        0,
        0,
    )
    assert rx.process(hmac_frame_with_arsn(FRAME, SAS[0], 1)).arsn == 1
    rx.set_challenge(SAS[0].spi, bytes(16))  # a challenge's answer takes any ARSN, but not 0
    with pytest.raises(SecurityError):
        rx.process(hmac_frame_with_arsn(FRAME, SAS[0], 0))
    with pytest.raises(ValueError, match="ARSN 0"):
        apply_security(FRAME, SAS[0], arsn=0)


def test_one_sa_at_the_end_of_its_counter_leaves_the_others_alone() -> None:
    rx = receiver()
    rx.process(apply_security(FRAME, SAS[0], arsn=MAX_ARSN))
    assert rx.process(apply_security(FRAME, SAS[1], arsn=1)).arsn == 1
    assert rx.state(SAS[2].spi) == SaState()
    with pytest.raises(SecurityError):
        rx.process(apply_security(FRAME, SAS[0], arsn=MAX_ARSN))


def test_a_refused_frame_does_not_move_the_counter() -> None:
    rx = receiver()
    sa = SAS[0]
    forged = apply_security(FRAME, dataclasses.replace(sa, key=bytes(32)), arsn=1_000_000)
    with pytest.raises(SecurityError):
        rx.process(forged)
    assert rx.state(sa.spi) == SaState()
    assert rx.process(apply_security(FRAME, sa, arsn=1)).arsn == 1


def test_unknown_spi_and_truncated_frames_are_refused() -> None:
    other = SecurityAssociation(9, Algorithm.HMAC_SHA256, bytes(32))
    with pytest.raises(SecurityError) as refused:
        receiver().process(apply_security(FRAME, other, arsn=1))
    assert refused.value.fault is SecurityFault.UNKNOWN_SPI
    secured = apply_security(FRAME, SAS[0], arsn=1)
    for cut in (1, 5, SAS[0].overhead):
        with pytest.raises(SecurityError) as refused:
            receiver().process(dataclasses.replace(secured, data=secured.data[:cut]))
        assert refused.value.fault in (SecurityFault.TOO_SHORT, SecurityFault.BAD_MAC)


def test_a_truncated_frame_of_a_known_sa_reports_its_arsn_and_the_last() -> None:
    rx = receiver()
    rx.process(apply_security(FRAME, SAS[0], arsn=40))
    secured = apply_security(FRAME, SAS[0], arsn=41)
    with pytest.raises(SecurityError) as refused:
        rx.process(dataclasses.replace(secured, data=secured.data[: SAS[0].overhead]))
    assert refused.value.fault is SecurityFault.TOO_SHORT
    assert (refused.value.spi, refused.value.arsn, refused.value.last) == (1, 41, 40)
    with pytest.raises(SecurityError) as refused:  # too short to hold the ARSN
        rx.process(dataclasses.replace(secured, data=secured.data[:4]))
    assert (refused.value.spi, refused.value.arsn, refused.value.last) == (1, None, 40)


def test_states_given_at_start_are_where_the_receiver_goes_on() -> None:
    rx = SecurityProcessor(SAS, {1: SaState(500), 2: SaState(7, bytes(range(16)))})
    assert rx.state(1).last == 500 and rx.state(3) == SaState()
    with pytest.raises(SecurityError):
        rx.process(apply_security(FRAME, SAS[0], arsn=500))
    assert rx.process(apply_security(FRAME, SAS[0], arsn=501)).arsn == 501
    # SA 2's MACs cover its nonce.
    with pytest.raises(SecurityError) as refused:
        rx.process(apply_security(FRAME, SAS[1], arsn=8))
    assert refused.value.fault is SecurityFault.BAD_MAC
    assert rx.process(apply_security(FRAME, SAS[1], arsn=8, nonce=bytes(range(16)))).arsn == 8
    assert rx.states() == {1: SaState(501), 2: SaState(8, bytes(range(16))), 3: SaState()}


@pytest.mark.parametrize(
    ("spi", "algorithm", "key"),
    [
        (1, Algorithm.HMAC_SHA256, bytes(16)),
        (1, Algorithm.AES_CMAC, bytes(24)),
        (1, Algorithm.AES_GCM, bytes(8)),
        (70000, Algorithm.AES_CMAC, bytes(16)),
        (0, Algorithm.HMAC_SHA256, bytes(32)),  # 0 is "none" in the events
    ],
)
def test_bad_associations_are_refused(spi: int, algorithm: Algorithm, key: bytes) -> None:
    with pytest.raises(ValueError):
        SecurityAssociation(spi, algorithm, key)


def test_a_key_never_shows_in_a_repr() -> None:
    assert KEYS[Algorithm.HMAC_SHA256].hex() not in repr(SAS[0])
    assert "key" not in repr(SAS[0])


def test_a_wrapped_key_unwraps_only_under_its_key_and_unaltered() -> None:
    new_key = bytes(range(50, 82))
    wrapped = wrap_key(new_key, SAS[0])
    assert new_key not in wrapped and len(wrapped) == len(new_key) + 8
    assert unwrap_key(wrapped, SAS[0]) == new_key
    with pytest.raises(KeyWrapError):
        unwrap_key(wrapped, SAS[1])
    altered = bytearray(wrapped)
    altered[3] ^= 1
    with pytest.raises(KeyWrapError):
        unwrap_key(bytes(altered), SAS[0])
    with pytest.raises(KeyWrapError):
        unwrap_key(wrapped[:-1], SAS[0])


@pytest.mark.parametrize("sa", SAS, ids=lambda sa: sa.algorithm.name)
def test_a_lost_counter_is_recovered_only_by_a_frame_answering_the_challenge(
    sa: SecurityAssociation,
) -> None:
    rx = receiver()
    # An attacker's tape of genuine frames from before the loss, some far above the answer.
    recorded = [apply_security(FRAME, sa, arsn=n) for n in (5, 6, 7, 14103, 22345)]
    nonce = bytes(range(16))
    rx.set_challenge(sa.spi, nonce)
    assert rx.challenge(sa.spi) == nonce
    for old in recorded:  # replays of genuine frames: all refused
        with pytest.raises(SecurityError) as refused:
            rx.process(old)
        assert refused.value.fault is SecurityFault.BAD_MAC
    assert rx.challenge(sa.spi) == nonce  # still waiting
    answer = apply_security(FRAME, sa, arsn=2, nonce=nonce)  # a low answer
    verified = rx.process(answer)
    assert (verified.arsn, verified.answered_challenge) == (2, True)
    assert rx.challenge(sa.spi) is None and rx.state(sa.spi) == SaState(2, nonce)
    with pytest.raises(SecurityError):  # the answer itself cannot be replayed
        rx.process(answer)
    # No frame made before the nonce was drawn verifies again, whatever its ARSN.
    for old in recorded:
        with pytest.raises(SecurityError) as refused:
            rx.process(old)
        assert refused.value.fault is SecurityFault.BAD_MAC
    after = rx.process(apply_security(FRAME, sa, arsn=3, nonce=nonce))
    assert (after.arsn, after.answered_challenge) == (3, False)


def test_a_challenge_nonce_has_sixteen_octets() -> None:
    with pytest.raises(ValueError):
        receiver().set_challenge(1, bytes(8))
    with pytest.raises(ValueError):
        SaState(0, bytes(8))
    with pytest.raises(ValueError):
        SaState(0, b"", challenged=True)
