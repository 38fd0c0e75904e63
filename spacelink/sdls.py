"""Authentication of TC frames in the style of CCSDS SDLS (355.0-B): a security header and a MAC
trailer inside the frame's data field. Pure: keys come in as bytes, state as numbers (only the
GCM IV's salt is drawn from the system's random source).

A secured TC frame:

    primary header (5) | SPI (2) | IV (12, AES-GCM only) | ARSN (4) | data | MAC (16) | FECF (2)

The frame length counts everything. The MAC covers the primary header as sent, the security
header and the data (AES-GCM encrypts the data and authenticates the rest). ARSN is the
anti-replay sequence number of the security association (SA) named by the SPI, 1 and up (0
means "none" in telemetry): the sender gives every frame it transmits, retransmissions included,
the next ARSN; the receiver accepts an authentic frame only when its ARSN is above the last it
accepted on that SA. Each SA has its own counter.

A receiver that has lost an SA's last ARSN (its copies corrupted) cannot tell a replayed frame
from a new one. It then challenges the SA: it draws a random nonce and announces it in
telemetry. From then on every MAC on that SA must also cover the nonce (appended to the
authenticated data, never sent): the first frame that does answers the challenge with any ARSN,
and the ARSN rule applies again after it. The nonce stays part of the SA until a later challenge
replaces it, so no frame made before it was drawn (every frame recorded before the loss) can
ever verify again, whatever its ARSN.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import cmac, hashes
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from spacelink.tcframe import TcFrame

SPI_LENGTH = 2
ARSN_LENGTH = 4
IV_LENGTH = 12
MAC_LENGTH = 16
IV_SALT_LENGTH = IV_LENGTH - SPI_LENGTH - ARSN_LENGTH
MIN_ARSN = 1
MAX_ARSN = (1 << (8 * ARSN_LENGTH)) - 1
# SPI 0 is reserved: events report it as "none".
MIN_SPI = 1
MAX_SPI = 0xFFFF
NONCE_LENGTH = 16
_SPI = struct.Struct(">H")
_ARSN = struct.Struct(">I")


class Algorithm(enum.IntEnum):
    """How a security association authenticates its frames."""

    HMAC_SHA256 = 1  # HMAC-SHA-256, truncated to 128 bits
    AES_CMAC = 2  # AES-CMAC (128 bits), key of 16 or 32 octets
    AES_GCM = 3  # AES-GCM: data encrypted, 128-bit tag; key of 16 or 32 octets


_KEY_LENGTHS = {
    Algorithm.HMAC_SHA256: (32,),
    Algorithm.AES_CMAC: (16, 32),
    Algorithm.AES_GCM: (16, 32),
}


class SecurityFault(enum.Enum):
    """Why a frame failed its security processing."""

    TOO_SHORT = "too short for the security header and trailer"
    UNKNOWN_SPI = "unknown security parameter index"
    BAD_MAC = "MAC does not match"
    REPLAY = "sequence number not above the last accepted"


class SecurityError(Exception):
    """A frame refused by its security processing; `fault` says why, `spi` and `arsn` are the
    frame's (None where it is too short for them), `last` the SA's last accepted ARSN."""

    def __init__(
        self,
        fault: SecurityFault,
        detail: str,
        spi: int | None = None,
        arsn: int | None = None,
        last: int | None = None,
    ) -> None:
        super().__init__(f"{fault.value}: {detail}")
        self.fault = fault
        self.spi = spi
        self.arsn = arsn
        self.last = last


@dataclass(frozen=True)
class SecurityAssociation:
    """One SA: its SPI, its algorithm and key. Keys never appear in its repr."""

    spi: int
    algorithm: Algorithm
    key: bytes = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if not MIN_SPI <= self.spi <= MAX_SPI:
            raise ValueError(f"SPI {self.spi} is outside {MIN_SPI}..{MAX_SPI} (0 is reserved)")
        lengths = _KEY_LENGTHS[self.algorithm]
        if len(self.key) not in lengths:
            allowed = " or ".join(str(n) for n in lengths)
            raise ValueError(
                f"SPI {self.spi}: {self.algorithm.name} needs a key of {allowed} octets, "
                f"found {len(self.key)}"
            )

    @property
    def header_length(self) -> int:
        iv = IV_LENGTH if self.algorithm is Algorithm.AES_GCM else 0
        return SPI_LENGTH + iv + ARSN_LENGTH

    @property
    def overhead(self) -> int:
        """Octets the security fields add to a frame's data field."""
        return self.header_length + MAC_LENGTH


