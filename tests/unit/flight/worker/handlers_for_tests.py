"""Trivial handler factories the worker tests start real workers with (by module path)."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from flight.worker.protocol import Status
from flight.worker.serve import Call, WorkerContext, WorkerHandlers

FACTORY = "tests.unit.flight.worker.handlers_for_tests:make_handlers"
FAILING_FACTORY = "tests.unit.flight.worker.handlers_for_tests:failing_factory"


@dataclass(frozen=True)
class Echo:
    value: Any


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class WaitForCancel:
    """Tells a 'running' notice, then waits for its cancel hook (at most `seconds`)."""

    seconds: float


@dataclass(frozen=True)
class Crash:
    """Dies by SIGSEGV, as a native fault in onnxruntime or a driver would, `after_s` into
    the call."""

    after_s: float = 0.0


@dataclass(frozen=True)
class HoldGil:
    """Sleeps in C without releasing the GIL: no other thread of the worker runs."""

    seconds: int


@dataclass(frozen=True)
class QuietlyHoldGil:
    """Holds the GIL for `seconds` after announcing a quiet of `allowance_s`."""

    seconds: int
    allowance_s: float


@dataclass(frozen=True)
class Spin:
    """A Python busy loop (which still lets the GIL go every switch interval)."""


@dataclass(frozen=True)
class Allocate:
    nbytes: int


@dataclass(frozen=True)
class Raise:
    text: str


@dataclass(frozen=True)
class Pid:
    """Answers the worker's pid."""


@dataclass(frozen=True)
class Placement:
    """Answers the worker's CPU affinity, nice value and data limit."""


@dataclass(frozen=True)
class TinyModel:
    """Runs a one-node ONNX model on onnxruntime, to show a limited worker can."""


@dataclass(frozen=True)
class Unknown:
    """No handler takes this."""


def _sleep(body: Sleep, call: Call) -> float:
    time.sleep(body.seconds)
    return body.seconds


def _crash(body: Crash, call: Call) -> None:
    time.sleep(body.after_s)
    # A real fault in this thread: os.kill would let the thread run on (and reply) for a while.
    ctypes.string_at(0)


def _hold_gil(body: HoldGil, call: Call) -> None:
    # PyDLL functions are called with the GIL held, unlike CDLL ones.
    ctypes.PyDLL(None).sleep(body.seconds)


def _spin(body: Spin, call: Call) -> None:
    while True:
        pass


def _allocate(body: Allocate, call: Call) -> int:
    block = np.ones(body.nbytes, dtype=np.uint8)
    return int(block[-1]) * block.size


def _raise(body: Raise, call: Call) -> None:
    raise ValueError(body.text)


def _placement(body: Placement, call: Call) -> tuple[set[int], int, int]:
    import resource

    nice = os.getpriority(os.PRIO_PROCESS, 0)
    return os.sched_getaffinity(0), nice, resource.getrlimit(resource.RLIMIT_DATA)[0]


def _tiny_model(body: TinyModel, call: Call) -> list[float]:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "double", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": np.array([1, 2, 3], dtype=np.float32)})
    return [float(v) for v in out]


def make_handlers(context: WorkerContext) -> WorkerHandlers:
    served = 0
    lock = threading.Lock()

    def count(handler: Any) -> Any:
        def counted(body: Any, call: Call) -> Any:
            nonlocal served
            with lock:
                served += 1
            return handler(body, call)

        return counted

    def wait_for_cancel(body: WaitForCancel, call: Call) -> str:
        cancelled = threading.Event()
        call.on_cancel(cancelled.set)
        context.notify("running", call.id)
        return "cancelled" if cancelled.wait(body.seconds) else "not cancelled"

    def quietly_hold_gil(body: QuietlyHoldGil, call: Call) -> int:
        with context.quiet(body.allowance_s):
            ctypes.PyDLL(None).sleep(body.seconds)
        return body.seconds

    def status() -> Status:
        return {"served": served, "name": context.name, **context.options}

    handlers = {
        Echo: lambda body, call: body.value,
        Sleep: _sleep,
        WaitForCancel: wait_for_cancel,
        Crash: _crash,
        HoldGil: _hold_gil,
        QuietlyHoldGil: quietly_hold_gil,
        Spin: _spin,
        Allocate: _allocate,
        Raise: _raise,
        Pid: lambda body, call: os.getpid(),
        Placement: _placement,
        TinyModel: _tiny_model,
    }
    context.notify("hello", dict(context.options))
    return WorkerHandlers({t: count(h) for t, h in handlers.items()}, status=status)


def failing_factory(context: WorkerContext) -> WorkerHandlers:
    raise RuntimeError("no models here")
