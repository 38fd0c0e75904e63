"""The ground's transfer errors: bad input on the ground, a transfer that stopped moving,
a file that arrived other than announced.
"""

from __future__ import annotations

from groundsw.payload_link import LinkTimeout
from groundsw.verification import CommandFailed

# Rounds of resending that move nothing forward before the transfer is declared stalled.
MAX_STALLED_ROUNDS = 5


class GroundInputError(Exception):
    """Bad input on the ground: a missing or unreadable file, a bad name or value."""


class TransferStalled(LinkTimeout):
    """A transfer stopped moving forward: the link loses what is sent."""


class TransferFailed(CommandFailed):
    """A transfer ended without a verified file (the checksum did not match)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, None)