def _iv(sa: SecurityAssociation, arsn: int, salt: bytes) -> bytes:
    # SPI | salt | ARSN. The ARSN alone would make it unique per key only while the sender's
    # counter never goes back (a lost ground counter file would repeat IVs, fatal to GCM); the
    # random salt keeps it unique even then. The receiver takes the IV as sent.
    return _SPI.pack(sa.spi) + salt + _ARSN.pack(arsn)


def _mac(sa: SecurityAssociation, authenticated: bytes) -> bytes:
    if sa.algorithm is Algorithm.HMAC_SHA256:
        return hmac.digest(sa.key, authenticated, "sha256")[:MAC_LENGTH]
    mac = cmac.CMAC(algorithms.AES(sa.key))
    mac.update(authenticated)
    return mac.finalize()


def apply_security(
    frame: TcFrame,
    sa: SecurityAssociation,
    arsn: int,
    nonce: bytes = b"",
    iv_salt: bytes | None = None,
) -> TcFrame:
    """`frame` with its data field secured under `sa` with sequence number `arsn`; its MAC also
    covers the SA's `nonce` once the receiver has drawn one (a challenge). `iv_salt`: the GCM
    IV's 6 middle octets (random when None; fixed only for worked examples)."""
    if not MIN_ARSN <= arsn <= MAX_ARSN:
        raise ValueError(f"ARSN {arsn} is outside {MIN_ARSN}..{MAX_ARSN}")
    iv = b""
    if sa.algorithm is Algorithm.AES_GCM:
        salt = os.urandom(IV_SALT_LENGTH) if iv_salt is None else iv_salt
        if len(salt) != IV_SALT_LENGTH:
            raise ValueError(f"IV salt of {len(salt)} octets, {IV_SALT_LENGTH} expected")
        iv = _iv(sa, arsn, salt)
    header = _SPI.pack(sa.spi) + iv + _ARSN.pack(arsn)
    primary = frame.primary_header(len(header) + len(frame.data) + MAC_LENGTH)
    if sa.algorithm is Algorithm.AES_GCM:
        sealed = AESGCM(sa.key).encrypt(iv, frame.data, primary + header + nonce)
        return dataclasses.replace(frame, data=header + sealed)
    mac = _mac(sa, primary + header + frame.data + nonce)
    return dataclasses.replace(frame, data=header + frame.data + mac)


@dataclass(frozen=True, slots=True)
class SaState:
    """The receiving state of one SA: the last ARSN accepted (0: none yet), the nonce every MAC
    must cover (empty until a first challenge), and whether that nonce's challenge still waits
    for its answer."""

    last: int = 0
    nonce: bytes = b""
    challenged: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.last <= MAX_ARSN:
            raise ValueError(f"last ARSN {self.last} is outside 0..{MAX_ARSN}")
        if self.nonce and len(self.nonce) != NONCE_LENGTH:
            raise ValueError(f"a nonce of {len(self.nonce)} octets, {NONCE_LENGTH} expected")
        if self.challenged and not self.nonce:
            raise ValueError("a challenge needs its nonce")


@dataclass(frozen=True, slots=True)
class Verified:
    """A frame that passed its security processing: the frame with its plain data field, the SA
    and the ARSN it came with, and whether it answered the SA's challenge."""

    frame: TcFrame
    spi: int
    arsn: int
    answered_challenge: bool = False


