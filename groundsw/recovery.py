"""Riding out a link outage without losing or repeating a command.

When FOP-1 gives up (timer T1 at its transmission limit), the frames it held may or may not have
reached the payload. The next CLCW settles it: FARM-1 has accepted exactly the frames whose
N(S) lies before its N(R). Those are done; the others are sent again under a re-initiated AD
service, in their original order. If N(R) is not where those frames can put it (the payload
restarted, or another ground commanded it), nothing can be known and nothing is resent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spacelink.errors import Cop1Error


@dataclass(frozen=True)
class Unconfirmed:
    """An FDU FOP-1 dropped in an alert: `seq` is the N(S) it went out with, None if never sent."""

    tag: object
    data: bytes
    seq: int | None


class RecoveryError(Cop1Error):
    """The payload's CLCW does not fit the frames that were outstanding."""


@dataclass
class OutageRecovery:
    """The FDUs held through an outage, oldest first."""

    held: list[Unconfirmed] = field(default_factory=list)

    def add(self, dropped: list[Unconfirmed]) -> None:
        # A second alert before the link came back: its frames were re-sent copies of the
        # same FDUs under the numbers the recovery gave them, and they come after any that
        # are still held.
        self.held.extend(dropped)

    def resolve(self, n_r: int) -> tuple[list[Unconfirmed], list[Unconfirmed]]:
        """(accepted by the FARM, to send again), given the N(R) of a CLCW after the outage."""
        sent = [u for u in self.held if u.seq is not None]
        if not sent:
            return [], list(self.held)
        base = sent[0].seq
        assert base is not None
        accepted = (n_r - base) & 0xFF
        if accepted > len(sent):
            raise RecoveryError(
                f"the payload's V(R) is {n_r}, but the frames outstanding were "
                f"{base}..{(base + len(sent) - 1) & 0xFF}: it restarted or was commanded by "
                "another ground, so those commands' fate is unknown"
            )
        done = sent[:accepted]
        return done, [u for u in self.held if u not in done]
