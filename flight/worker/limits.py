"""Resource limits a worker applies to itself before it imports anything heavy.

Popen's `preexec_fn` is not safe in a threaded parent (the payload is one), so the supervisor
passes the limits on the worker's command line and the worker sets them first thing: nothing
but the interpreter has run by then.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class Limits:
    """None: left as inherited.

    `data_bytes` bounds the heap and private writable mappings (RLIMIT_DATA): onnxruntime and
    CUDA reserve large virtual areas that RLIMIT_AS (`address_space_bytes`) would count too.
    `core_bytes` is 0 by default: a crashed worker of gigabytes must not fill the flight disk.
    """

    data_bytes: int | None = None
    address_space_bytes: int | None = None
    cpus: frozenset[int] | None = None
    nice: int | None = None
    core_bytes: int | None = 0

    def to_args(self) -> list[str]:
        args = []
        if self.data_bytes is not None:
            args += ["--limit-data", str(self.data_bytes)]
        if self.address_space_bytes is not None:
            args += ["--limit-as", str(self.address_space_bytes)]
        if self.cpus is not None:
            args += ["--cpus", ",".join(str(cpu) for cpu in sorted(self.cpus))]
        if self.nice is not None:
            args += ["--nice", str(self.nice)]
        if self.core_bytes is not None:
            args += ["--limit-core", str(self.core_bytes)]
        return args

    @property
    def memory_bytes(self) -> int | None:
        """The tighter memory bound, for telling an OOM kill from another SIGKILL."""
        bounds = [b for b in (self.data_bytes, self.address_space_bytes) if b is not None]
        return min(bounds) if bounds else None


def parse_cpus(text: str) -> frozenset[int]:
    """'0,2-3' → {0, 2, 3}."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    if not cpus:
        raise ValueError(f"cpu set: expected e.g. 0,2-3, found {text!r}")
    return frozenset(cpus)


def apply_limits(limits: Limits) -> None:
    """Sets the limits on this process (hard limits too: the worker cannot raise them back)."""
    if limits.data_bytes is not None:
        resource.setrlimit(resource.RLIMIT_DATA, (limits.data_bytes, limits.data_bytes))
    if limits.address_space_bytes is not None:
        bound = limits.address_space_bytes
        resource.setrlimit(resource.RLIMIT_AS, (bound, bound))
    if limits.core_bytes is not None:
        resource.setrlimit(resource.RLIMIT_CORE, (limits.core_bytes, limits.core_bytes))
    if limits.cpus is not None:
        os.sched_setaffinity(0, limits.cpus)
    if limits.nice is not None:
        os.setpriority(os.PRIO_PROCESS, 0, limits.nice)


def die_with_parent(parent_pid: int | None) -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False if it is already gone.

    SIGKILL, not SIGTERM: a worker stuck in native code holding the GIL runs no handler. The
    kernel's "parent" is the thread that forked us: the supervisor forks from its own thread,
    which lives as long as it does.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the closed connection still ends us
        pass
    # The parent may have died before prctl: then we were reparented already.
    return parent_pid is None or os.getppid() == parent_pid
