"""Authentication of the uplink on the payload: every TC frame's security processing (after the
frame checks, before FARM-1), each SA's anti-replay state kept exactly across restarts (the
ledger), the challenge that recovers a lost state, and key rotation. Refusals are counted and
reported as events."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flight.counters import LinkCounters
from flight.protection.upsets import UpsetLog
from flight.security.anti_replay import AntiReplayLedger
from spacelink.errors import DiscardReason
from spacelink.keystore import write_keys
from spacelink.sdls import (
    NONCE_LENGTH,
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
CHALLENGE_REPEAT_S = 10.0
REFUSAL_REPORT_S = 1.0
LEDGER_CHECK_S = 10.0

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
    last_arsn: int = 0
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
        """Load every SA's state from the ledger; challenge those whose state is lost or was
        never recorded. `first_boot`: the state directory is new, so a missing ledger is a fresh
        one, not a lost one. OSError when the ledger cannot be read or written."""
        self.key_file = key_file
        self.counters = counters
        self.stats = AuthStats()
        self._raise = raise_event
        self._monotonic = monotonic
        self.ledger = AntiReplayLedger(state_dir / STATE_DIR, upsets)
        loaded = self.ledger.load((sa.spi for sa in associations), first_boot=first_boot)
        self.lost = loaded.lost
        self.processor = SecurityProcessor(associations, loaded.states)
        for spi in sorted(loaded.to_challenge):
            if self.processor.challenge(spi) is None:  # one still waiting keeps its nonce
                self.processor.set_challenge(spi, random_octets(NONCE_LENGTH))
        # Saved before the link is served: a restart before an answer asks the same question.
        self.ledger.save(self.processor.states())
        self._announced: dict[int, float] = {}
        self._ledger_checked = monotonic()
        self._save_failed = False

    def start(self) -> None:
        """After the link is up: announce every challenge waiting for its answer."""
        if not self.challenges:
            return
        if self.lost:
            log.error("anti-replay state lost: challenging every security association")
        else:
            log.warning(
                "challenging %d security association(s) with no saved state", self.challenges
            )
        self._announce_challenges(0.0)

    def verify(self, frame: TcFrame, primary_header: bytes) -> TcFrame | None:
        """`frame` with its plain data field when authentic and fresh; None (counted, reported)
        when not. The SA's new state is saved before the frame goes on."""
        try:
            verified = self.processor.process(frame, primary_header)
        except SecurityError as exc:
            self.counters.discard(DISCARD_REASONS[exc.fault])
            self._refused(exc)
            log.debug("TC frame discarded: %s", exc)
            return None
        self.stats.verified += 1
        self.stats.last_arsn = max(self.stats.last_arsn, verified.arsn)
        self._save(verified.spi, verified.arsn)
        if verified.answered_challenge:
            log.warning("SPI %d: challenge answered at ARSN %d", verified.spi, verified.arsn)
            self._raise("AUTH_CHALLENGE_ANSWERED", spi=verified.spi, arsn=verified.arsn)
        return verified.frame

    def _save(self, spi: int, arsn: int) -> None:
        try:
            self.ledger.save(self.processor.states())
        except OSError as exc:  # memory still guards until a restart; the next frame retries
            log.error("anti-replay state not saved: %s", exc)
            if not self._save_failed:
                self._save_failed = True
                self._raise("AUTH_COUNTER_NOT_SAVED", spi=spi, arsn=arsn)
            return
        self._save_failed = False

    def _refused(self, exc: SecurityError) -> None:
        if exc.fault is SecurityFault.BAD_MAC and exc.spi is not None:
            # A ground that missed the challenge, or lost the nonce, learns it from the next
            # frame it sends.
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
            last=exc.last or 0,
            suppressed=min(refusals.suppressed, 0xFFFF),
        )
        refusals.reported_at = now
        refusals.suppressed = 0

    def tick(self) -> None:
        """Repeat the challenges waiting for an answer; put the ledger back where it lost what
        memory holds (an upset, a removed file)."""
        self._announce_challenges(CHALLENGE_REPEAT_S)
        now = self._monotonic()
        if now - self._ledger_checked < LEDGER_CHECK_S:
            return
        self._ledger_checked = now
        try:
            self.ledger.scrub(self.processor.states(), self._repaired)
        except OSError as exc:
            log.error("anti-replay ledger not repaired: %s", exc)

    def _repaired(self, why: str) -> None:
        log.error("anti-replay ledger written again: %s", why)

    def _announce_challenges(self, interval: float, only: int | None = None) -> None:
        """For each SA (or `only`) with a nonce not announced within `interval` seconds:
        AUTH_CHALLENGE while its challenge waits, AUTH_NONCE after (only on a refusal)."""
        now = self._monotonic()
        for spi in self.processor.spis if only is None else (only,):
            state = self.processor.state(spi)
            if not state.challenged and (only is None or not state.nonce):
                continue
            last = self._announced.get(spi)
            if last is None or now - last >= interval:
                name = "AUTH_CHALLENGE" if state.challenged else "AUTH_NONCE"
                self._raise(name, spi=spi, nonce=state.nonce)
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
