"""The worker's serving loop: a reader that dispatches, one thread per lane, a heartbeat.

The worker knows nothing of what it computes: a factory named on its command line builds a
handler table (request body type → function) and a status callback, and is given a context to
send notices through.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from flight.worker.connection import Channel
from flight.worker.errors import MessageEncodeError, ProtocolError
from flight.worker.losses import ExitCode
from flight.worker.protocol import (
    CANCELLED,
    UNKNOWN_REQUEST,
    UNSENDABLE_REPLY,
    Cancel,
    Failure,
    FromWorker,
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


class _State(enum.Enum):
    QUEUED = enum.auto()
    RUNNING = enum.auto()
    CANCELLED = enum.auto()  # before it ran: answered already


class Call:
    """The request a handler serves: its id and lane, and whether the payload cancelled it."""

    def __init__(self, id: int, lane: Lane) -> None:
        self.id = id
        self.lane = lane
        self._lock = threading.Lock()
        self._state = _State.QUEUED
        self._cancelled = False
        self._hooks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Calls `hook` (on the worker's reader thread: it must be quick) when the payload
        cancels this call; at once if it already has."""
        with self._lock:
            if not self._cancelled:
                self._hooks.append(hook)
                return
        _run_hook(hook)

    def _begin(self) -> bool:
        """Queued → running; False if it was cancelled while queued."""
        with self._lock:
            if self._state is _State.CANCELLED:
                return False
            self._state = _State.RUNNING
            return True

    def _cancel(self) -> bool:
        """Marks it cancelled and runs its hooks; True if it had not begun (answer it now)."""
        with self._lock:
            if self._cancelled:
                return False
            self._cancelled = True
            hooks, self._hooks = self._hooks, []
            queued = self._state is _State.QUEUED
            if queued:
                self._state = _State.CANCELLED
        for hook in hooks:
            _run_hook(hook)
        return queued


def _run_hook(hook: Callable[[], None]) -> None:
    try:
        hook()
    except Exception:
        logger.exception("cancel hook failed")


#: Serves one request body; what it returns is the reply, what it raises the failure.
Handler = Callable[[Any, Call], Any]


@dataclass(frozen=True, slots=True)
class WorkerHandlers:
    """What a factory builds: handlers by request body type, and the heartbeat's status."""

    handlers: Mapping[type, Handler]
    status: Callable[[], Status] | None = None


@dataclass(frozen=True, slots=True)
class WorkerContext:
    """What a factory is given: the worker's name, its options, a way to send notices, one
    to warn of a long silence, and one to wait until every answer given so far is sent."""

    name: str
    notify: Callable[[str, Any], None]
    options: Mapping[str, str] = field(default_factory=dict)
    announce_quiet: Callable[[float], None] = lambda seconds: None
    flush: Callable[[], None] = lambda: None

    @contextlib.contextmanager
    def quiet(self, max_s: float) -> Iterator[None]:
        """Around native code that may hold the GIL (so stop the heartbeat) for up to `max_s`:
        the supervisor waits that long, not just its heartbeat timeout, before calling the
        worker hung."""
        self.announce_quiet(max_s)
        try:
            yield
        finally:
            self.announce_quiet(0.0)


Factory = Callable[[WorkerContext], WorkerHandlers]


