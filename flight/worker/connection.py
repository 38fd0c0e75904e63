"""The link between the payload and a worker: `multiprocessing.connection` over a socket.

The payload listens (a Unix socket of mode 0600, or TCP for a remote board) and the worker
connects; both prove they hold the authkey by the HMAC challenge of `multiprocessing.connection`.
Messages are pickled with protocol 5, large buffers (numpy arrays) out of band: each travels as
it is, after the pickle, instead of being copied into it. Both ends hold the key, so the
pickles they exchange are trusted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import socket
import stat
import struct
import threading
import time
from dataclasses import dataclass
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from pathlib import Path
from typing import Any

from flight.worker.errors import MessageEncodeError, ProtocolError

logger = logging.getLogger(__name__)

#: A Unix socket path, or (host, port) for TCP.
Address = str | tuple[str, int]

#: sun_path holds 108 bytes with the terminating NUL.
_UNIX_PATH_MAX = 107
_COUNT = struct.Struct("!I")
_SIZE = struct.Struct("!Q")
#: Parts per sendmsg (Linux takes up to 1024).
_IOV_MAX = 64
#: A frame larger than this is taken for a corrupt stream rather than allocated.
_MAX_FRAME = 1 << 34


def parse_address(text: str) -> Address:
    """'/run/x.sock' or 'unix:/run/x.sock' → a Unix path; 'host:port' or 'tcp:host:port' → TCP."""
    if text.startswith("unix:"):
        return text.removeprefix("unix:")
    if text.startswith("/") or text.startswith("."):
        return text
    host, sep, port = text.removeprefix("tcp:").rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"worker address: expected a socket path or HOST:PORT, found {text!r}")
    return host.strip("[]"), int(port)


def format_address(address: Address) -> str:
    """The inverse of `parse_address`, for a command line."""
    if isinstance(address, str):
        return f"unix:{address}"
    host, port = address
    return f"tcp:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"


def _family(address: Address) -> socket.AddressFamily:
    if isinstance(address, str):
        return socket.AF_UNIX
    return socket.AF_INET6 if ":" in address[0] else socket.AF_INET


def _set_receive_timeout(sock: socket.socket, seconds: float) -> None:
    """A kernel timeout on reads of the raw descriptor (0: none): bounds the HMAC handshake,
    which `multiprocessing.connection` does with blocking reads of its own."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)


@dataclass(frozen=True, slots=True)
class Encoded:
    """A pickled message: its frame and the out-of-band buffers that follow it."""

    frame: bytes
    buffers: list[memoryview]


