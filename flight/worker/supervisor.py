"""The payload's side of a worker: starts it, calls it, watches it, restarts it when lost.

One supervisor per board. Its own thread starts the worker process, waits for it to connect and
say hello, then watches it: the process ending, heartbeats stopping, a call running past its
timeout, a restart asked. Whichever comes first, the worker is killed, every call it held
raises WorkerLost at once, the listener is told, and a new worker starts after a backoff.
Calls made while no worker is up wait for the next one (at most `ready_timeout_s`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight.worker.backoff import RestartBackoff
from flight.worker.calls import CallBook, PendingCall
from flight.worker.config import WorkerConfig
from flight.worker.connection import (
    Channel,
    Encoded,
    WorkerListener,
    encode,
    format_address,
)
from flight.worker.errors import (
    ProtocolError,
    WorkerCallCancelled,
    WorkerCallError,
    WorkerLost,
    WorkerStartError,
    WorkerUnavailable,
)
from flight.worker.events import EventKind, SupervisorCounters, WorkerEvent
from flight.worker.losses import LossReason, classify_exit, describe_status
from flight.worker.protocol import (
    CANCELLED,
    PROTOCOL_VERSION,
    Cancel,
    Failure,
    Heartbeat,
    Hello,
    Lane,
    Notice,
    Quiet,
    Reply,
    Request,
    StartFailed,
    Status,
)

logger = logging.getLogger(__name__)

#: How often the supervisor's thread looks at its worker when nothing wakes it sooner.
_TICK_S = 0.1
#: How long a worker whose connection broke is given to finish dying before it is killed.
_DYING_GRACE_S = 1.0


@dataclass(eq=False)
class _Worker:
    """One worker process and its connection, from spawn to reaping."""

    process: subprocess.Popen[bytes]
    channel: Channel | None = None
    generation: int = 0
    reader: threading.Thread | None = None
    killed_for: tuple[LossReason, str] | None = None
    peak_rss_bytes: int | None = None

    def kill(self, reason: LossReason, detail: str) -> None:
        if self.killed_for is None:
            self.killed_for = (reason, detail)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def sample_rss(self) -> None:
        """The peak RSS so far (VmHWM), to tell an OOM kill from another SIGKILL afterwards."""
        try:
            text = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                self.peak_rss_bytes = int(line.split()[1]) * 1024


class _LaunchFailed(Exception):
    pass


class Supervisor:
    """Runs one worker and its calls; thread-safe."""

    def __init__(
        self,
        config: WorkerConfig,
        *,
        on_event: Callable[[WorkerEvent], None] | None = None,
        on_notice: Callable[[Notice], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if config.address is None and config.socket_dir is None:
            raise ValueError("worker config: give socket_dir or address")
        self.config = config
        self._on_event = on_event
        self._on_notice = on_notice
        self._clock = clock
        self._wall_clock = wall_clock
        self._backoff = RestartBackoff(config.backoff, clock)
        # Lock order: _send_lock, then _lock. _send_lock keeps the order of requests on the
        # wire the order of the lanes' queues here.
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._ids = itertools.count(1)
        self._listener: WorkerListener | None = None
        self._thread: threading.Thread | None = None
        self._first_outcome = threading.Event()
        self._first_error: str | None = None
        # under _lock
        self._started = False
        self._stopping = False
        self._restart_request: str | None = None
        self._worker: _Worker | None = None  # the ready worker
        self._generation = 0
        self._calls = CallBook(clock)
        self._reader_ended: str | None = None
        self._last_heartbeat_at: float | None = None
        self._quiet_until: float | None = None  # a Quiet announced by the worker
        self._status: Status = {}
        self._starts = 0
        self._restarts: dict[LossReason, int] = {}
        self._last_loss: tuple[LossReason, str, float] | None = None
        self._calls_made = 0
        self._calls_lost = 0

    # -- life cycle

    def start(self, *, wait: bool = True) -> None:
        """Starts supervising. With `wait`, returns once the first worker is ready and raises
        WorkerStartError if it failed (the supervisor keeps trying; stop() ends it)."""
        with self._lock:
            if self._started:
                raise RuntimeError("supervisor already started")
            self._started = True
        config = self.config
        if config.address is not None:
            self._listener = WorkerListener(config.address)
        else:
            assert config.socket_dir is not None
            self._listener = WorkerListener.in_directory(config.socket_dir, config.name)
        self._thread = threading.Thread(
            target=self._run, name=f"worker-supervisor-{config.name}", daemon=True
        )
        self._thread.start()
        if wait:
            self._first_outcome.wait()
            if self._first_error is not None:
                raise WorkerStartError(self._first_error)

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether a worker is up, waiting at most `timeout_s` for one."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if self._worker is not None:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def stop(self) -> None:
        """Ends the worker (its connection closed, then killed after `stop_grace_s`); calls in
        flight raise WorkerLost(STOPPED), later ones WorkerUnavailable."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def restart(self, reason: str) -> None:
        """Kills the worker and starts another (a COMMAND loss with `reason` as its detail)."""
        with self._lock:
            self._restart_request = reason
        self._wake.set()

    # -- calls

    def call(self, lane: Lane | str, body: Any, *, timeout_s: float) -> Any:
        """Runs `body` on the worker and returns what its handler returned.

        `timeout_s` bounds the run from when it leaves its lane's queue; past it the worker is
        killed (RUN_TIMEOUT). Raises WorkerCallError (the handler raised), WorkerLost (the
        worker was lost meanwhile), WorkerUnavailable (no worker came up), MessageEncodeError.
        """
        return self.submit(lane, body, timeout_s=timeout_s).result()

    def submit(self, lane: Lane | str, body: Any, *, timeout_s: float) -> PendingCall:
        """Like call(), without waiting: the PendingCall's id is what cancel() takes."""
        lane = Lane(lane)
        if timeout_s <= 0:
            raise ValueError(f"call timeout: expected more than 0 s, found {timeout_s:g}")
        id = next(self._ids)
        # Pickled outside the locks: a large body must not hold up the other callers.
        encoded = encode(Request(id, lane, body))
        with self._send_lock:
            with self._lock:
                if not self._started or self._stopping:
                    raise WorkerUnavailable(f"worker {self.config.name}: supervisor not running")
                pending = PendingCall(id, lane, timeout_s, self._clock())
                self._calls_made += 1
                worker = self._worker
                if worker is None:
                    self._calls.hold(pending, encoded)
                    return pending
                self._calls.enlist(pending)
            self._send(worker, encoded)
        return pending

    def cancel(self, call_id: int) -> bool:
        """Asks the worker to cancel a call (its handler's cancel hooks run at once; one still in
        its lane's queue fails with WorkerCallCancelled). False if the call is not pending."""
        with self._lock:
            pending = self._calls.get(call_id)
            if pending is None:
                return False
            unsent = self._calls.withdraw_unsent(pending)
            worker = self._worker
        if unsent:
            pending._resolve(error=WorkerCallCancelled(CANCELLED, "cancelled before it was sent"))
        elif worker is not None:
            self._send(worker, encode(Cancel(call_id)))
        return True

    # -- what the payload shows

    def status(self) -> Status:
        """The status of the latest heartbeat."""
        with self._lock:
            return dict(self._status)

    def health(self) -> str | None:
        """None while a worker is up and beating; else why not (for the payload's watchdog)."""
        with self._lock:
            if not self._started:
                return "supervisor not started"
            if self._stopping:
                return "supervisor stopped"
            if self._worker is None:
                if self._last_loss is None:
                    return "worker starting"
                reason, detail, _ = self._last_loss
                return f"no worker since a {reason.name} loss: {detail}"
            if self._silent_too_long():
                return f"no heartbeat for {self._heartbeat_age():.1f} s"
            return None

    def counters(self) -> SupervisorCounters:
        with self._lock:
            last = self._last_loss
            return SupervisorCounters(
                starts=self._starts,
                restarts=dict(self._restarts),
                last_loss_reason=last[0] if last else None,
                last_loss_detail=last[1] if last else "",
                last_loss_at=last[2] if last else None,
                heartbeat_age_s=self._heartbeat_age(),
                pid=self._worker.process.pid if self._worker else None,
                calls=self._calls_made,
                calls_lost=self._calls_lost,
            )

    def _silent_too_long(self) -> bool:
        """No heartbeat within the timeout, nor within a quiet the worker announced (_lock)."""
        age = self._heartbeat_age()
        if age is None or age <= self.config.heartbeat_timeout_s:
            return False
        return self._quiet_until is None or self._clock() > self._quiet_until

    def _heartbeat_age(self) -> float | None:
        if self._worker is None or self._last_heartbeat_at is None:
            return None
        return max(0.0, self._clock() - self._last_heartbeat_at)

    # -- sending (callers hold _send_lock)

    def _send(self, worker: _Worker, encoded: Encoded) -> None:
        assert worker.channel is not None
        try:
            worker.channel.send_encoded(encoded)
        except OSError:
            # The worker is dying; the supervisor's thread sees it and fails the call.
            self._wake.set()

    # -- receiving (the reader thread of one worker)

    def _read(self, worker: _Worker) -> None:
        assert worker.channel is not None
        while True:
            try:
                message = worker.channel.recv()
            except (EOFError, OSError, ProtocolError) as e:
                with self._lock:
                    if self._worker is worker:
                        self._reader_ended = f"{type(e).__name__}: {e}" if str(e) else "closed"
                self._wake.set()
                return
            self._receive(worker, message)

    def _receive(self, worker: _Worker, message: Any) -> None:
        if isinstance(message, Heartbeat):
            with self._lock:
                if self._worker is worker:
                    self._last_heartbeat_at = self._clock()
                    self._status = dict(message.status)
        elif isinstance(message, Quiet):
            with self._lock:
                if self._worker is worker:
                    now = self._clock()
                    self._quiet_until = now + message.seconds if message.seconds > 0 else None
                    self._last_heartbeat_at = now  # it just spoke: as good as a heartbeat
        elif isinstance(message, Reply | Failure):
            self._answer(worker, message)
        elif isinstance(message, Notice):
            self._tell(self._on_notice, message)
        else:
            logger.warning("worker %s sent an unexpected %s", self.config.name, message)

    def _answer(self, worker: _Worker, message: Reply | Failure) -> None:
        with self._lock:
            if self._worker is not worker:
                return  # a lost worker's late word: its calls were failed already
            pending = self._calls.answered(message.id)
            if pending is None:
                return
            if pending.lane is Lane.COMPUTE and isinstance(message, Reply):
                self._backoff.proven()
        if isinstance(message, Reply):
            pending._resolve(message.value)
        elif message.error_type == CANCELLED:
            pending._resolve(error=WorkerCallCancelled(message.error_type, message.text))
        else:
            pending._resolve(error=WorkerCallError(message.error_type, message.text))

    def _tell(self, listener: Callable[[Any], None] | None, what: Any) -> None:
        if listener is None:
            return
        try:
            listener(what)
        except Exception:
            logger.exception("worker %s listener failed on %s", self.config.name, what)

    # -- the supervisor's thread

    def _run(self) -> None:
        try:
            delay = 0.0
            while not self._pause(delay):
                try:
                    worker = self._launch()
                except _LaunchFailed as e:
                    with self._lock:
                        if self._stopping:
                            break
                    delay = self._lost(None, LossReason.START_FAILED, str(e))
                    self._first_error = self._first_error or str(e)
                    self._first_outcome.set()
                    continue
                self._first_outcome.set()
                reason, detail = self._watch(worker)
                self._end(worker, reason, detail)
                if reason is LossReason.STOPPED:
                    break
                delay = self._lost(worker, reason, detail)
        except BaseException:
            logger.exception("worker %s supervisor failed", self.config.name)
            raise
        finally:
            with self._lock:
                self._stopping = True
                orphans = self._calls.clear()
            for pending in orphans:
                pending._resolve(error=WorkerUnavailable("supervisor stopped"))
            if self._listener is not None:
                self._listener.close()
            self._first_error = self._first_error or "supervisor stopped"
            self._first_outcome.set()

    def _pause(self, seconds: float) -> bool:
        """Waits `seconds` (expiring calls that waited too long for a worker); True if stopping."""
        deadline = self._clock() + seconds
        while True:
            self._expire_unsent()
            with self._lock:
                if self._stopping:
                    return True
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            self._wake.wait(min(remaining, _TICK_S))
            self._wake.clear()

    def _expire_unsent(self) -> None:
        limit = self.config.ready_timeout_s
        with self._lock:
            expired = self._calls.expire_unsent(limit)
        for pending in expired:
            pending._resolve(
                error=WorkerUnavailable(f"no worker {self.config.name} within {limit:g} s")
            )

    def _command(self, authkey_fd: int) -> list[str]:
        config = self.config
        assert self._listener is not None
        options = [
            arg for key, value in config.options.items() for arg in ("--option", f"{key}={value}")
        ]
        return [
            config.python, "-m", "flight.worker",
            "--connect", format_address(self._listener.address),
            "--factory", config.factory,
            "--name", config.name,
            "--authkey-fd", str(authkey_fd),
            "--parent-pid", str(os.getpid()),
            "--heartbeat-s", str(config.heartbeat_s),
            "--log-level", config.log_level,
            *config.limits.to_args(),
            *options,
        ]  # fmt: skip

    def _launch(self) -> _Worker:
        """Spawns a worker and waits for its Hello; _LaunchFailed says why it did not come."""
        config = self.config
        assert self._listener is not None
        # A new key each start: a worker of an earlier start cannot connect in its place.
        authkey = secrets.token_bytes(32)
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, authkey)
            os.close(write_end)
            process = subprocess.Popen(
                self._command(read_end),
                pass_fds=(read_end,),
                stdin=subprocess.DEVNULL,
                # Its own session: a terminal's ^C goes to the payload, which decides.
                start_new_session=True,
                env={**os.environ, **config.env},
                cwd=config.cwd,
            )
        except OSError as e:
            raise _LaunchFailed(f"cannot start {config.python}: {e}") from e
        finally:
            with contextlib.suppress(OSError):
                os.close(write_end)
            os.close(read_end)
        worker = _Worker(process)
        try:
            self._connect(worker, authkey)
        except _LaunchFailed:
            self._reap(worker, kill=True)
            raise
        return worker

    def _connect(self, worker: _Worker, authkey: bytes) -> None:
        config = self.config
        assert self._listener is not None
        deadline = self._clock() + config.start_timeout_s
        heartbeat: Heartbeat | None = None

        def check(*, ended: bool = True) -> None:
            self._expire_unsent()
            with self._lock:
                if self._stopping:
                    raise _LaunchFailed("supervisor stopped")
            returncode = worker.process.poll() if ended else None
            if returncode is not None:
                status = describe_status(returncode)
                raise _LaunchFailed(f"worker ended before it was ready: {status}")
            if self._clock() > deadline:
                raise _LaunchFailed(f"worker not ready within {config.start_timeout_s:g} s")

        while worker.channel is None:
            check()
            with contextlib.suppress(TimeoutError):
                worker.channel = self._listener.accept(authkey, _TICK_S)
        channel = worker.channel
        while True:
            try:
                waiting = channel.poll(_TICK_S)
                message = channel.recv() if waiting else None
            except (EOFError, OSError, ProtocolError) as e:
                # What it sent before it ended (a StartFailed) was read already.
                check()
                raise _LaunchFailed(f"worker connection lost before it was ready: {e}") from e
            # Whether the process ended is asked only once its messages are all read: the
            # StartFailed that says why comes before its end.
            check(ended=message is None)
            if message is None:
                continue
            if isinstance(message, Hello):
                if message.version != PROTOCOL_VERSION:
                    raise _LaunchFailed(
                        f"worker speaks protocol {message.version}, expected {PROTOCOL_VERSION}"
                    )
                break
            if isinstance(message, StartFailed):
                raise _LaunchFailed(f"worker factory failed: {message.error_type}: {message.text}")
            if isinstance(message, Heartbeat):
                heartbeat = message
            else:
                self._receive(worker, message)
        self._ready(worker, heartbeat)

    def _ready(self, worker: _Worker, heartbeat: Heartbeat | None) -> None:
        logger.info("worker %s ready (pid %d)", self.config.name, worker.process.pid)
        # Told before it takes calls: the payload's WORKER_STARTED comes before any result of it.
        self._tell(
            self._on_event,
            WorkerEvent(
                EventKind.STARTED, self.config.name, self._wall_clock(), worker.process.pid
            ),
        )
        worker.reader = threading.Thread(
            target=self._read, args=(worker,), name=f"worker-reader-{self.config.name}", daemon=True
        )
        with self._send_lock:
            with self._lock:
                self._generation += 1
                worker.generation = self._generation
                self._worker = worker
                self._reader_ended = None
                self._last_heartbeat_at = self._clock()
                self._quiet_until = None
                self._status = dict(heartbeat.status) if heartbeat else {}
                self._starts += 1
                waiting = self._calls.send_unsent()
            worker.reader.start()
            for pending in waiting:
                if pending._encoded is not None:
                    self._send(worker, pending._encoded)
                    pending._encoded = None
        self._backoff.ready()
        worker.sample_rss()

    def _watch(self, worker: _Worker) -> tuple[LossReason, str]:
        """Waits until the worker is lost (or the supervisor stops): why."""
        config = self.config
        next_rss_at = self._clock() + config.heartbeat_s
        while True:
            self._wake.clear()
            now = self._clock()
            with self._lock:
                stopping = self._stopping
                restart, self._restart_request = self._restart_request, None
                reader_ended = self._reader_ended
                age = self._heartbeat_age() or 0.0
                silent = self._silent_too_long()
                overdue, next_deadline = self._calls.overdue(now, now + _TICK_S)
            if stopping:
                return LossReason.STOPPED, "supervisor stopped"
            returncode = worker.process.poll()
            if returncode is not None:
                return self._classify(worker, returncode)
            if reader_ended is not None:
                try:
                    return self._classify(worker, worker.process.wait(_DYING_GRACE_S))
                except subprocess.TimeoutExpired:
                    detail = f"connection lost ({reader_ended}), process still alive"
                    worker.kill(LossReason.CRASHED, detail)
                    return LossReason.CRASHED, detail
            if restart is not None:
                worker.kill(LossReason.COMMAND, restart)
                return LossReason.COMMAND, restart
            if silent:
                detail = f"no heartbeat for {age:.1f} s"
                worker.kill(LossReason.HUNG, detail)
                return LossReason.HUNG, detail
            if overdue is not None:
                detail = (
                    f"call {overdue.id} on lane {overdue.lane} ran past {overdue.timeout_s:g} s"
                )
                worker.kill(LossReason.RUN_TIMEOUT, detail)
                return LossReason.RUN_TIMEOUT, detail
            if now >= next_rss_at:
                worker.sample_rss()
                next_rss_at = now + config.heartbeat_s
            self._expire_unsent()
            self._wake.wait(max(0.001, min(next_deadline - now, _TICK_S)))

    def _classify(self, worker: _Worker, returncode: int) -> tuple[LossReason, str]:
        if worker.killed_for is not None:
            return worker.killed_for
        return classify_exit(
            returncode,
            peak_rss_bytes=worker.peak_rss_bytes,
            memory_limit_bytes=self.config.limits.memory_bytes,
        )

    def _reap(self, worker: _Worker, *, kill: bool) -> None:
        if kill:
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
        worker.process.wait()
        if worker.channel is not None:
            worker.channel.close()

    def _end(self, worker: _Worker, reason: LossReason, detail: str) -> None:
        """Makes sure the worker is gone and fails every call it held."""
        if reason is LossReason.STOPPED and worker.channel is not None:
            worker.channel.shutdown()  # the worker ends when its connection closes
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(self.config.stop_grace_s)
        self._reap(worker, kill=True)
        if worker.reader is not None:
            worker.reader.join(_DYING_GRACE_S)
        with self._lock:
            self._worker = None
            self._last_heartbeat_at = None
            lost = self._calls.lose_sent()
            self._calls_lost += len(lost)
        for pending, began in lost:
            pending._resolve(error=WorkerLost(reason, detail, began=began))

    def _lost(self, worker: _Worker | None, reason: LossReason, detail: str) -> float:
        """Counts a loss, tells the listener; the delay before the next start."""
        delay = self._backoff.lost()
        with self._lock:
            self._restarts[reason] = self._restarts.get(reason, 0) + 1
            self._last_loss = (reason, detail, self._wall_clock())
        pid = worker.process.pid if worker is not None else None
        logger.warning(
            "worker %s lost (%s: %s); next start in %.2f s",
            self.config.name,
            reason.name,
            detail,
            delay,
        )
        self._tell(
            self._on_event,
            WorkerEvent(
                EventKind.LOST, self.config.name, self._wall_clock(), pid, reason, detail, delay
            ),
        )
        return delay