def load_factory(spec: str) -> Factory:
    """'package.module:function' → the function."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"worker factory: expected MODULE:FUNCTION, found {spec!r}")
    factory = getattr(importlib.import_module(module_name), attribute)
    if not callable(factory):
        raise TypeError(f"worker factory {spec!r} is not callable")
    return factory


def _exit_process(code: int) -> NoReturn:
    # os._exit: a lane thread may be stuck in native code; nothing must wait for it.
    logging.shutdown()
    os._exit(code)


class WorkerServer:
    """Serves requests from the payload over `channel` until it closes."""

    def __init__(
        self,
        channel: Channel,
        factory: Factory,
        *,
        name: str,
        options: Mapping[str, str] | None = None,
        heartbeat_s: float = 0.5,
        exit: Callable[[int], NoReturn] = _exit_process,
    ) -> None:
        self._channel = channel
        self._factory = factory
        self._name = name
        self._options = dict(options or {})
        self._heartbeat_s = heartbeat_s
        self._exit = exit
        self._handlers: WorkerHandlers | None = None
        self._calls: dict[int, Call] = {}
        self._calls_lock = threading.Lock()
        self._lanes: dict[Lane, queue.SimpleQueue[tuple[Call, Any]]] = {
            lane: queue.SimpleQueue() for lane in Lane
        }
        # Answers, sent by a thread of their own: a lane goes on to its next request (the next
        # run, sent ahead) while its answer is pickled and written, instead of after.
        self._outbox: queue.SimpleQueue[Reply | Failure | threading.Event] = queue.SimpleQueue()

    def serve(self) -> int:
        """Builds the handlers, then serves; the exit status the worker should end with."""
        self._thread("heartbeat", self._beat)
        try:
            context = WorkerContext(
                self._name, self.notify, self._options, self._announce_quiet, self.flush
            )
            self._handlers = self._factory(context)
        except Exception as e:
            logger.exception("worker factory failed")
            self._send_or_exit(StartFailed(type(e).__name__, str(e)))
            return ExitCode.OUT_OF_MEMORY if isinstance(e, MemoryError) else ExitCode.START_FAILED
        self._thread("sender", self._send_answers)
        for lane in Lane:
            self._thread(f"lane-{lane}", self._serve_lane, lane)
        self._send_or_exit(Hello(pid=os.getpid(), name=self._name))
        return self._read()

    def notify(self, kind: str, body: Any) -> None:
        """Sends a Notice (MessageEncodeError if `body` cannot be pickled)."""
        # OSError: the payload is gone, and the reader sees it and ends the worker.
        with contextlib.suppress(OSError):
            self._channel.send(Notice(kind, body))

    def flush(self) -> None:
        """Returns once every answer given before the call is sent (before a test fault kills
        the worker: the answers of the calls it had finished must not die with it)."""
        sent = threading.Event()
        self._outbox.put(sent)
        sent.wait()

    def _announce_quiet(self, seconds: float) -> None:
        self._send_or_exit(Quiet(seconds))

    def _thread(self, name: str, target: Callable[..., None], *args: Any) -> None:
        def guarded() -> None:
            try:
                target(*args)
            except MemoryError:
                logger.exception("out of memory in %s", name)
                self._exit(ExitCode.OUT_OF_MEMORY)
            except BaseException:
                logger.exception("worker thread %s failed", name)
                self._exit(ExitCode.INTERNAL)

        threading.Thread(target=guarded, name=f"worker-{name}", daemon=True).start()

    def _read(self) -> int:
        while True:
            try:
                message = self._channel.recv()
            except (EOFError, OSError):
                logger.info("connection to the payload closed: worker ends")
                return ExitCode.OK
            except ProtocolError:
                logger.exception("bad message from the payload")
                return ExitCode.INTERNAL
            except MemoryError:
                logger.exception("out of memory reading a request")
                return ExitCode.OUT_OF_MEMORY
            if isinstance(message, Request):
                self._enqueue(message)
            elif isinstance(message, Cancel):
                self._cancel(message.id)
            else:
                logger.warning("ignored a %s from the payload", type(message).__name__)

    def _enqueue(self, request: Request) -> None:
        try:
            lane = Lane(request.lane)
        except ValueError:
            self._send_or_exit(Failure(request.id, UNKNOWN_REQUEST, f"no lane {request.lane!r}"))
            return
        call = Call(request.id, lane)
        with self._calls_lock:
            self._calls[request.id] = call
        self._lanes[lane].put((call, request.body))

    def _cancel(self, id: int) -> None:
        with self._calls_lock:
            call = self._calls.get(id)
        if call is not None and call._cancel():
            with self._calls_lock:
                self._calls.pop(id, None)
            self._send_or_exit(Failure(id, CANCELLED, "cancelled before it ran"))

    def _serve_lane(self, lane: Lane) -> None:
        assert self._handlers is not None
        handlers = self._handlers.handlers
        requests = self._lanes[lane]
        while True:
            call, body = requests.get()
            if not call._begin():
                continue
            try:
                handler = next((handlers[t] for t in type(body).__mro__ if t in handlers), None)
                if handler is None:
                    answer: Reply | Failure = Failure(
                        call.id, UNKNOWN_REQUEST, f"no handler for {type(body).__qualname__}"
                    )
                else:
                    answer = Reply(call.id, handler(body, call))
            except MemoryError as e:
                # The heap may be left half-built (and native allocators with it): report, end.
                self._send_or_exit(Failure(call.id, type(e).__name__, str(e)))
                self._exit(ExitCode.OUT_OF_MEMORY)
            except Exception as e:
                answer = Failure(call.id, type(e).__name__, str(e))
            finally:
                with self._calls_lock:
                    self._calls.pop(call.id, None)
            self._outbox.put(answer)

    def _send_answers(self) -> None:
        while True:
            answer = self._outbox.get()
            if isinstance(answer, threading.Event):
                answer.set()  # a flush
                continue
            try:
                self._send_or_exit(answer)
            except MessageEncodeError as e:
                self._send_or_exit(Failure(answer.id, UNSENDABLE_REPLY, str(e)))

    def _beat(self) -> None:
        seq = 0
        next_at = time.monotonic()
        while True:
            self._send_or_exit(Heartbeat(seq, time.monotonic(), self._status()))
            seq += 1
            # On a fixed grid, so that a slow status callback does not stretch the period;
            # after a stall (the GIL held elsewhere), the next beat goes at once.
            next_at += self._heartbeat_s
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic())

    def _status(self) -> Status:
        handlers = self._handlers
        if handlers is None or handlers.status is None:
            return {}
        try:
            return dict(handlers.status())
        except Exception as e:
            return {"status_error": f"{type(e).__name__}: {e}"}

    def _send_or_exit(self, message: FromWorker) -> None:
        """Sends; a lost connection means the payload is gone, and so the worker ends."""
        try:
            self._channel.send(message)
        except OSError:
            logger.info("connection to the payload lost: worker ends")
            self._exit(ExitCode.OK)
