"""The ground's end of the authenticated uplink: secures every TC frame it transmits under one
security association, with an anti-replay sequence number (ARSN) never used before, and tells
the operator what the payload said when it refuses them.

ARSNs are reserved in blocks in a counter file beside the key file before any is used, under a
lock, so that no two transmissions (retransmissions, other processes, a crash and restart) carry
the same one. The same file keeps the nonce the payload drew when it challenged the SA (its
frames must cover it from then on). The payload's events keep the ground in step: AUTH_REFUSED
for a replay says the payload's counter is ahead (this ground's counter file was lost or is an
old copy), so this ground skips past it; AUTH_CHALLENGE and AUTH_NONCE give the nonce
(docs/security.md).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacelink.keystore import KeyStoreError, read_keys
from spacelink.sdls import MAX_ARSN, MIN_ARSN, NONCE_LENGTH, SecurityAssociation, apply_security
from spacelink.spacepacket import PusTm
from spacelink.tcframe import TcFrame
from telemetry_defs.model import EVENT_SERVICE, CodecError, Dictionary, TmKind, UnknownName

log = logging.getLogger(__name__)

ARSN_BLOCK = 1024
# A claimed jump of the payload's counter this near the end of the counter space comes from a
# forged event (or an SA that is used up): not followed.
ARSN_HEADROOM = 1 << 24
KEYS_ENV = "GROUNDSW_KEYS"
_NONCE_LINE = re.compile(rf"nonce (\d{{1,5}}) ([0-9a-f]{{{2 * NONCE_LENGTH}}})")
_MAX_COUNTER_FILE = 64 * 1024

EventHandler = Callable[[str, dict[str, Any]], None]


class UplinkKeyError(Exception):
    """The ground's key file or counter file cannot be used; one sentence."""


@dataclass
class _CounterFile:
    """What `<key file>.arsn` holds: the first ARSN no process has reserved, and the nonce of
    each SA the payload has challenged."""

    next: int = MIN_ARSN
    nonces: dict[int, bytes] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, path: Path) -> _CounterFile:
        lines = text.split("\n")
        first = lines[0].strip()
        try:
            content = cls(int(first) if first else MIN_ARSN)
        except ValueError:
            raise UplinkKeyError(
                f"ARSN counter file {path} holds {first[:20]!r}, not a number: "
                f"set it above the payload's AUTH_LAST_ARSN"
            ) from None
        for number, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            match = _NONCE_LINE.fullmatch(line.strip())
            if match is None:
                raise UplinkKeyError(
                    f"ARSN counter file {path}, line {number}: expected 'nonce SPI HEX', "
                    f"found {line.strip()[:40]!r}"
                )
            content.nonces[int(match[1])] = bytes.fromhex(match[2])
        return content

    def text(self) -> str:
        nonces = "".join(f"nonce {spi} {n.hex()}\n" for spi, n in sorted(self.nonces.items()))
        return f"{self.next}\n{nonces}"


class ArsnCounter:
    """ARSNs for one SA, reserved in blocks in a file (`<key file>.arsn`) before use; the file
    also keeps the SA's nonce."""

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

    def nonce(self, spi: int) -> bytes:
        """The nonce saved for `spi` (empty when none); UplinkKeyError when the file is bad."""
        if not self.path.exists():
            return b""
        return self._update(lambda content: None).nonces.get(spi, b"")

    def save_nonce(self, spi: int, nonce: bytes) -> None:
        """Keep `nonce` as `spi`'s, for every later process."""

        def change(content: _CounterFile) -> None:
            content.nonces[spi] = nonce

        self._update(change)

    def _reserve(self, at_least: int) -> None:
        reserved: list[int] = []

        def change(content: _CounterFile) -> None:
            start = max(content.next, at_least, MIN_ARSN)
            end = start + self.block
            if end > MAX_ARSN:
                raise UplinkKeyError(
                    f"ARSN counter {start} in {self.path} is at the end of its range: this "
                    f"security association is used up (a key rotation keeps its counter); "
                    f"provision the payload with a new one (groundsw key generate --spi N)"
                )
            content.next = end
            reserved[:] = [start, end]

        self._update(change)
        self._next, self._end = reserved

    def _update(self, change: Callable[[_CounterFile], None]) -> _CounterFile:
        """Read the file under an exclusive lock, apply `change`, write it back synced if it
        changed; what it holds now."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise UplinkKeyError(
                f"cannot open ARSN counter file {self.path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            before = os.read(fd, _MAX_COUNTER_FILE).decode("ascii", errors="replace")
            content = _CounterFile.parse(before, self.path)
            change(content)
            after = content.text()
            if after != before:
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                os.write(fd, after.encode())
                os.fsync(fd)
        except OSError as exc:
            raise UplinkKeyError(f"cannot write ARSN counter file {self.path}: {exc}") from None
        finally:
            os.close(fd)
        return content


class UplinkSecurity:
    """Secures TC frames under one SA; follows the payload's security events. Thread-safe."""

    def __init__(self, sa: SecurityAssociation, counter: ArsnCounter) -> None:
        self.sa = sa
        self.counter = counter
        self._nonce = counter.nonce(sa.spi)
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

    @property
    def nonce(self) -> bytes:
        """The nonce every frame's MAC covers (empty until the payload challenged the SA)."""
        return self._nonce

    def secure(self, frame: TcFrame) -> TcFrame:
        """`frame` secured with a fresh ARSN (its MAC covering the SA's nonce, if it has one)."""
        with self._lock:
            return apply_security(frame, self.sa, self.counter.take(), self._nonce)

    def rekey(self, key: bytes) -> None:
        """Use `key` for this SA from now on (after the payload confirmed KEY_ROTATE)."""
        with self._lock:
            self.sa = SecurityAssociation(self.sa.spi, self.sa.algorithm, key)

    def on_event(self, name: str, values: dict[str, Any]) -> None:
        """Follow one of the payload's security events (decoded by the dictionary)."""
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
            elif name in ("AUTH_CHALLENGE", "AUTH_NONCE"):
                nonce = values.get("nonce")
                if isinstance(nonce, bytes) and len(nonce) == NONCE_LENGTH and nonce != self._nonce:
                    log.warning("payload's nonce for SPI %d: %s", self.sa.spi, nonce.hex())
                    self._nonce = nonce
                    try:
                        self.counter.save_nonce(self.sa.spi, nonce)
                    except UplinkKeyError as exc:  # this process still covers it
                        log.error("nonce not saved: %s", exc)


