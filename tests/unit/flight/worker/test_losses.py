"""How an ended worker process is classified."""

from __future__ import annotations

import signal

from flight.worker.losses import ExitCode, LossReason, classify_exit

MiB = 1 << 20


def test_a_signal_or_an_exit_status_is_a_crash() -> None:
    assert classify_exit(-signal.SIGSEGV) == (LossReason.CRASHED, "signal SIGSEGV")
    assert classify_exit(1) == (LossReason.CRASHED, "exit status 1")
    assert classify_exit(-signal.SIGKILL) == (LossReason.CRASHED, "signal SIGKILL")


def test_a_memory_error_reported_by_the_worker_is_a_memory_loss() -> None:
    reason, detail = classify_exit(ExitCode.OUT_OF_MEMORY)
    assert reason is LossReason.MEMORY
    assert "MemoryError" in detail


def test_a_sigkill_near_the_memory_limit_is_taken_for_the_oom_killer() -> None:
    near = classify_exit(-signal.SIGKILL, peak_rss_bytes=95 * MiB, memory_limit_bytes=100 * MiB)
    assert near == (LossReason.MEMORY, "signal SIGKILL with peak RSS 95 MiB")
    far = classify_exit(-signal.SIGKILL, peak_rss_bytes=20 * MiB, memory_limit_bytes=100 * MiB)
    assert far[0] is LossReason.CRASHED
    unlimited = classify_exit(-signal.SIGKILL, peak_rss_bytes=95 * MiB, memory_limit_bytes=None)
    assert unlimited[0] is LossReason.CRASHED
