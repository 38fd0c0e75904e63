"""Opening the serial link: the one module of spacelink that touches I/O.

The codecs and state machines never import it; flight, ground and bench share it so that a
wrong port gives the same plain sentence everywhere.
"""

from __future__ import annotations

import errno
import time

import serial

from spacelink.errors import LinkError
from spacelink.icd import line_seconds


class PortError(LinkError):
    """The serial port cannot be opened or has failed."""


def open_port(port: str, baud: int, *, read_timeout: float = 0.05) -> serial.SerialBase:
    """Open a device path or pyserial URL as 8N1 at `baud`, without flow control."""
    if baud <= 0:
        raise PortError(f"baud rate {baud} is not a positive number")
    try:
        return serial.serial_for_url(
            port,
            baudrate=baud,
            bytesize=serial.EIGHTBITS,
            parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE,
            timeout=read_timeout,
            exclusive=True if "://" not in port else None,
        )
    except (serial.SerialException, ValueError, OSError) as exc:
        raise PortError(f"cannot open serial port {port}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        return "no such device"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied (is the user in the dialout group?)"
    if code == errno.EBUSY or "exclusively lock" in str(exc) or "busy" in str(exc).lower():
        return "the port is in use by another program"
    text = str(exc)
    if code == errno.ENOTTY or "Inappropriate ioctl" in text:
        return "not a serial port"
    # pyserial wraps OSError text as "[Errno N] could not open port X: [Errno N] reason"
    if "] " in text:
        text = text.rsplit("] ", 1)[-1]
    return text.rstrip(".") or type(exc).__name__


def read_burst(port: serial.SerialBase, gather_s: float) -> bytes:
    """Wait up to the port's timeout for an octet, then gather what follows for `gather_s`.

    Taking the line in bursts rather than as each octet arrives costs a few milliseconds of
    latency and saves most of the wake-ups: at 921600 baud that is the difference between a
    few and many per cent of a core.
    """
    first = bytes(port.read(1))
    if not first:
        return first
    time.sleep(gather_s)
    return first + read_available(port)


def read_next(port: serial.SerialBase, gather_s: float, awaited_octets: int, baud: int) -> bytes:
    """The next octets from the line. `awaited_octets`: how much of a unit already begun (a
    CLTU, a TM frame) is still on its way. Sleep for its line time (at most the port's timeout)
    and take it whole: on these machines a wake-up costs several times the CPU of decoding what
    it brings. With nothing awaited, or nothing come, as `read_burst`."""
    if awaited_octets > 0:
        limit = port.timeout if port.timeout is not None else _AWAIT_LIMIT_S
        time.sleep(min(line_seconds(awaited_octets, baud) + _AWAIT_MARGIN_S, limit))
        data = read_available(port)
        if data:
            return data
    return read_burst(port, gather_s)


def read_available(port: serial.SerialBase) -> bytes:
    """Everything the port holds now, without waiting."""
    if isinstance(port, serial.Serial):  # an OS serial port or pty: in_waiting is exact
        waiting = port.in_waiting
        return bytes(port.read(waiting)) if waiting else b""
    # URL backends (socket://, loop://...) only say whether anything is waiting, not how much.
    saved = port.timeout
    port.timeout = 0
    try:
        return bytes(port.read(_URL_READ_SIZE))
    finally:
        port.timeout = saved


_URL_READ_SIZE = 65536
# Added to the line time of what is awaited: the line's own jitter.
_AWAIT_MARGIN_S = 0.0005
# The longest sleep for awaited octets on a port that blocks without a timeout.
_AWAIT_LIMIT_S = 0.05