@dataclass(frozen=True)
class Refusal:
    """One AUTH_REFUSED event: the fault, the SA and ARSN it names, and the refusals of that
    fault it stands for (itself and those the payload suppressed before it)."""

    fault: str
    spi: int
    arsn: int
    last: int
    count: int


class RefusalLog:
    """The payload's refusals of this ground's frames since it last answered a command, to say
    what the payload said when a command goes unanswered. `spi`: this ground's SA; None when it
    sends unauthenticated frames, whose refusals name no SA of its own. Thread-safe."""

    def __init__(self, spi: int | None, counter_file: Path | None = None) -> None:
        self.spi = spi
        self.counter_file = counter_file
        self._refusals: list[Refusal] = []
        self._lock = threading.Lock()

    def on_event(self, name: str, values: dict[str, Any]) -> None:
        if name != "AUTH_REFUSED" or (self.spi is not None and values.get("spi") != self.spi):
            return
        refusal = Refusal(
            str(values.get("fault")),
            int(values.get("spi", 0)),
            int(values.get("arsn", 0)),
            int(values.get("last", 0)),
            1 + int(values.get("suppressed", 0)),
        )
        with self._lock:
            self._refusals.append(refusal)

    def answered(self) -> None:
        """The payload answered a command: the refusals before it are settled."""
        with self._lock:
            self._refusals.clear()

    def explain(self) -> str | None:
        """What the payload said of this ground's frames, in a sentence; None if nothing."""
        with self._lock:
            if not self._refusals:
                return None
            latest = self._refusals[-1]
            count = sum(r.count for r in self._refusals)
        refused = "the payload refused " + ("our frame" if count == 1 else f"{count} of our frames")
        if self.spi is None:
            return (
                f"{refused} as unauthenticated ({latest.fault}): it requires authentication; "
                "use --keys FILE or set GROUNDSW_KEYS"
            )
        if latest.fault == "BAD_MAC":
            return (
                f"{refused}: the MAC does not verify under its key for SPI {latest.spi} (a stale "
                "key file, or a key rotation whose answer was lost: docs/security.md, section 8)"
            )
        if latest.fault == "REPLAY" and latest.last == MAX_ARSN:
            return (
                f"{refused}: its counter for SPI {latest.spi} is at its end ({MAX_ARSN}), so this "
                "security association is used up; provision a new one (groundsw key generate "
                "--spi N, docs/security.md, section 8)"
            )
        if latest.fault == "REPLAY":
            copy = f" or an old copy of {self.counter_file}" if self.counter_file else ""
            return (
                f"{refused} as a replay: ARSN {latest.arsn} is not above {latest.last}, the last "
                f"it accepted on SPI {latest.spi} (another station using this security "
                f"association{copy})"
            )
        if latest.fault == "UNKNOWN_SPI":
            return (
                f"{refused}: it has no security association {latest.spi} in its key file; use "
                "--spi with one of its SPIs"
            )
        return f"{refused}: {latest.fault} on SPI {latest.spi} (docs/security.md, section 8)"


def security_event_sink(
    dictionary: Dictionary, *handlers: EventHandler
) -> Callable[[PusTm, bytes, float], None]:
    """A LinkSession packet sink that decodes the payload's security events (AUTH_*) and gives
    each to every handler, its fault by name."""
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
            for handler in handlers:
                handler(decoded.name, values)

    return sink


def counter_path(key_file: Path) -> Path:
    """Where the ARSN counter of a key file is kept."""
    return key_file.with_name(key_file.name + ".arsn")


def keys_from_environment() -> Path | None:
    """The key file $GROUNDSW_KEYS names, if set."""
    value = os.environ.get(KEYS_ENV)
    return Path(value) if value else None
