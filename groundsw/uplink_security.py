"""The ground's end of the authenticated uplink: secures every TC frame it transmits under one
security association, with an anti-replay sequence number (ARSN) never used before.

ARSNs are reserved in blocks in a counter file beside the key file before any is used, under a
lock, so that no two transmissions (retransmissions, other processes, a crash and restart) carry
the same one. The payload's events keep the ground in step: AUTH_REFUSED for a replay says the
payload's counter is ahead (after its restart it goes on from a saved block), so this ground
skips past it; AUTH_CHALLENGE gives the nonce its frames must cover after the payload lost its
counter (docs/security.md).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spacelink.keystore import KeyStoreError, read_keys
from spacelink.sdls import MAX_ARSN, SecurityAssociation, apply_security
from spacelink.spacepacket import PusTm
from spacelink.tcframe import TcFrame
from telemetry_defs.model import EVENT_SERVICE, CodecError, Dictionary, TmKind, UnknownName

log = logging.getLogger(__name__)

ARSN_BLOCK = 1024
# The payload's counter is at most a saved block (4096) ahead of what it accepted, after a
# restart; a larger claimed jump comes from a stale counter file or a forged event, and is
# followed only up to this far below the end of the counter space.
ARSN_HEADROOM = 1 << 24
KEYS_ENV = "GROUNDSW_KEYS"


class UplinkKeyError(Exception):
    """The ground's key file or counter file cannot be used; one sentence."""


class ArsnCounter:
    """ARSNs for one SA, reserved in blocks in a file (`<key file>.arsn`) before use."""

    def __init__(self, path: Path, block: int = ARSN_BLOCK) -> None:
        self.path = path
        self.block = block
        self._next = 0
        self._end = 0  # first ARSN not reserved by this process

    def take(self) -> int:
        """The next ARSN, never handed out before by any process using this file."""
        if self._next >= self._end:
            self._reserve(self._next)
        arsn = self._next
        self._next += 1
        return arsn

    def skip_past(self, arsn: int) -> None:
        """Go on above `arsn` (the payload accepted up to it)."""
        if arsn >= self._next:
            self._next = arsn + 1

    @property
    def next(self) -> int:
        return self._next

    def _reserve(self, at_least: int) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise UplinkKeyError(
                f"cannot open ARSN counter file {self.path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            text = os.read(fd, 64).decode("ascii", errors="replace").strip()
            try:
                stored = int(text) if text else 1
            except ValueError:
                raise UplinkKeyError(
                    f"ARSN counter file {self.path} holds {text[:20]!r}, not a number: "
                    f"set it above the payload's AUTH_LAST_ARSN"
                ) from None
            start = max(stored, at_least)
            end = start + self.block
            if end > MAX_ARSN:
                raise UplinkKeyError(
                    f"ARSN counter {start} in {self.path} is at the end of its range: this "
                    f"security association is used up (a key rotation keeps its counter); "
                    f"provision the payload with a new one (groundsw key generate --spi N)"
                )
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, f"{end}\n".encode())
            os.fsync(fd)
        except OSError as exc:
            raise UplinkKeyError(f"cannot write ARSN counter file {self.path}: {exc}") from None
        finally:
            os.close(fd)
        self._next, self._end = start, end


class UplinkSecurity:
    """Secures TC frames under one SA; follows the payload's security events. Thread-safe."""

    def __init__(self, sa: SecurityAssociation, counter: ArsnCounter) -> None:
        self.sa = sa
        self.counter = counter
        self._challenge = b""
        self._lock = threading.Lock()

    @classmethod
    def from_key_file(cls, path: Path, spi: int | None = None) -> UplinkSecurity:
        """The SA `spi` (the file's first when None) of the key file at `path`."""
        try:
            associations = read_keys(path)
        except KeyStoreError as exc:
            raise UplinkKeyError(str(exc)) from None
        if spi is None:
            sa = associations[0]
        else:
            found = [a for a in associations if a.spi == spi]
            if not found:
                spis = ", ".join(str(a.spi) for a in associations)
                raise UplinkKeyError(f"key file {path} has no SPI {spi} (it has {spis})")
            sa = found[0]
        return cls(sa, ArsnCounter(counter_path(path)))

    @property
    def overhead(self) -> int:
        """Octets the security fields take from every frame's data field."""
        return self.sa.overhead

    def secure(self, frame: TcFrame) -> TcFrame:
        """`frame` secured with a fresh ARSN (and the payload's challenge, if it set one)."""
        with self._lock:
            return apply_security(frame, self.sa, self.counter.take(), self._challenge)

    def rekey(self, key: bytes) -> None:
        """Use `key` for this SA from now on (after the payload confirmed KEY_ROTATE)."""
        with self._lock:
            self.sa = SecurityAssociation(self.sa.spi, self.sa.algorithm, key)

    def on_event(self, name: str, values: dict[str, Any]) -> None:
        """Follow one of the payload's events (decoded by the dictionary)."""
        if values.get("spi") != self.sa.spi:
            return
        with self._lock:
            if name == "AUTH_REFUSED" and values.get("fault") == "REPLAY":
                last = int(values.get("last", 0))
                if last > MAX_ARSN - ARSN_HEADROOM:
                    log.error("payload claims ARSN %d: too near the end, not followed", last)
                    return
                if last >= self.counter.next:
                    log.info("payload's counter is at %d: going on above it", last)
                    self.counter.skip_past(last)
            elif name == "AUTH_CHALLENGE":
                nonce = values.get("nonce")
                if isinstance(nonce, bytes) and nonce != self._challenge:
                    log.warning("payload lost its counter: answering challenge %s", nonce.hex())
                    self._challenge = nonce
            elif name == "AUTH_CHALLENGE_ANSWERED":
                self._challenge = b""

    def packet_sink(self, dictionary: Dictionary) -> Callable[[PusTm, bytes, float], None]:
        """A LinkSession packet sink that feeds the payload's security events to `on_event`."""

        faults = dictionary.enums["AuthFault"]

        def sink(tm: PusTm, raw: bytes, when: float) -> None:
            if tm.service != EVENT_SERVICE:
                return
            try:
                decoded = dictionary.decode_tm(tm.service, tm.subtype, tm.source_data)
            except (CodecError, UnknownName):  # the archive and the views report those
                return
            if decoded.kind is TmKind.EVENT and decoded.name.startswith("AUTH_"):
                values = dict(decoded.values)
                if "fault" in values:
                    values["fault"] = faults.to_text(values["fault"])
                self.on_event(decoded.name, values)

        return sink


def counter_path(key_file: Path) -> Path:
    """Where the ARSN counter of a key file is kept."""
    return key_file.with_name(key_file.name + ".arsn")


def keys_from_environment() -> Path | None:
    """The key file $GROUNDSW_KEYS names, if set."""
    value = os.environ.get(KEYS_ENV)
    return Path(value) if value else None
