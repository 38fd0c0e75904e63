"""systemd's notify protocol (sd_notify(3)): newline-separated VAR=value datagrams to the
Unix socket $NOTIFY_SOCKET names.

A few lines of our own rather than a package: the protocol is one sendto(); the maintained
binding (systemd-python) needs libsystemd's headers to build on the board, and the pure-Python
one on PyPI (sdnotify, last released in 2017) swallows every error with a bare except and
leaves $WATCHDOG_USEC and $WATCHDOG_PID to the caller.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import MutableMapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


class NotifyError(Exception):
    """$NOTIFY_SOCKET or $WATCHDOG_USEC holds something this end cannot use."""


def socket_address(value: str) -> str:
    """The AF_UNIX address $NOTIFY_SOCKET names: a path, or "@name" in the abstract namespace."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # systemd also offers vsock: addresses, for virtual machines; a board has no use for them.
    raise NotifyError(f"{NOTIFY_SOCKET}={value!r}: expected an absolute path or @name")


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """What the supervisor asked for: where to notify, and the watchdog time (None: none)."""

    socket: str | None
    watchdog_s: float | None


def take_settings(environ: MutableMapping[str, str], pid: int) -> NotifySettings:
    """Read the supervisor's variables and remove them, so that child processes (workers, the
    reboot command) do not take the payload's socket or watchdog for theirs."""
    address = environ.pop(NOTIFY_SOCKET, None) or None
    usec = environ.pop(WATCHDOG_USEC, None)
    watchdog_pid = environ.pop(WATCHDOG_PID, None)
    watchdog_s = None
    if usec is not None and (watchdog_pid is None or watchdog_pid == str(pid)):
        try:
            watchdog_s = int(usec) / 1e6
        except ValueError:
            raise NotifyError(f"{WATCHDOG_USEC}={usec!r}: expected microseconds") from None
        if watchdog_s <= 0:
            raise NotifyError(f"{WATCHDOG_USEC}={usec!r}: expected more than 0")
    return NotifySettings(None if address is None else socket_address(address), watchdog_s)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Notifier:
    """Sends notifications to the supervisor's socket; a failed send is logged, never raised
    (the payload serves the link whether or not its supervisor listens)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._failing = False

    def send(self, *assignments: str) -> bool:
        """One datagram of `VAR=value` lines; False when it could not be sent."""
        try:
            self._socket.sendto("\n".join(assignments).encode(), socket.MSG_DONTWAIT, self.address)
        except OSError as exc:
            if not self._failing:
                log.warning("cannot notify the supervisor: %s", exc)
            self._failing = True
            return False
        self._failing = False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={_one_line(status)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={_one_line(status)}")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={_one_line(status)}")

    def close(self) -> None:
        self._socket.close()