def encode(message: object) -> Encoded:
    """Pickles `message` with protocol 5; MessageEncodeError if it cannot be."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
        try:
            raws = [buffer.raw() for buffer in buffers]
        except BufferError:  # a non-contiguous buffer: in band, then
            data, raws = pickle.dumps(message, protocol=5), []
    except Exception as e:  # pickling raises whatever the object's reducer raises
        raise MessageEncodeError(f"unpicklable {type(message).__name__}: {e}") from e
    header = _COUNT.pack(len(raws)) + b"".join(_SIZE.pack(raw.nbytes) for raw in raws)
    frame = header + data
    return Encoded(_SIZE.pack(len(frame)) + frame, raws)


class Channel:
    """One end of an authenticated connection: whole messages, sent by any thread, read by one.

    On the wire, after the handshake: an 8-byte length, the frame (buffer count, buffer sizes,
    pickle), then the out-of-band buffers as they are. Written with one sendmsg, read with
    recv_into straight into their final buffers (multiprocessing's own framing copies a
    large message three times on the way in).
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()
        self._length = bytearray(_SIZE.size)

    def send(self, message: object) -> None:
        """Sends `message`; MessageEncodeError (and nothing written) if it cannot be pickled,
        OSError if the connection is gone."""
        self.send_encoded(encode(message))

    def send_encoded(self, encoded: Encoded) -> None:
        """Sends a message encoded beforehand (outside the caller's locks)."""
        parts = [memoryview(encoded.frame), *(b for b in encoded.buffers if b.nbytes)]
        with self._send_lock:
            while parts:
                sent = self._sock.sendmsg(parts[:_IOV_MAX])
                while sent:
                    if sent >= parts[0].nbytes:
                        sent -= parts.pop(0).nbytes
                    else:
                        parts[0], sent = parts[0][sent:], 0

    def poll(self, timeout_s: float) -> bool:
        """Whether a message (or the end of the connection) is waiting, after up to `timeout_s`."""
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        return bool(poller.poll(timeout_s * 1000))

    def recv(self) -> Any:
        """The next message; EOFError when the peer closed, OSError when the socket failed."""
        self._read_into(memoryview(self._length))
        (length,) = _SIZE.unpack(self._length)
        if length > _MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes: at most {_MAX_FRAME}")
        frame = bytearray(length)
        self._read_into(memoryview(frame))
        try:
            (count,) = _COUNT.unpack_from(frame)
            offsets = range(_COUNT.size, _COUNT.size + count * _SIZE.size, _SIZE.size)
            sizes = [_SIZE.unpack_from(frame, offset)[0] for offset in offsets]
        except struct.error as e:
            raise ProtocolError(f"message header: {e}") from None
        buffers = []
        for size in sizes:
            # A bytearray, so that arrays rebuilt on it are writable.
            buffer = bytearray(size)
            self._read_into(memoryview(buffer))
            buffers.append(buffer)
        body = memoryview(frame)[_COUNT.size + count * _SIZE.size :]
        try:
            return pickle.loads(body, buffers=buffers)
        except Exception as e:  # any unpickling failure is the peer's fault
            raise ProtocolError(f"undecodable message: {type(e).__name__}: {e}") from None

    def _read_into(self, view: memoryview) -> None:
        while view.nbytes:
            n = self._sock.recv_into(view)
            if n == 0:
                raise EOFError("connection closed")
            view = view[n:]

    def shutdown(self) -> None:
        """Ends the connection both ways: a thread blocked in recv() gets EOFError."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.shutdown()
        self._sock.close()


def _handshake(sock: socket.socket, authkey: bytes, timeout_s: float, *, server: bool) -> Channel:
    """The HMAC challenge both ways, by multiprocessing.connection on a duplicate descriptor."""
    _set_receive_timeout(sock, timeout_s)
    try:
        with Connection(os.dup(sock.fileno())) as conn:
            if server:
                deliver_challenge(conn, authkey)
                answer_challenge(conn, authkey)
            else:
                answer_challenge(conn, authkey)
                deliver_challenge(conn, authkey)
    except BaseException:
        sock.close()
        raise
    _set_receive_timeout(sock, 0)
    return Channel(sock)


class WorkerListener:
    """Where the payload waits for its worker to connect."""

    def __init__(self, address: Address) -> None:
        family = _family(address)
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if isinstance(address, str):
                if len(os.fsencode(address)) > _UNIX_PATH_MAX:
                    raise ValueError(
                        f"worker socket path: at most {_UNIX_PATH_MAX} bytes, found {address!r}"
                    )
                with contextlib.suppress(FileNotFoundError):
                    if stat.S_ISSOCK(os.lstat(address).st_mode):
                        os.unlink(address)  # left by a payload that died
                self._sock.bind(address)
                # Only this user may connect; the key is checked anyway, this keeps others from
                # even trying. The directory it is in should be private too.
                os.chmod(address, 0o600)
            else:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._sock.bind(address)
            self._sock.listen(4)
        except BaseException:
            self._sock.close()
            raise
        bound = self._sock.getsockname()
        self.address: Address = bound if isinstance(bound, str) else (bound[0], bound[1])

    @classmethod
    def in_directory(cls, directory: Path, name: str) -> WorkerListener:
        """A Unix socket `<directory>/worker-<name>.sock`."""
        return cls(str(directory / f"worker-{name}.sock"))

    def accept(self, authkey: bytes, timeout_s: float, handshake_timeout_s: float = 5.0) -> Channel:
        """The next peer that proves it holds `authkey`; TimeoutError when none connected within
        `timeout_s`. Peers that fail the challenge (or take too long) are closed and waited past."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no worker connected within {timeout_s:g} s")
            self._sock.settimeout(remaining)
            try:
                sock, _ = self._sock.accept()
            except TimeoutError:
                continue
            sock.setblocking(True)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                return _handshake(sock, authkey, handshake_timeout_s, server=True)
            except (OSError, EOFError, AuthenticationError) as e:
                logger.warning("worker connection refused: %s: %s", type(e).__name__, e)

    def close(self) -> None:
        """Stops listening and removes a Unix socket file."""
        self._sock.close()
        if isinstance(self.address, str):
            with contextlib.suppress(OSError):
                os.unlink(self.address)


def connect(address: Address, authkey: bytes, timeout_s: float = 10.0) -> Channel:
    """Connects to the payload and answers its challenge (retrying while nobody listens yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        sock = socket.socket(_family(address), socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            sock.connect(address)
            sock.setblocking(True)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return _handshake(sock, authkey, max(0.05, deadline - time.monotonic()), server=False)
        except (ConnectionRefusedError, FileNotFoundError):
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
        except BaseException:
            sock.close()
            raise