class SecurityProcessor:
    """The receiving end: the SAs it knows and the state of each (SaState)."""

    def __init__(
        self,
        associations: Iterable[SecurityAssociation],
        states: Mapping[int, SaState] | None = None,
    ) -> None:
        self._sas = {sa.spi: sa for sa in associations}
        given = states or {}
        self._states = {spi: given.get(spi, SaState()) for spi in self._sas}

    @property
    def spis(self) -> tuple[int, ...]:
        return tuple(sorted(self._sas))

    def association(self, spi: int) -> SecurityAssociation:
        """The SA of `spi`; KeyError when there is none."""
        return self._sas[spi]

    def replace_key(self, spi: int, key: bytes) -> None:
        """Give `spi` a new key (same algorithm); its state goes on, so IVs stay unique."""
        self._sas[spi] = SecurityAssociation(spi, self._sas[spi].algorithm, key)

    def state(self, spi: int) -> SaState:
        """The receiving state of `spi`; KeyError when there is no such SA."""
        return self._states[spi]

    def states(self) -> dict[int, SaState]:
        """Every SA's state, by SPI: what must be kept across restarts."""
        return dict(self._states)

    def set_challenge(self, spi: int, nonce: bytes) -> None:
        """The state of `spi` is lost: from now on every MAC must cover `nonce` (fresh, random),
        and the first frame whose MAC does is accepted with any ARSN."""
        if len(nonce) != NONCE_LENGTH:
            raise ValueError(f"a challenge of {len(nonce)} octets, {NONCE_LENGTH} expected")
        self._states[spi] = SaState(self._states[spi].last, bytes(nonce), challenged=True)

    def challenge(self, spi: int) -> bytes | None:
        """The nonce of the challenge waiting on `spi`, or None when its counter is known."""
        state = self._states[spi]
        return state.nonce if state.challenged else None

    def process(self, frame: TcFrame, primary_header: bytes | None = None) -> Verified:
        """Check `frame`'s security fields; its plain data, or SecurityError saying why not.

        `primary_header`: the 5 octets as received, authenticated as they are (spare bits
        included); without it, the header `frame`'s fields make. The sequence number is checked
        only once the MAC holds: a forged frame cannot move the receiver's state."""
        data = frame.data
        if len(data) < SPI_LENGTH:
            raise SecurityError(SecurityFault.TOO_SHORT, f"data field of {len(data)} octets")
        (spi,) = _SPI.unpack_from(data)
        sa = self._sas.get(spi)
        if sa is None:
            raise SecurityError(SecurityFault.UNKNOWN_SPI, f"SPI {spi}", spi)
        state = self._states[spi]
        if len(data) < sa.overhead + 1:
            arsn = None
            if len(data) >= sa.header_length:
                (arsn,) = _ARSN.unpack_from(data, sa.header_length - ARSN_LENGTH)
            raise SecurityError(
                SecurityFault.TOO_SHORT,
                f"data field of {len(data)} octets, SPI {spi} needs {sa.overhead} and data",
                spi,
                arsn,
                state.last,
            )
        (arsn,) = _ARSN.unpack_from(data, sa.header_length - ARSN_LENGTH)
        primary = frame.primary_header(len(data)) if primary_header is None else primary_header[:5]
        plain = _open(sa, primary, data, state.nonce)
        if plain is None:
            raise SecurityError(
                SecurityFault.BAD_MAC, f"SPI {spi}, ARSN {arsn}", spi, arsn, state.last
            )
        # A challenge's answer sets the counter, wherever it was; otherwise the ARSN must be
        # above the last (and never 0, which means none).
        if arsn < MIN_ARSN or (not state.challenged and arsn <= state.last):
            raise SecurityError(
                SecurityFault.REPLAY,
                f"SPI {spi}: ARSN {arsn}, last accepted {state.last}",
                spi,
                arsn,
                state.last,
            )
        self._states[spi] = SaState(arsn, state.nonce)
        return Verified(dataclasses.replace(frame, data=plain), spi, arsn, state.challenged)


def _open(sa: SecurityAssociation, primary: bytes, data: bytes, extra: bytes) -> bytes | None:
    """The plain data of a secured data field whose MAC holds over `extra` too, else None."""
    header = data[: sa.header_length]
    if sa.algorithm is Algorithm.AES_GCM:
        iv = header[SPI_LENGTH : SPI_LENGTH + IV_LENGTH]
        try:
            return AESGCM(sa.key).decrypt(iv, data[sa.header_length :], primary + header + extra)
        except InvalidTag:
            return None
    plain = data[sa.header_length : -MAC_LENGTH]
    expected = _mac(sa, primary + header + plain + extra)
    return plain if hmac.compare_digest(expected, data[-MAC_LENGTH:]) else None


class KeyWrapError(Exception):
    """A wrapped key that does not unwrap under the key it names (altered, or another key)."""


def _key_encryption_key(under: SecurityAssociation) -> bytes:
    # A key of its own for wrapping: the SA's key is never used for two jobs.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"uplink key wrap").derive(
        under.key
    )


def wrap_key(key: bytes, under: SecurityAssociation) -> bytes:
    """`key` wrapped (AES key wrap, RFC 3394) under a key derived from `under`'s: what a key
    rotation command carries, so that only a holder of the old key learns the new one."""
    return aes_key_wrap(_key_encryption_key(under), key)


def unwrap_key(wrapped: bytes, under: SecurityAssociation) -> bytes:
    """The key `wrap_key` wrapped; KeyWrapError when it was altered or wrapped under another."""
    try:
        return aes_key_unwrap(_key_encryption_key(under), wrapped)
    except (InvalidUnwrap, ValueError) as exc:
        raise KeyWrapError(f"wrapped key does not unwrap under SPI {under.spi}: {exc}") from None
