"""Why a worker was lost, and how an ended process is classified."""

from __future__ import annotations

import enum
import signal


class LossReason(enum.Enum):
    """Why the supervisor lost (and restarts) a worker."""

    CRASHED = "crashed"  # exited or died by a signal nobody asked for
    MEMORY = "memory"  # ran out of its memory limit
    HUNG = "hung"  # no heartbeat within the timeout: killed
    RUN_TIMEOUT = "run_timeout"  # a call ran past its timeout: killed
    COMMAND = "command"  # a restart was asked
    START_FAILED = "start_failed"  # never became ready
    STOPPED = "stopped"  # the supervisor was stopped


class ExitCode(enum.IntEnum):
    """Exit statuses the worker chooses, so the supervisor can tell why it ended."""

    OK = 0  # the payload closed the connection
    USAGE = 2  # argparse's own status for a bad command line
    START_FAILED = 3  # the handler factory raised
    OUT_OF_MEMORY = 4  # a MemoryError in the worker: its heap is not to be trusted any more
    INTERNAL = 5  # a serving thread failed
    PARENT_GONE = 6  # the parent died before the worker could arrange to follow it


#: Peak RSS at or above this share of the memory limit makes an unexplained SIGKILL a MEMORY loss.
MEMORY_KILL_SHARE = 0.9


def describe_status(returncode: int) -> str:
    """'exit status 3' or 'signal SIGSEGV' from a Popen return code."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


def classify_exit(
    returncode: int, *, peak_rss_bytes: int | None = None, memory_limit_bytes: int | None = None
) -> tuple[LossReason, str]:
    """The loss reason and detail of a worker that ended by itself (not killed by the supervisor).

    An unexplained SIGKILL with the peak RSS near the limit is taken as the kernel's OOM kill.
    """
    detail = describe_status(returncode)
    if returncode == ExitCode.OUT_OF_MEMORY:
        return LossReason.MEMORY, f"{detail} (MemoryError in the worker)"
    if (
        returncode == -signal.SIGKILL
        and peak_rss_bytes is not None
        and memory_limit_bytes is not None
        and peak_rss_bytes >= MEMORY_KILL_SHARE * memory_limit_bytes
    ):
        return LossReason.MEMORY, f"{detail} with peak RSS {peak_rss_bytes >> 20} MiB"
    return LossReason.CRASHED, detail
