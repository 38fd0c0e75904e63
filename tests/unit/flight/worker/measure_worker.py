"""What the worker machinery costs: `python -m tests.unit.flight.worker.measure_worker`.

Round trip of a trivial call, detection and restart of a crashed and of a hung worker, and a
1 MiB numpy array each way (out of band, in band, and a raw send of its buffer between two
processes for comparison). Not a test: numbers for the issue and for tests/bench.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from flight.worker.backoff import BackoffPolicy
from flight.worker.config import WorkerConfig
from flight.worker.errors import WorkerLost
from flight.worker.events import EventKind, WorkerEvent
from flight.worker.losses import LossReason
from flight.worker.protocol import Lane
from flight.worker.supervisor import Supervisor
from tests.unit.flight.worker.handlers_for_tests import FACTORY, Crash, Echo, HoldGil

REPO = Path(__file__).resolve().parents[4]
MiB = 1 << 20


def summary(label: str, seconds: list[float], unit: str = "us") -> str:
    scale = {"us": 1e6, "ms": 1e3}[unit]
    values = sorted(s * scale for s in seconds)
    p90 = values[int(0.9 * (len(values) - 1))]
    return (
        f"{label}: median {statistics.median(values):.0f} {unit}, p90 {p90:.0f} {unit}, "
        f"max {values[-1]:.0f} {unit} (n={len(values)})"
    )


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return times


def supervisor(directory: Path, events: list[WorkerEvent], **overrides: Any) -> Supervisor:
    config = WorkerConfig(
        FACTORY,
        socket_dir=directory,
        env={"PYTHONPATH": str(REPO)},
        cwd=REPO,
        # Every loss waits the first backoff step, as a rare loss in flight would.
        backoff=BackoffPolicy(first_s=0.1, reset_after_s=0.0),
        **overrides,
    )
    result = Supervisor(config, on_event=events.append)
    result.start()
    return result


def round_trips(directory: Path, n: int) -> None:
    events: list[WorkerEvent] = []
    s = supervisor(directory, events)
    try:
        for _ in range(200):
            s.call(Lane.COMPUTE, Echo(None), timeout_s=5)
        print(
            summary(
                "trivial call, compute lane",
                timed(lambda: s.call(Lane.COMPUTE, Echo(None), timeout_s=5), n),
            )
        )
        print(
            summary(
                "trivial call, service lane",
                timed(lambda: s.call(Lane.SERVICE, Echo(None), timeout_s=5), n),
            )
        )
        sys.setswitchinterval(0.0005)  # what the payload sets (flight/jobs/runner.py)
        print(
            summary(
                "trivial call, compute lane, payload switch interval 0.5 ms",
                timed(lambda: s.call(Lane.COMPUTE, Echo(None), timeout_s=5), n),
            )
        )
        sys.setswitchinterval(0.005)
        array = np.random.default_rng(0).random(MiB // 8)
        data = array.tobytes()
        print(
            summary(
                "1 MiB float64 array each way (out of band)",
                timed(lambda: s.call(Lane.COMPUTE, Echo(array), timeout_s=5), n // 10),
                "us",
            )
        )
        print(
            summary(
                "1 MiB bytes each way (pickled in band)",
                timed(lambda: s.call(Lane.COMPUTE, Echo(data), timeout_s=5), n // 10),
                "us",
            )
        )
    finally:
        s.stop()  # fmt: skip


def two_process_round_trips(n: int) -> None:
    """Floors to compare with: the array's buffer on a bare socket, and multiprocessing's own
    Connection.send of the array (pickled in band), to a forked echo process and back."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        buffer = memoryview(bytearray(MiB))
        try:
            while True:
                got = 0
                while got < MiB:
                    got += theirs.recv_into(buffer[got:]) or sys.exit(0)
                theirs.sendall(buffer)
                conn: Connection[Any, Any] = Connection(os.dup(theirs.fileno()))
                conn.send(conn.recv())
        finally:
            os._exit(0)
    theirs.close()
    array = np.random.default_rng(0).random(MiB // 8)
    back = memoryview(np.empty_like(array)).cast("B")
    conn = Connection(os.dup(ours.fileno()))
    raw, pickled = [], []
    for _ in range(n // 10):
        began = time.perf_counter()
        ours.sendall(memoryview(array).cast("B"))
        got = 0
        while got < MiB:
            got += ours.recv_into(back[got:])
        middle = time.perf_counter()
        conn.send(array)
        conn.recv()
        raw.append(middle - began)
        pickled.append(time.perf_counter() - middle)
    print(summary("1 MiB array each way, raw buffer on a socket (floor)", raw))
    print(summary("1 MiB array each way, multiprocessing Connection.send (in band)", pickled))
    conn.close()
    ours.close()
    os.waitpid(pid, 0)


def losses(directory: Path, body: Any, trials: int, **overrides: Any) -> None:
    events: list[WorkerEvent] = []
    s = supervisor(directory, events, **overrides)
    detect, restart, ready = [], [], []
    reason = None
    try:
        for _ in range(trials):
            s.call(Lane.COMPUTE, Echo(None), timeout_s=5)
            starts = sum(e.kind is EventKind.STARTED for e in events)
            began = time.perf_counter()
            try:
                s.call(Lane.COMPUTE, body, timeout_s=60)
            except WorkerLost as e:
                reason = e.reason
            lost = time.perf_counter()
            while sum(e.kind is EventKind.STARTED for e in events) == starts:
                time.sleep(0.0005)
            started = time.perf_counter()
            s.call(Lane.COMPUTE, Echo(None), timeout_s=5)
            detect.append(lost - began)
            restart.append(started - lost)
            ready.append(started - began)
    finally:
        s.stop()
    name = type(body).__name__
    print(f"{name} ({reason.name if isinstance(reason, LossReason) else reason}):")
    print("  " + summary("detected (call raised WorkerLost)", detect, "ms"))
    print("  " + summary("restarted (backoff 0.1 s + new worker ready)", restart, "ms"))
    print("  " + summary("detected and restarted", ready, "ms"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--crashes", type=int, default=30)
    parser.add_argument("--hangs", type=int, default=10)
    args = parser.parse_args()
    print(f"host: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="wk") as name:
        directory = Path(name)
        two_process_round_trips(args.calls)
        round_trips(directory, args.calls)
        if args.crashes:
            losses(directory, Crash(), args.crashes)
        if args.hangs:  # the defaults: a heartbeat every 0.5 s, hung after 3 s without one
            losses(directory, HoldGil(600), args.hangs)


if __name__ == "__main__":
    main()
