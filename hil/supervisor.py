"""The bench's service manager: runs a command as systemd runs a Type=notify unit with
Restart=always and WatchdogSec (the state machine in hil/supervision.py), so that the payload on
a bench lives under the supervision it has on a board.

It gives the process a $NOTIFY_SOCKET (an abstract Unix socket: nothing on disk) and
$WATCHDOG_USEC, takes notifications only from the current main process (NotifyAccess=main, by
the sender's credentials), and calls the exit recorder (ExecStopPost) after every end with what
it saw. One thread per supervisor spawns, watches and restarts the process: the process's
parent-death signal follows that thread (Linux), which lives as long as the process does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO

from hil.supervision import (
    Action,
    Phase,
    RecordExit,
    SendSignal,
    ServiceMachine,
    ServicePolicy,
    Spawn,
)

log = logging.getLogger(__name__)

# How often the thread looks at the process when no notification comes: the restart latency.
POLL_S = 0.02
RECORD_TIMEOUT_S = 30.0
_UCRED = struct.Struct("3i")  # pid, uid, gid (SCM_CREDENTIALS)


class SupervisorError(Exception):
    """The service could not be started, or its supervisor stopped."""


@dataclass(frozen=True, slots=True)
class Exit:
    """One end of the service's process, as the supervisor saw and recorded it."""

    pid: int
    returncode: int
    result: str
    exit_code: str
    exit_status: str
    at: float  # monotonic


def parse_notification(data: bytes) -> dict[str, str]:
    """sd_notify's newline-separated VAR=value assignments."""
    message = {}
    for line in data.decode(errors="replace").split("\n"):
        name, sep, value = line.partition("=")
        if sep:
            message[name] = value
    return message


