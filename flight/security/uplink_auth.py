"""Authentication of the uplink on the payload: every TC frame's security processing (after the
frame checks, before FARM-1), the anti-replay counters kept across restarts, the challenge that
recovers a lost counter, and key rotation. Refusals are counted and reported as events."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flight.counters import LinkCounters
from flight.protection.triplicate import FILE_NAMES, TripleStore
from flight.protection.upsets import UpsetLog
from spacelink.errors import DiscardReason
from spacelink.keystore import write_keys
from spacelink.sdls import (
    MAX_ARSN,
    KeyWrapError,
    SecurityAssociation,
    SecurityError,
    SecurityFault,
    SecurityProcessor,
    unwrap_key,
)
from spacelink.tcframe import TcFrame

log = logging.getLogger(__name__)

STATE_DIR = "security"
# The highest ARSN accepted frames may carry before the store must be written again: the
# counter is saved in blocks, so that a frame costs no disk write. After a restart every SA
# goes on above it, so a ground's counter may be up to a block behind (it catches up from the
# first AUTH_REFUSED; docs/security.md).
RESERVED_KEY = "arsn_reserved"
# True from the moment the counter is found lost until every SA has answered its challenge: a
# restart in between must challenge again, not take the store's rewritten default as fresh.
LOST_KEY = "arsn_lost"
ARSN_BLOCK = 4096
CHALLENGE_OCTETS = 16
CHALLENGE_REPEAT_S = 10.0
REFUSAL_REPORT_S = 1.0
STORE_CHECK_S = 10.0

DISCARD_REASONS = {
    SecurityFault.TOO_SHORT: DiscardReason.AUTH_TOO_SHORT,
    SecurityFault.UNKNOWN_SPI: DiscardReason.AUTH_UNKNOWN_SPI,
    SecurityFault.BAD_MAC: DiscardReason.AUTH_BAD_MAC,
    SecurityFault.REPLAY: DiscardReason.AUTH_REPLAY,
}
# The dictionary's AuthFault names.
FAULT_NAMES = {fault: fault.name for fault in SecurityFault}

RaiseEvent = Callable[..., None]


class KeyRotationError(Exception):
    """KEY_ROTATE refused; `failure` names the dictionary's failure code."""

    def __init__(self, failure: str, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure


@dataclass
class _Refusals:
    """Refusals of one fault: when the last event went out, how many since."""

    reported_at: float | None = None
    suppressed: int = 0


@dataclass
class AuthStats:
    """What housekeeping reports about the uplink's authentication."""

    verified: int = 0
    last_arsn: int = -1
    rotations: int = 0
    refusals: dict[SecurityFault, _Refusals] = field(
        default_factory=lambda: {fault: _Refusals() for fault in SecurityFault}
    )


class UplinkAuthenticator:
    """The payload's end of the authenticated uplink, for the main thread."""

    def __init__(
        self,
        associations: list[SecurityAssociation],
        key_file: Path,
        state_dir: Path,
        upsets: UpsetLog,
        counters: LinkCounters,
        raise_event: RaiseEvent,
        monotonic: Callable[[], float],
        *,
        first_boot: bool,
        random_octets: Callable[[int], bytes] = os.urandom,
    ) -> None:
        """Load the saved counter (a challenge on every SA when it was lost). `first_boot`: the
        state directory is new, so a missing store is a fresh one, not a lost one. OSError when
        the store cannot be written."""
        self.processor = SecurityProcessor(associations)
        self.key_file = key_file
        self.counters = counters
        self.stats = AuthStats()
        self._raise = raise_event
        self._monotonic = monotonic
        self._random = random_octets
        directory = state_dir / STATE_DIR
        existed = any(os.path.lexists(directory / name) for name in FILE_NAMES)
        self.store = TripleStore(
            directory, {RESERVED_KEY: -1, LOST_KEY: False}, upsets, name="security state"
        )
        self._reserved = int(self.store.get(RESERVED_KEY))
        # A store gone from a state directory in use is as lost as one with no intact copy.
        self._lost = (
            bool(self.store.loaded.lost)
            or bool(self.store.get(LOST_KEY))
            or not (existed or first_boot)
        )
        for spi in self.processor.spis:
            self.processor.restore(spi, self._reserved)
        if self._lost:
            self.store.set(LOST_KEY, True)
            # Set now, announced by start(): no frame is accepted on a lost counter meanwhile.
            for spi in self.processor.spis:
                self.processor.set_challenge(spi, self._random(CHALLENGE_OCTETS))
        self._announced: dict[int, float] = {}
        self._store_checked = monotonic()
        self._save_failed = False

    def start(self) -> None:
        """After the link is up: announce the challenge of every SA if the counter was lost."""
        if not self.challenges:
            return
        log.error("anti-replay counter lost: challenging every security association")
        self._announce_challenges(0.0)

    def verify(self, frame: TcFrame, primary_header: bytes) -> TcFrame | None:
        """`frame` with its plain data field when authentic and fresh; None (counted, reported)
        when not."""
        try:
            verified = self.processor.process(frame, primary_header)
        except SecurityError as exc:
            self.counters.discard(DISCARD_REASONS[exc.fault])
            self._refused(exc)
            log.debug("TC frame discarded: %s", exc)
            return None
        self.stats.verified += 1
        self.stats.last_arsn = max(self.stats.last_arsn, verified.arsn)
        if verified.answered_challenge:
            self._raise("AUTH_CHALLENGE_ANSWERED", spi=verified.spi, arsn=verified.arsn)
        lost = self._lost and self.challenges > 0
        if verified.arsn >= self._reserved or lost != self._lost:
            # Saved before the frame acts: after a restart no ARSN up to it is accepted again.
            # Never past the last ARSN: an SA near its end reserves what is left of it.
            self._save(min(max(verified.arsn + ARSN_BLOCK, self._reserved), MAX_ARSN), lost)
        return verified.frame

    def _save(self, reserved: int, lost: bool) -> None:
        try:
            self.store.update({RESERVED_KEY: reserved, LOST_KEY: lost})
        except OSError as exc:  # memory still guards until a restart; the next frame retries
            log.error("anti-replay counter not saved: %s", exc)
            if not self._save_failed:
                self._save_failed = True
                self._raise(
                    "AUTH_COUNTER_NOT_SAVED", reserved=reserved, saved=max(self._reserved, 0)
                )
            return
        self._save_failed = False
        self._reserved = reserved
        self._lost = lost

    def _refused(self, exc: SecurityError) -> None:
        if exc.fault is SecurityFault.BAD_MAC and exc.spi is not None:
            # A ground that missed the challenge learns it from the next frame it sends.
            self._announce_challenges(REFUSAL_REPORT_S, only=exc.spi)
        refusals = self.stats.refusals[exc.fault]
        now = self._monotonic()
        if refusals.reported_at is not None and now - refusals.reported_at < REFUSAL_REPORT_S:
            refusals.suppressed += 1
            return
        self._raise(
            "AUTH_REFUSED",
            fault=FAULT_NAMES[exc.fault],
            spi=exc.spi or 0,
            arsn=exc.arsn or 0,
            last=max(exc.last or 0, 0),  # -1 (nothing accepted yet) goes out as 0
            suppressed=min(refusals.suppressed, 0xFFFF),
        )
        refusals.reported_at = now
        refusals.suppressed = 0

    def tick(self) -> None:
        """Repeat pending challenges; put back a saved counter the store lost since start."""
        self._announce_challenges(CHALLENGE_REPEAT_S)
        now = self._monotonic()
        if now - self._store_checked < STORE_CHECK_S:
            return
        self._store_checked = now
        # The processor's counter is a fourth copy: a store that lost every copy of its value
        # (back to the default) would let a restart accept old frames again.
        saved = self.store.values()
        if int(saved[RESERVED_KEY]) < self._reserved or saved[LOST_KEY] is not self._lost:
            log.error("anti-replay counter lost from the security store: written again")
            self._save(self._reserved, self._lost)

    def _announce_challenges(self, interval: float, only: int | None = None) -> None:
        """AUTH_CHALLENGE for each challenged SA not announced within `interval` seconds."""
        now = self._monotonic()
        for spi in self.processor.spis if only is None else (only,):
            nonce = self.processor.challenge(spi)
            if nonce is None:
                continue
            last = self._announced.get(spi)
            if last is None or now - last >= interval:
                self._raise("AUTH_CHALLENGE", spi=spi, nonce=nonce)
                self._announced[spi] = now

    @property
    def challenges(self) -> int:
        """SAs waiting for a frame that answers their challenge."""
        return sum(1 for spi in self.processor.spis if self.processor.challenge(spi))

    def rotate(self, spi: int, wrapped: bytes) -> None:
        """Replace `spi`'s key by `wrapped` unwrapped under its current key, saved first;
        KeyRotationError naming the failure code when it cannot be."""
        try:
            current = self.processor.association(spi)
        except KeyError:
            raise KeyRotationError("KEY_UNKNOWN_SPI", f"no security association {spi}") from None
        try:
            key = unwrap_key(wrapped, current)
            new = SecurityAssociation(spi, current.algorithm, key)
        except (KeyWrapError, ValueError) as exc:
            raise KeyRotationError("KEY_UNWRAP_FAILED", str(exc)) from None
        associations = [
            new if other == spi else self.processor.association(other)
            for other in self.processor.spis
        ]
        try:
            write_keys(self.key_file, associations, KEY_FILE_COMMENT)
        except OSError as exc:
            raise KeyRotationError(
                "KEY_NOT_SAVED", f"key file {self.key_file}: {exc.strerror or exc}"
            ) from None
        self.processor.replace_key(spi, key)
        self.stats.rotations += 1
        self._raise("KEY_ROTATED", spi=spi)


KEY_FILE_COMMENT = "Uplink keys of this payload (docs/security.md). Owner only: mode 0600."