class Supervisor:
    """Runs `argv` under `policy` until stopped; `process` is the current main process."""

    def __init__(
        self,
        argv: list[str],
        policy: ServicePolicy,
        *,
        stop_post: list[str] | None = None,
        output: IO[bytes] | None = None,
        preexec_fn: Callable[[], None] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`stop_post`: the exit recorder's command (ExecStopPost); `output`: where the
        process's and the recorder's stdout and stderr go."""
        self.argv = argv
        self.policy = policy
        self.stop_post = stop_post
        self.output = output
        self.preexec_fn = preexec_fn
        self.env = dict(os.environ if env is None else env)
        self.machine = ServiceMachine(policy)
        self.exits: list[Exit] = []
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._cond = threading.Condition()
        self._requests: list[Callable[[float], list[Action]]] = []
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._address = ""
        self.error: BaseException | None = None

    # -- what a caller sees -------------------------------------------------------------------

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        with self._cond:
            return self._process

    @property
    def phase(self) -> Phase:
        with self._cond:
            return self.machine.phase

    def wait_ready(self, starts: int, timeout: float) -> subprocess.Popen[bytes]:
        """The main process of start number `starts` (1: the first), once it said READY=1;
        SupervisorError when it does not within `timeout`, or the service failed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self.starts >= starts and self.machine.phase is Phase.RUNNING):
                if self.machine.phase is Phase.FAILED:
                    raise SupervisorError(self.machine.failure)
                if self.error is not None:
                    raise SupervisorError(f"the supervisor failed: {self.error!r}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SupervisorError(
                        f"start {starts} not ready within {timeout:g} s "
                        f"(start {self.starts}, {self.machine.phase.value})"
                    )
                self._cond.wait(min(remaining, 0.1))
            assert self._process is not None
            return self._process

    # -- commands -----------------------------------------------------------------------------

    def start(self, ready_timeout: float) -> subprocess.Popen[bytes]:
        """Start the service and wait for its READY=1; SupervisorError when its process ends
        before (the start is then not retried) or does not get ready in time."""
        if self._thread is not None:
            raise SupervisorError("already started")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        name = f"hil-supervisor-{os.getpid()}-{secrets.token_hex(6)}"
        self._socket.bind("\0" + name)
        self._address = "@" + name
        self._requests.append(self.machine.start)
        self._thread = threading.Thread(target=self._run, name="hil-supervisor", daemon=True)
        self._thread.start()
        try:
            return self.wait_ready(1, ready_timeout)
        except SupervisorError:
            self.stop(signal.SIGKILL)
            raise

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Stop on purpose (no restart) with `sig`, SIGKILL after `timeout`; the last process's
        return code (None: none ran)."""
        thread = self._thread
        if thread is None:
            return None
        with self._cond:
            self._requests.append(lambda now: self.machine.stop(sig, now, timeout))
            self._cond.notify_all()
        thread.join(timeout + self.policy.abort_timeout_s + RECORD_TIMEOUT_S)
        if thread.is_alive():
            raise SupervisorError("the supervisor thread did not stop")
        self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        return self.exits[-1].returncode if self.exits else None

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            log.exception("supervisor failed")
            self.error = exc
            process = self._process
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        finally:
            with self._cond:
                self._cond.notify_all()

    def _loop(self) -> None:
        assert self._socket is not None
        self._socket.settimeout(POLL_S)
        while True:
            with self._cond:
                requests, self._requests = self._requests, []
                actions = [a for request in requests for a in request(time.monotonic())]
            self._do(actions)
            self._receive()
            process = self._process
            if process is not None:
                returncode = process.poll()
                if returncode is not None:
                    self._ended(process, returncode)
            with self._cond:
                actions = self.machine.tick(time.monotonic())
            self._do(actions)
            with self._cond:
                self._cond.notify_all()
                done = self.machine.phase in (Phase.IDLE, Phase.FAILED) and not self._requests
            if done and self._process is None:
                return

    def _receive(self) -> None:
        assert self._socket is not None
        try:
            data, ancillary, _flags, _address = self._socket.recvmsg(
                4096, socket.CMSG_SPACE(_UCRED.size)
            )
        except TimeoutError:
            return
        sender = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                sender = _UCRED.unpack(payload[: _UCRED.size])[0]
        process = self._process
        if process is None or sender != process.pid:
            log.debug("notification from pid %s ignored (not the main process)", sender)
            return
        message = parse_notification(data)
        with self._cond:
            actions = self.machine.notified(message, time.monotonic())
        self._do(actions)

    def _ended(self, process: subprocess.Popen[bytes], returncode: int) -> None:
        with self._cond:
            self._process = None
            actions = self.machine.exited(returncode, time.monotonic())
        for action in actions:
            if isinstance(action, RecordExit):
                self.exits.append(
                    Exit(
                        process.pid,
                        returncode,
                        action.result,
                        action.exit_code,
                        action.exit_status,
                        time.monotonic(),
                    )
                )
        self._do(actions)

    def _do(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Spawn):
                self._spawn()
            elif isinstance(action, SendSignal):
                process = self._process
                if process is not None and process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(action.signal)
            elif isinstance(action, RecordExit):
                self._record(action)

    def _spawn(self) -> None:
        env = {**self.env, "NOTIFY_SOCKET": self._address}
        if self.policy.watchdog_s is not None:
            env["WATCHDOG_USEC"] = str(round(self.policy.watchdog_s * 1e6))
        # No $WATCHDOG_PID: the child's pid is not known before the exec that takes this
        # environment; without it the watchdog is the main process's (sd_watchdog_enabled(3)).
        process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT if self.output is not None else None,
            env=env,
            preexec_fn=self.preexec_fn,
        )
        with self._cond:
            self._process = process
            self.starts += 1

    def _record(self, action: RecordExit) -> None:
        if not self.stop_post:
            return
        env = {
            **self.env,
            "SERVICE_RESULT": action.result,
            "EXIT_CODE": action.exit_code,
            "EXIT_STATUS": action.exit_status,
        }
        try:
            subprocess.run(
                self.stop_post,
                stdin=subprocess.DEVNULL,
                stdout=self.output,
                stderr=subprocess.STDOUT if self.output is not None else None,
                env=env,
                timeout=RECORD_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("exit recorder %s failed: %s", self.stop_post, exc)
